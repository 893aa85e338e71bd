"""Option expiry: the settlement price (a TWAP of the index history) and the cash
settlement of every position of an expiring option. ``docs/liquidation.md`` is the
contract. Cost: O(resting + accounts) per expiring option.
"""

from __future__ import annotations

from derivex.core.config import P_EXPIRY_TWAP_MS, P_INDEX_HISTORY
from derivex.core.emit import instrument_status_changed, settled
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account8, Counter, Ins4, Ins8, Level4, Pos8, Und8
from derivex.core.matching import cancel_resting
from derivex.core.pools import position_release_if_idle
from derivex.core.records import CommandKind, InstrumentKind, InstrumentStatus, OptionType, Reason
from derivex.core.risk import risk_in, risk_out
from derivex.core.transfers import NS_PER_MS, holders, move_balance, position_of


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
                st,
                ev,
                n,
                seq,
                CommandKind.ADVANCE_TIME,
                slot,
                instrument,
                side,
                Reason.CANCEL_EXPIRED,
                0,
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
        position = position_of(st, account, instrument)
        if position == NIL:
            continue
        q = st.pos_i8[position, Pos8.QTY]
        if q == 0:
            continue
        risk_out(st, position)
        cash = q * payoff
        move_balance(st, account, cash)
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
        ev, n, seq, CommandKind.ADVANCE_TIME, instrument, price, InstrumentStatus.SETTLED
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
        need = 4 + st.ins_i4[instrument, Ins4.RESTING] + holders(st, instrument)
        if n + need > ev.shape[0]:
            return n, instrument, need
        n = _settle_option(st, ev, n, seq, instrument, price)
    return n, -1, 0
