"""What a TIME command drives: option expiry and cash settlement, perpetual funding, and
liquidation (book, insurance fund, auto-deleveraging or socialised loss). ``docs/liquidation.md``
is the contract.

A TIME command runs four phases in order: expiry (instruments ascending), funding
(perpetuals ascending), liquidation (accounts ascending), and the insurance fund unwinding
what it took over (instruments ascending). Each step first makes sure the
event buffer has room for its worst case; if not, the command returns to the Python wrapper
with its phase and cursor saved in the counters, the buffer grows, and the same command
resumes where it stopped. The outcome never depends on the buffer size or on batching.

Costs: expiry O(resting + accounts) per expiring option; funding O(accounts) per perpetual;
liquidation O(accounts x S) to find the accounts below maintenance, plus the rounds.
"""

from __future__ import annotations

import numpy as np

from derivex.core.accounting import settle_fill_side
from derivex.core.admin import cancel_account_orders
from derivex.core.book import order_free
from derivex.core.config import (
    P_ADL_MAX_COUNTERPARTIES,
    P_ADL_MODE,
    P_EXPIRY_TWAP_MS,
    P_FUNDING_CAP_PPB,
    P_FUNDING_CLAMP_PPB,
    P_FUNDING_DEAD_BAND_PPB,
    P_FUNDING_INTEREST_PPB,
    P_FUNDING_MODE,
    P_FUNDING_PERIOD_MS,
    P_INDEX_HISTORY,
    P_LIQUIDATION_FEE_PPM,
    P_LIQUIDATION_STEP_PPM,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
    P_RISK_CHECKS,
)
from derivex.core.emit import (
    accepted,
    account_state_changed,
    funding_paid,
    instrument_status_changed,
    liquidation_stage,
    settled,
)
from derivex.core.fixed import mul_div_ceil, mul_div_floor
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    STATUS_DONE,
    STATUS_EVENTS,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Level4,
    Order4,
    Order8,
    Pos4,
    Pos8,
    Und8,
)
from derivex.core.matching import cancel_resting, match
from derivex.core.pools import (
    hash_find,
    order_alloc,
    position_get_or_create,
    position_release_if_idle,
)
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    AccountState,
    CommandKind,
    IndexStatus,
    InstrumentKind,
    InstrumentStatus,
    LiquidationStage,
    OptionType,
    OrderFlag,
    Reason,
    Side,
    SystemAccount,
)
from derivex.core.risk import (
    exposed_to_stale_index,
    margins,
    market_band_price,
    risk_in,
    risk_out,
)

PPM = 1_000_000
FUND = SystemAccount.INSURANCE_FUND  # the member itself (not a copy of its value)
PPB = 1_000_000_000
NS_PER_MS = 1_000_000

PHASE_EXPIRY = 1
PHASE_FUNDING = 2
PHASE_LIQUIDATION = 3
PHASE_UNWIND = 4


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


@kernel
def _set_state(st, ev, n, seq, account, state):
    st.acc_i4[account, Account4.STATE] = state
    return account_state_changed(ev, n, seq, CommandKind.TIME, account, state)


@kernel
def _position_of(st, account, instrument):
    return hash_find(st.hash_key, st.hash_val, account, instrument)


@kernel
def _holders(st, instrument):
    """Number of accounts with a non-zero position in ``instrument``."""
    count = 0
    for position in range(st.counters[Counter.POSITION_HWM]):
        if (
            st.pos_i4[position, Pos4.LIVE] == 1
            and st.pos_i4[position, Pos4.INSTRUMENT] == instrument
            and st.pos_i8[position, Pos8.QTY] != 0
        ):
            count += 1
    return count


@kernel
def _move(st, account, amount):
    st.acc_i8[account, Account8.BALANCE] += amount


@kernel
def transfer(st, instrument, seller_position, buyer_account, qty, price):
    """Move ``qty`` lots of ``instrument`` from the seller's position to ``buyer_account`` at
    ``price`` with no fee (a takeover or a deleveraging). Returns the buyer's position."""
    buyer = position_get_or_create(st, buyer_account, instrument)
    value = price * st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    risk_out(st, seller_position)
    settle_fill_side(st, instrument, seller_position, Side.SELL, qty, value, 0)
    risk_in(st, seller_position, -qty, 0, 0)
    risk_out(st, buyer)
    settle_fill_side(st, instrument, buyer, Side.BUY, qty, value, 0)
    risk_in(st, buyer, qty, 0, 0)
    return buyer


@kernel
def transfer_signed(st, instrument, from_position, to_account, qty, price):
    """Move a signed ``qty`` (the sign of the position it comes from) to ``to_account``
    (takeover, deleveraging). Either side left flat with no resting orders is released
    here, whichever account it belongs to: the receiver (the insurance fund included) can
    net to zero as well as the giver. Callers must re-find positions afterwards."""
    if qty > 0:
        to = transfer(st, instrument, from_position, to_account, qty, price)
    else:
        to = position_get_or_create(st, to_account, instrument)
        transfer(st, instrument, to, st.pos_i4[from_position, Pos4.ACCOUNT], -qty, price)
    position_release_if_idle(st, to)
    position_release_if_idle(st, from_position)


# ---------------------------------------------------------------------------------------
# expiry
# ---------------------------------------------------------------------------------------


@kernel
def twap(st, underlying, start, end):
    """Time-weighted average of the sequenced index over ``[start, end]`` (the index holds
    its value until the next update); 0 if no update at or before ``end``."""
    history = st.params[P_INDEX_HISTORY]
    head = st.und_i8[underlying, Und8.HIST_HEAD]
    length = st.und_i8[underlying, Und8.HIST_LEN]
    total = 0
    span = 0
    level = 0
    at = start
    have = False
    for k in range(length):
        row = underlying * history + (head - length + k) % history
        ts = st.und_hist[row, 0]
        value = st.und_hist[row, 1]
        if ts > end:
            break
        if ts <= start:
            level = value
            have = True
            continue
        if have:
            duration = (ts - at) // NS_PER_MS
            total += level * duration
            span += duration
        at = ts
        level = value
        have = True
    if not have:
        return 0
    duration = (end - at) // NS_PER_MS
    total += level * duration
    span += duration
    if span <= 0:
        return level
    return total // span


@kernel
def _settle_option(st, ev, n, seq, instrument, price):
    """Cancel the book, pay every position its intrinsic value at ``price``, mark settled."""
    for side in range(2):
        row = instrument * 2 + side
        while st.ladder_len[row] > 0:
            level = st.ladder_level[row, st.ladder_len[row] - 1]
            slot = st.lvl_i4[level, Level4.HEAD]
            n, position = cancel_resting(
                st, ev, n, seq, CommandKind.TIME, slot, instrument, side, Reason.CANCEL_EXPIRED, 0
            )
            position_release_if_idle(st, position)
    strike = st.ins_i8[instrument, Ins8.STRIKE]
    if st.ins_i4[instrument, Ins4.OPTION_TYPE] == OptionType.CALL:
        payoff = price - strike
    else:
        payoff = strike - price
    if payoff < 0:
        payoff = 0
    payoff *= st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    for account in range(st.counters[Counter.ACCOUNT_HWM]):
        position = _position_of(st, account, instrument)
        if position == NIL:
            continue
        q = st.pos_i8[position, Pos8.QTY]
        if q == 0:
            continue
        risk_out(st, position)
        cash = q * payoff
        _move(st, account, cash)
        st.pos_i8[position, Pos8.QTY] = 0
        st.pos_i8[position, Pos8.BASIS] = 0
        risk_in(st, position, -q, 0, 0)
        n = settled(
            ev,
            n,
            seq,
            account,
            instrument,
            price,
            q,
            cash,
            st.acc_i8[account, Account8.BALANCE],
        )
        position_release_if_idle(st, position)
    st.ins_i4[instrument, Ins4.STATUS] = InstrumentStatus.SETTLED
    st.ins_i8[instrument, Ins8.SETTLEMENT] = price
    return instrument_status_changed(
        ev, n, seq, CommandKind.TIME, instrument, price, InstrumentStatus.SETTLED
    )


@kernel
def expire(st, ev, n, seq, now):
    """Phase 1: settle every option whose expiry has come. Returns (n, instrument to resume
    at or -1 when done, events needed)."""
    twap_ns = st.params[P_EXPIRY_TWAP_MS] * NS_PER_MS
    for instrument in range(st.counters[Counter.TIME_CURSOR], st.counters[Counter.INSTRUMENT_HWM]):
        if st.ins_i4[instrument, Ins4.KIND] != InstrumentKind.OPTION:
            continue
        if st.ins_i4[instrument, Ins4.STATUS] == InstrumentStatus.SETTLED:
            continue
        expiry = st.ins_i8[instrument, Ins8.EXPIRY]
        if expiry > now:
            continue
        price = twap(st, st.ins_i4[instrument, Ins4.UNDERLYING], expiry - twap_ns, expiry)
        if price <= 0:
            continue  # no index yet: settles at a later TIME
        need = 4 + st.ins_i4[instrument, Ins4.RESTING] + _holders(st, instrument)
        if n + need > ev.shape[0]:
            return n, instrument, need
        n = _settle_option(st, ev, n, seq, instrument, price)
    return n, -1, 0


# ---------------------------------------------------------------------------------------
# funding
# ---------------------------------------------------------------------------------------


@kernel
def premium_ppb(mark, index):
    """floor((mark - index) / index * 1e9), both scaled down together while the index is
    too large for the exact product (an integer approximation, deterministic)."""
    diff = mark - index
    while index >= (1 << 31):
        index >>= 1
        diff >>= 1
    if index <= 0:
        return 0
    if diff >= 0:
        return mul_div_floor(diff, PPB, index)
    return -mul_div_ceil(-diff, PPB, index)


@kernel
def _clamp(value, limit):
    if value > limit:
        return limit
    if value < -limit:
        return -limit
    return value


@kernel
def _cap(st, instrument):
    """The instrument's funding cap (SET_INSTRUMENT), else the configured one."""
    cap = st.ins_i8[instrument, Ins8.FUNDING_CAP]
    return cap if cap > 0 else st.params[P_FUNDING_CAP_PPB]


@kernel
def _pay_funding(st, ev, n, seq, instrument, rate, elapsed_ms, index):
    """Every holder pays (rounded up) or receives (rounded down) |q| x index x cv x rate x
    elapsed / period; the rounding residue goes to the insurance fund."""
    period = st.params[P_FUNDING_PERIOD_MS]
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    size = rate if rate >= 0 else -rate
    paid = 0
    received = 0
    for account in range(SYSTEM_ACCOUNTS, st.counters[Counter.ACCOUNT_HWM]):
        position = _position_of(st, account, instrument)
        if position == NIL:
            continue
        q = st.pos_i8[position, Pos8.QTY]
        if q == 0:
            continue
        value = (q if q > 0 else -q) * index * cv
        payer = (q > 0) == (rate > 0)
        if payer:
            amount = -mul_div_ceil(mul_div_ceil(value, size, PPB), elapsed_ms, period)
            paid -= amount
        else:
            amount = mul_div_floor(mul_div_floor(value, size, PPB), elapsed_ms, period)
            received += amount
        _move(st, account, amount)
        n = funding_paid(
            ev,
            n,
            seq,
            account,
            instrument,
            rate,
            q,
            amount,
            st.acc_i8[account, Account8.BALANCE],
        )
    residue = paid - received
    _move(st, FUND, residue)
    st.ins_i8[instrument, Ins8.FUNDING_RATE] = rate
    return funding_paid(
        ev,
        n,
        seq,
        FUND,
        instrument,
        rate,
        0,
        residue,
        st.acc_i8[FUND, Account8.BALANCE],
    )


@kernel
def fund(st, ev, n, seq, now):
    """Phase 2: accrue (continuous) or settle at interval ends (interval) the funding of every
    perpetual. Returns (n, instrument to resume at or -1, events needed)."""
    period = st.params[P_FUNDING_PERIOD_MS]
    for instrument in range(st.counters[Counter.TIME_CURSOR], st.counters[Counter.INSTRUMENT_HWM]):
        if st.ins_i4[instrument, Ins4.KIND] != InstrumentKind.PERPETUAL:
            continue
        underlying = st.ins_i4[instrument, Ins4.UNDERLYING]
        index = st.und_i8[underlying, Und8.INDEX]
        mark = st.ins_i8[instrument, Ins8.MARK]
        last = st.ins_i8[instrument, Ins8.FUNDING_TS]
        if last == 0 or st.und_i8[underlying, Und8.STATUS] != IndexStatus.VALID or mark <= 0:
            st.ins_i8[instrument, Ins8.FUNDING_TS] = now  # starts, or pauses while stale
            continue
        elapsed = (now - last) // NS_PER_MS
        if elapsed <= 0:
            continue
        premium = premium_ppb(mark, index)
        if st.params[P_FUNDING_MODE] == 0:
            band = st.params[P_FUNDING_DEAD_BAND_PPB]
            rate = 0
            if premium > band:
                rate = premium - band
            elif premium < -band:
                rate = premium + band
            rate = _clamp(rate, _cap(st, instrument))
            if rate != 0:
                need = 2 + _holders(st, instrument)
                if n + need > ev.shape[0]:
                    return n, instrument, need
            if elapsed > period:
                elapsed = period  # a long gap accrues at most one period
            st.ins_i8[instrument, Ins8.FUNDING_TS] = now
            st.ins_i8[instrument, Ins8.FUNDING_RATE] = rate
            if rate != 0:
                n = _pay_funding(st, ev, n, seq, instrument, rate, elapsed, index)
            continue
        # interval mode: time-weighted premium over the interval, settled at its end
        done = st.ins_i8[instrument, Ins8.PREMIUM_MS]
        step = elapsed if done + elapsed <= period else period - done
        if done + elapsed >= period:
            need = 2 + _holders(st, instrument)
            if n + need > ev.shape[0]:
                return n, instrument, need
        st.ins_i8[instrument, Ins8.PREMIUM_ACC] += premium * step
        st.ins_i8[instrument, Ins8.PREMIUM_MS] = done + step
        st.ins_i8[instrument, Ins8.FUNDING_TS] = now
        if done + elapsed >= period:
            average = st.ins_i8[instrument, Ins8.PREMIUM_ACC] // period
            rate = average + _clamp(
                st.params[P_FUNDING_INTEREST_PPB] - average, st.params[P_FUNDING_CLAMP_PPB]
            )
            rate = _clamp(rate, _cap(st, instrument))
            st.ins_i8[instrument, Ins8.PREMIUM_ACC] = 0
            st.ins_i8[instrument, Ins8.PREMIUM_MS] = 0
            n = _pay_funding(st, ev, n, seq, instrument, rate, period, index)
    return n, -1, 0


# ---------------------------------------------------------------------------------------
# liquidation
# ---------------------------------------------------------------------------------------


@kernel
def _first_position(st, account):
    """The position a liquidation round works on: perpetuals first, then options, lowest
    instrument id first; NIL when flat."""
    best = NIL
    best_key = np.int64(0)
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        if st.pos_i8[position, Pos8.QTY] != 0:
            instrument = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
            key = instrument
            if st.ins_i4[instrument, Ins4.KIND] != InstrumentKind.PERPETUAL:
                key += 1 << 40
            if best == NIL or key < best_key:
                best = position
                best_key = key
        position = st.pos_i4[position, Pos4.NEXT]
    return best


@kernel
def bankruptcy_price(st, instrument, q, equity):
    """Price at which closing all ``q`` lots leaves the account's equity at zero, on the tick
    grid against the account (up for a sale, down for a purchase), within (0, max]."""
    mark = st.ins_i8[instrument, Ins8.MARK]
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    tick = st.ins_i8[instrument, Ins8.TICK]
    top = st.ins_i8[instrument, Ins8.MAX_PRICE] // tick * tick
    size = q if q > 0 else -q
    unit = size * cv
    if q > 0:
        need = size * mark * cv - equity
        price = -((-need) // unit)  # ceil
        price = -((-price) // tick) * tick
        if price < tick:
            price = tick
        return price if price < top else top
    need = size * mark * cv + equity
    price = need // unit // tick * tick
    if price < tick:
        price = tick
    return price if price < top else top


@kernel
def _step_lots(st, instrument, q):
    """Lots one liquidation step closes of a position of ``q``: ``liquidation_step_ppm`` of
    it, rounded up to the lot step, at most all of it."""
    size = q if q > 0 else -q
    step = st.ins_i8[instrument, Ins8.MIN_LOTS]
    lots = mul_div_ceil(size, st.params[P_LIQUIDATION_STEP_PPM], PPM)
    lots = -((-lots) // step) * step
    return lots if lots < size else size


@kernel
def _through_book(st, ev, n, seq, account, position, instrument, side, qty, limit):
    """An engine IOC order closing up to ``qty`` lots no worse than ``limit`` (no gas)."""
    slot = order_alloc(st)
    st.ord_i8[slot, Order8.PRICE_TICKS] = limit
    st.ord_i8[slot, Order8.QTY_LOTS] = qty
    st.ord_i4[slot, Order4.POSITION] = position
    st.ord_i4[slot, Order4.META] = side | (OrderFlag.REDUCE_ONLY << 1)
    st.ord_label[slot] = 0
    gas = st.acc_i8[account, Account8.GAS]
    st.acc_i8[account, Account8.GAS] = 1 << 62
    n, rem, _ = match(
        st,
        ev,
        n,
        seq,
        CommandKind.TIME,
        instrument,
        side,
        limit,
        False,
        qty,
        slot,
        position,
        account,
    )
    st.acc_i8[account, Account8.GAS] = gas
    order_free(st, slot)
    position_release_if_idle(st, position)  # closed flat: the slot goes back to the pool
    return n, qty - rem


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
    pnl_ppm = _clamp(pnl // scale, PPB)
    equity = margins(st, account)[0]
    if equity <= 0:
        leverage = PPB
    else:
        leverage = _clamp((value if value > 0 else -value) // (equity // PPM + 1), PPB)
    if leverage < 1:
        leverage = 1
    if pnl_ppm >= 0:
        return pnl_ppm * leverage // PPM
    return pnl_ppm * PPM // leverage


@kernel
def _deleverage(st, ev, n, seq, account, position, instrument, price):
    """Close the position against the best-ranked opposite positions at ``price``; returns
    (n, lots left)."""
    q = st.pos_i8[position, Pos8.QTY]
    count = 0
    for other in range(SYSTEM_ACCOUNTS, st.counters[Counter.ACCOUNT_HWM]):
        if other == account:
            continue
        theirs = _position_of(st, other, instrument)
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
        theirs = _position_of(st, other, instrument)
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
def _socialise(st, ev, n, seq):
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
            _move(st, account, -share)
            charged += share
            n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.SOCIALISED, 0, 0, -share)
    rest = deficit - charged
    _move(st, largest, -rest)
    n = liquidation_stage(ev, n, seq, largest, 0, LiquidationStage.SOCIALISED, 0, 0, -rest)
    _move(st, FUND, deficit)
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


@kernel
def _takeover(st, ev, n, seq, account):
    """Stage 3/4: the account's remaining positions and equity go to the insurance fund;
    if the fund cannot cover the deficit, opposite positions are deleveraged at bankruptcy
    prices (ranked mode) or the fund's deficit is socialised."""
    equity = margins(st, account)[0]
    fund_equity = margins(st, FUND)[0]
    ranked = st.params[P_ADL_MODE] == 0
    if ranked and fund_equity + equity < 0:
        while True:
            position = _first_position(st, account)
            if position == NIL:
                break
            instrument = st.pos_i4[position, Pos4.INSTRUMENT]
            q = st.pos_i8[position, Pos8.QTY]
            price = bankruptcy_price(st, instrument, q, margins(st, account)[0])
            n, left = _deleverage(st, ev, n, seq, account, position, instrument, price)
            if left > 0:
                transfer_signed(
                    st,
                    instrument,
                    position,
                    FUND,
                    left if q > 0 else -left,
                    price,
                )
                n = liquidation_stage(
                    ev, n, seq, account, instrument, LiquidationStage.INSURANCE_FUND, price, left, 0
                )
    while True:
        position = _first_position(st, account)
        if position == NIL:
            break
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        q = st.pos_i8[position, Pos8.QTY]
        mark = st.ins_i8[instrument, Ins8.MARK]
        transfer_signed(st, instrument, position, FUND, q, mark)
        n = liquidation_stage(
            ev,
            n,
            seq,
            account,
            instrument,
            LiquidationStage.INSURANCE_FUND,
            mark,
            q if q > 0 else -q,
            0,
        )
    balance = st.acc_i8[account, Account8.BALANCE]  # the remaining equity, + or -
    _move(st, account, -balance)
    _move(st, FUND, balance)
    n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.INSURANCE_FUND, 0, 0, balance)
    if st.acc_i8[FUND, Account8.BALANCE] < 0 and not ranked:
        n = _socialise(st, ev, n, seq)
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        following = st.pos_i4[position, Pos4.NEXT]
        position_release_if_idle(st, position)
        position = following
    n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.ENDED, 0, 0, 0)
    return _set_state(st, ev, n, seq, account, AccountState.BANKRUPT)


@kernel
def liquidation_round(st, ev, n, seq, account):
    """One round for an account below maintenance (or already in liquidation)."""
    equity, _, mm = margins(st, account)
    if st.acc_i4[account, Account4.STATE] != AccountState.IN_LIQUIDATION:
        n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.STARTED, 0, mm, equity)
        n = _set_state(st, ev, n, seq, account, AccountState.IN_LIQUIDATION)
        count = st.acc_i4[account, Account4.OPEN_ORDERS]
        n = cancel_account_orders(
            st, ev, n, seq, CommandKind.TIME, account, np.int64(-1), Reason.CANCEL_LIQUIDATION
        )
        n = liquidation_stage(
            ev, n, seq, account, 0, LiquidationStage.ORDERS_CANCELLED, 0, count, 0
        )
        equity, _, mm = margins(st, account)
    position = _first_position(st, account)
    if (position == NIL and equity >= 0) or (position != NIL and equity >= mm):
        n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.ENDED, 0, mm, equity)
        return _set_state(st, ev, n, seq, account, AccountState.NORMAL)
    if (
        position != NIL
        and equity > 0
        and st.counters[Counter.ORDERS_LIVE] < st.params[P_MAX_ORDERS]
    ):
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        q = st.pos_i8[position, Pos8.QTY]
        lots = _step_lots(st, instrument, q)
        price = bankruptcy_price(st, instrument, q, equity)
        side = Side.SELL if q > 0 else Side.BUY
        n, filled = _through_book(st, ev, n, seq, account, position, instrument, side, lots, price)
        if filled > 0:
            mark = st.ins_i8[instrument, Ins8.MARK]
            fee = mul_div_ceil(
                filled * mark * st.ins_i8[instrument, Ins8.CONTRACT_VALUE],
                st.params[P_LIQUIDATION_FEE_PPM],
                PPM,
            )
            left = margins(st, account)[0]
            if fee > left:
                fee = left if left > 0 else 0
            _move(st, account, -fee)
            _move(st, FUND, fee)
            n = liquidation_stage(
                ev, n, seq, account, instrument, LiquidationStage.BOOK, price, filled, fee
            )
            equity, _, mm = margins(st, account)
            if equity >= mm:
                n = liquidation_stage(ev, n, seq, account, 0, LiquidationStage.ENDED, 0, mm, equity)
                return _set_state(st, ev, n, seq, account, AccountState.NORMAL)
            return n
    if (
        _fund_slots_needed(st, account)
        > st.params[P_MAX_POSITIONS] - st.counters[Counter.POSITIONS_LIVE]
    ):
        return n  # no position slot for the fund: the takeover waits for the next TIME
    return _takeover(st, ev, n, seq, account)


@kernel
def _fund_slots_needed(st, account):
    """Position slots the insurance fund would need to take the account's positions."""
    need = 0
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        if (
            st.pos_i8[position, Pos8.QTY] != 0
            and _position_of(st, FUND, st.pos_i4[position, Pos4.INSTRUMENT]) == NIL
        ):
            need += 1
        position = st.pos_i4[position, Pos4.NEXT]
    return need


@kernel
def _round_events(st, account):
    """Worst-case events of one liquidation round of ``account``."""
    positions = 0
    resting = 0
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        positions += 1
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        resting += st.ins_i4[instrument, Ins4.RESTING]
        position = st.pos_i4[position, Pos4.NEXT]
    socialised = st.counters[Counter.ACCOUNT_HWM] if st.params[P_ADL_MODE] != 0 else 0
    return (
        24
        + st.acc_i4[account, Account4.OPEN_ORDERS]
        + 5 * resting
        + positions * (8 + 2 * st.params[P_ADL_MAX_COUNTERPARTIES])
        + socialised
    )


@kernel
def liquidate(st, ev, n, seq):
    """Phase 3: a round for every account below maintenance margin or in liquidation, in
    account order. Returns (n, account to resume at or -1, events needed)."""
    for account in range(
        max(st.counters[Counter.TIME_CURSOR], SYSTEM_ACCOUNTS), st.counters[Counter.ACCOUNT_HWM]
    ):
        state = st.acc_i4[account, Account4.STATE]
        if state != AccountState.IN_LIQUIDATION:
            if (
                st.acc_i4[account, Account4.POSITION_HEAD] == NIL
                and st.acc_i8[account, Account8.BALANCE] >= 0
            ):
                continue
            equity, _, mm = margins(st, account)
            if equity >= mm:
                continue
        if exposed_to_stale_index(st, account):
            continue  # suspended while an index it depends on is stale
        need = _round_events(st, account)
        if n + need > ev.shape[0]:
            return n, account, need
        n = liquidation_round(st, ev, n, seq, account)
    return n, -1, 0


@kernel
def unwind_fund(st, ev, n, seq):
    """Phase 4: the insurance fund reduces each position it took over by one liquidation
    step through the book, no further than the market band around the mark. Returns (n,
    instrument to resume at or -1, events needed)."""
    for instrument in range(st.counters[Counter.TIME_CURSOR], st.counters[Counter.INSTRUMENT_HWM]):
        position = _position_of(st, FUND, instrument)
        if position == NIL or st.pos_i8[position, Pos8.QTY] == 0:
            continue
        underlying = st.ins_i4[instrument, Ins4.UNDERLYING]
        if (
            st.ins_i4[instrument, Ins4.STATUS] != InstrumentStatus.ACTIVE
            or st.und_i8[underlying, Und8.STATUS] != IndexStatus.VALID
            or st.ins_i8[instrument, Ins8.MARK] <= 0
            or st.counters[Counter.ORDERS_LIVE] >= st.params[P_MAX_ORDERS]
        ):
            continue
        need = 12 + 5 * st.ins_i4[instrument, Ins4.RESTING]
        if n + need > ev.shape[0]:
            return n, instrument, need
        q = st.pos_i8[position, Pos8.QTY]
        lots = _step_lots(st, instrument, q)
        side = Side.SELL if q > 0 else Side.BUY
        price = market_band_price(st, instrument, side)
        n, filled = _through_book(st, ev, n, seq, FUND, position, instrument, side, lots, price)
        if filled > 0:
            n = liquidation_stage(
                ev,
                n,
                seq,
                FUND,
                instrument,
                LiquidationStage.BOOK,
                price,
                filled,
                0,
            )
    return n, -1, 0


@kernel
def time_command(st, ev, n, cmds, i):
    """TIME: expiry, funding, liquidation, the fund's unwinding (resumable). Returns (n,
    status, events needed)."""
    c = cmds[i]
    seq = c["seq"]
    now = st.counters[Counter.CLOCK_NS]
    if st.counters[Counter.TIME_PHASE] == 0:
        n = accepted(ev, n, seq, CommandKind.TIME, 0, 0, 0, 0, 0)
        st.counters[Counter.TIME_PHASE] = PHASE_EXPIRY
        st.counters[Counter.TIME_CURSOR] = 0
    if st.params[P_RISK_CHECKS] == 0:
        st.counters[Counter.TIME_PHASE] = 0
        return n, STATUS_DONE, 0
    while st.counters[Counter.TIME_PHASE] <= PHASE_UNWIND:
        phase = st.counters[Counter.TIME_PHASE]
        if phase == PHASE_EXPIRY:
            n, cursor, need = expire(st, ev, n, seq, now)
        elif phase == PHASE_FUNDING:
            n, cursor, need = fund(st, ev, n, seq, now)
        elif phase == PHASE_LIQUIDATION:
            n, cursor, need = liquidate(st, ev, n, seq)
        else:
            n, cursor, need = unwind_fund(st, ev, n, seq)
        if cursor >= 0:  # out of event room: resume this phase here
            st.counters[Counter.TIME_CURSOR] = cursor
            return n, STATUS_EVENTS, need
        st.counters[Counter.TIME_PHASE] = phase + 1
        st.counters[Counter.TIME_CURSOR] = 0
    st.counters[Counter.TIME_PHASE] = 0
    return n, STATUS_DONE, 0
