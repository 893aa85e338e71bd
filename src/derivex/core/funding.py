"""Perpetual funding: the premium of the mark over the index, the capped rate, and its
payment between the perpetual's positions (the insurance fund takes the rounding residue).
Cost: O(accounts) per perpetual.
"""

from __future__ import annotations

from derivex.core.config import (
    P_FUNDING_CAP_PPB,
    P_FUNDING_CLAMP_PPB,
    P_FUNDING_DEAD_BAND_PPB,
    P_FUNDING_INTEREST_PPB,
    P_FUNDING_MODE,
    P_FUNDING_PERIOD_MS,
)
from derivex.core.emit import funding_paid
from derivex.core.fixed import mul_div_ceil, mul_div_floor
from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account8, Counter, Ins4, Ins8, Pos8, Und8
from derivex.core.records import SYSTEM_ACCOUNTS, IndexStatus, InstrumentKind
from derivex.core.transfers import FUND, NS_PER_MS, PPB, clamp, holders, move_balance, position_of


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
        position = position_of(st, account, instrument)
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
        move_balance(st, account, amount)
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
    move_balance(st, FUND, residue)
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
            rate = clamp(rate, _cap(st, instrument))
            if rate != 0:
                need = 2 + holders(st, instrument)
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
            need = 2 + holders(st, instrument)
            if n + need > ev.shape[0]:
                return n, instrument, need
        st.ins_i8[instrument, Ins8.PREMIUM_ACC] += premium * step
        st.ins_i8[instrument, Ins8.PREMIUM_MS] = done + step
        st.ins_i8[instrument, Ins8.FUNDING_TS] = now
        if done + elapsed >= period:
            average = st.ins_i8[instrument, Ins8.PREMIUM_ACC] // period
            rate = average + clamp(
                st.params[P_FUNDING_INTEREST_PPB] - average, st.params[P_FUNDING_CLAMP_PPB]
            )
            rate = clamp(rate, _cap(st, instrument))
            st.ins_i8[instrument, Ins8.PREMIUM_ACC] = 0
            st.ins_i8[instrument, Ins8.PREMIUM_MS] = 0
            n = _pay_funding(st, ev, n, seq, instrument, rate, period, index)
    return n, -1, 0
