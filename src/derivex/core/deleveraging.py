"""Auto-deleveraging and socialised loss: the last stages of a liquidation the insurance
fund cannot carry. Opposite positions are ranked by profit x leverage; what no position
covers is shared pro rata over the balances. Cost: O(accounts) per deleveraged position.
"""

from __future__ import annotations

from derivex.core.config import P_ADL_MAX_COUNTERPARTIES
from derivex.core.emit import liquidation_stage
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account8, Counter, Ins8, Pos4, Pos8
from derivex.core.records import SYSTEM_ACCOUNTS, LiquidationStage
from derivex.core.risk import margins
from derivex.core.transfers import FUND, PPB, PPM, clamp, move_balance, position_of, transfer_signed


@kernel
def _adl_score(st, position, account):
    """BitMEX ranking: PnL% x effective leverage if in profit, PnL% / leverage if not
    (ppm fixed point, integer approximations)."""
    instrument = st.pos_i4[position, Pos4.INSTRUMENT]
    q = st.pos_i8[position, Pos8.QTY]
    basis = st.pos_i8[position, Pos8.BASIS]
    value = q * st.ins_i8[instrument, Ins8.MARK] * st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    pnl = value - basis
    scale = (basis if basis > 0 else -basis) // PPM + 1
    pnl_ppm = clamp(pnl // scale, PPB)
    equity = margins(st, account)[0]
    if equity <= 0:
        leverage = PPB
    else:
        leverage = clamp((value if value > 0 else -value) // (equity // PPM + 1), PPB)
    if leverage < 1:
        leverage = 1
    if pnl_ppm >= 0:
        return pnl_ppm * leverage // PPM
    return pnl_ppm * PPM // leverage


@kernel
def deleverage(st, ev, n, seq, account, position, instrument, price):
    """Close the position against the best-ranked opposite positions at ``price``; returns
    (n, lots left)."""
    q = st.pos_i8[position, Pos8.QTY]
    count = 0
    for other in range(SYSTEM_ACCOUNTS, st.counters[Counter.ACCOUNT_HWM]):
        if other == account:
            continue
        theirs = position_of(st, other, instrument)
        if theirs == NIL:
            continue
        their_q = st.pos_i8[theirs, Pos8.QTY]
        if their_q == 0 or (their_q > 0) == (q > 0):
            continue
        st.scan_used[other] = _adl_score(st, theirs, other)
        st.scan_accounts[count] = other
        count += 1
    left = q if q > 0 else -q
    for _ in range(st.params[P_ADL_MAX_COUNTERPARTIES]):
        if left == 0 or count == 0:
            break
        pick = 0  # highest score, lowest account id on ties
        for k in range(1, count):
            other = st.scan_accounts[k]
            best = st.scan_accounts[pick]
            if st.scan_used[other] > st.scan_used[best] or (
                st.scan_used[other] == st.scan_used[best] and other < best
            ):
                pick = k
        other = st.scan_accounts[pick]
        count -= 1
        st.scan_accounts[pick] = st.scan_accounts[count]
        st.scan_used[other] = 0  # the scan's scratch is zero outside a scan
        theirs = position_of(st, other, instrument)
        their_q = st.pos_i8[theirs, Pos8.QTY]
        lots = their_q if their_q > 0 else -their_q
        if lots > left:
            lots = left
        transfer_signed(st, instrument, position, other, lots if q > 0 else -lots, price)
        left -= lots
        n = liquidation_stage(
            ev, n, seq, account, instrument, LiquidationStage.AUTO_DELEVERAGE, price, lots, other
        )
        n = liquidation_stage(
            ev, n, seq, other, instrument, LiquidationStage.AUTO_DELEVERAGE, price, lots, account
        )
    for k in range(count):
        st.scan_used[st.scan_accounts[k]] = 0
    return n, left


@kernel
def socialise_loss(st, ev, n, seq):
    """Spread a negative insurance fund balance over the positive balances of user accounts,
    pro rata (floor), the rounding remainder on the largest (lowest id on ties)."""
    deficit = -st.acc_i8[FUND, Account8.BALANCE]
    if deficit <= 0:
        return n
    total = 0
    largest = -1
    for account in range(SYSTEM_ACCOUNTS, st.counters[Counter.ACCOUNT_HWM]):
        balance = st.acc_i8[account, Account8.BALANCE]
        if balance > 0:
            total += balance
            if largest < 0 or balance > st.acc_i8[largest, Account8.BALANCE]:
                largest = account
    if total <= 0:
        st.counters[Counter.BAD_DEBT] += deficit
        return liquidation_stage(ev, n, seq, FUND, 0, LiquidationStage.SOCIALISED, 0, 0, -deficit)
    if deficit > total:
        st.counters[Counter.BAD_DEBT] += deficit - total
        deficit = total
    charged = 0
    for account in range(SYSTEM_ACCOUNTS, st.counters[Counter.ACCOUNT_HWM]):
        balance = st.acc_i8[account, Account8.BALANCE]
        if balance <= 0:
            continue
        share = _share(balance, deficit, total)
        if account == largest:
            continue
        if share > 0:
            move_balance(st, account, -share)
            charged += share
            n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.SOCIALISED, 0, 0, -share)
    rest = deficit - charged
    move_balance(st, largest, -rest)
    n = liquidation_stage(ev, n, seq, largest, 0, LiquidationStage.SOCIALISED, 0, 0, -rest)
    move_balance(st, FUND, deficit)
    return n


@kernel
def _share(balance, deficit, total):
    """floor(balance x deficit / total) exactly, for 0 <= balance <= total < 2^62 and
    0 <= deficit: shift-and-add long division, no intermediate above 2 x total."""
    if deficit >= total:
        return balance
    quotient = 0
    remainder = 0
    for bit in range(62, -1, -1):
        quotient *= 2
        remainder *= 2
        if remainder >= total:
            remainder -= total
            quotient += 1
        if (deficit >> bit) & 1:
            remainder += balance
            if remainder >= total:
                remainder -= total
                quotient += 1
    return quotient
