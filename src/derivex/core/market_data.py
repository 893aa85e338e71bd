"""Market data the sequencer feeds the core, in integer arithmetic (``docs/risk.md``).

* ``SET_INDEX`` (a header and its source legs) computes an underlying's index from several
  sources: stale sources are dropped, the rest clamped to (or, if configured, discarded
  outside) a band around their median, then averaged with equal weights. The perpetuals of
  the underlying get a new mark (index plus a smoothed, clamped basis) and scenario P&Ls.
* ``SET_RISK_ARRAY`` (a header, a Greeks leg and scenario legs) stages an option's mark,
  Greeks and scenario P&Ls from the pricing service.
* Both only *stage* values (``*_NEXT``, ``ins_arr_next``). The staged values are applied to
  every account holding the instrument by ``flush``, which runs before the next command that
  is not market data: one pass over the positions re-margins all accounts at once, however
  many instruments changed. Where the flush happens depends on the command stream only, never
  on how it was cut into batches.

Costs: SET_INDEX O(sources^2 + instruments); ``flush`` O(positions x S) once per
market-data run.
"""

from __future__ import annotations

import numpy as np

from derivex.core.config import (
    P_INDEX_HISTORY,
    P_INDEX_MIN_SOURCES,
    P_INDEX_OUTLIER_DISCARD,
    P_INDEX_OUTLIER_PPM,
    P_INDEX_STALE_NS,
    P_MARK_BASIS_CLAMP_PPM,
    P_MARK_EMA_PPM,
    P_MAX_PRICE_TICKS,
    P_MAX_UNDERLYINGS,
    P_RISK_CHECKS,
    P_SCENARIO_BASE,
    P_SCENARIOS,
)
from derivex.core.emit import accepted, index_changed, mark_changed
from derivex.core.fixed import mul_div_ceil, mul_div_floor
from derivex.core.jit import kernel
from derivex.core.layout import Account4, Counter, Ins4, Ins8, Pos4, Pos8, Und8
from derivex.core.records import CommandKind, IndexStatus, InstrumentKind, MarginMode, Reason
from derivex.core.risk import PPM, contribute, update_vectors


@kernel
def leg_span(cmds, i, leg_kind, other_kind, limit):
    """``(records, complete)`` a header at ``i`` consumes: 1 + count if its ``count`` legs
    (of ``leg_kind`` or ``other_kind``) follow, with 1 <= count <= limit; else 1 + the run of
    such legs that follows (consumed and rejected with the header)."""
    count = np.int64(cmds[i]["count"])
    run = 0
    while i + 1 + run < cmds.shape[0] and (
        cmds[i + 1 + run]["kind"] == leg_kind or cmds[i + 1 + run]["kind"] == other_kind
    ):
        run += 1
    if 1 <= count <= limit and count <= run:
        return 1 + count, True
    return 1 + run, False


@kernel
def _stage(st, instrument):
    if st.ins_i4[instrument, Ins4.DIRTY] == 0:
        st.ins_i4[instrument, Ins4.DIRTY] = 1
        st.counters[Counter.RISK_DIRTY] += 1


@kernel
def _scenario_pnl(value, move_ppm, weight_ppm):
    """floor(value x move x weight / 1e12) for a lot value >= 0 (conservative: a loss is
    rounded away from zero, a gain toward it)."""
    if move_ppm >= 0:
        pnl = mul_div_floor(value, move_ppm, PPM)
    else:
        pnl = -mul_div_ceil(value, -move_ppm, PPM)
    if pnl >= 0:
        return mul_div_floor(pnl, weight_ppm, PPM)
    return -mul_div_ceil(-pnl, weight_ppm, PPM)


@kernel
def perpetual_mark(st, instrument, index):
    """Stage a perpetual's mark: index + EMA of the basis of the book's mid (clamped to
    +/- mark_basis_clamp of the index; with no two-sided book the EMA is kept), and its
    scenario P&Ls. Returns the staged mark."""
    ema = st.ins_i8[instrument, Ins8.BASIS_EMA]
    bids = instrument * 2
    asks = bids + 1
    if st.ladder_len[bids] > 0 and st.ladder_len[asks] > 0:
        best_bid = st.ladder_price[bids, st.ladder_len[bids] - 1]
        best_ask = st.ladder_price[asks, st.ladder_len[asks] - 1]
        basis = (best_bid + best_ask) // 2 - index
        limit = mul_div_floor(index, st.params[P_MARK_BASIS_CLAMP_PPM], PPM)
        if basis > limit:
            basis = limit
        elif basis < -limit:
            basis = -limit
        ema += (basis - ema) * st.params[P_MARK_EMA_PPM] // PPM
    st.ins_i8[instrument, Ins8.BASIS_EMA] = ema
    mark = index + ema
    if mark < 1:
        mark = 1
    st.ins_i8[instrument, Ins8.MARK_NEXT] = mark
    value = mark * st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    base = P_SCENARIO_BASE
    for s in range(st.params[P_SCENARIOS]):
        st.ins_arr_next[instrument, s] = _scenario_pnl(
            value, st.params[base + 3 * s], st.params[base + 3 * s + 2]
        )
    return mark


@kernel
def _median_and_mean(st, count):
    """Index from the ``count`` valid prices in ``st.scratch``: their median, the band around
    it, then the equal-weight mean (floor) of the clamped (or kept) prices. Returns
    ``(index, used)``."""
    prices = st.scratch
    for a in range(1, count):  # insertion sort: count <= MAX_INDEX_SOURCES
        value = prices[a]
        b = a - 1
        while b >= 0 and prices[b] > value:
            prices[b + 1] = prices[b]
            b -= 1
        prices[b + 1] = value
    if count % 2 == 1:
        median = prices[count // 2]
    else:
        median = (prices[count // 2 - 1] + prices[count // 2]) // 2
    band = mul_div_floor(median, st.params[P_INDEX_OUTLIER_PPM], PPM)
    low = median - band
    high = median + band
    total = 0
    used = 0
    for a in range(count):
        price = prices[a]
        if price < low or price > high:
            if st.params[P_INDEX_OUTLIER_DISCARD] != 0:
                continue
            price = low if price < low else high
        total += price
        used += 1
    if used == 0:
        return 0, 0
    return total // used, used


@kernel
def index_command(st, ev, n, cmds, i, span, complete):
    """INDEX header at ``i`` with its legs; returns ``(events, reject reason or OK)``."""
    c = cmds[i]
    seq = c["seq"]
    underlying = np.int64(c["index_underlying"])
    count = span - 1
    reason = Reason.OK
    if not complete:
        reason = Reason.BAD_INDEX
    elif underlying < 1 or underlying >= st.params[P_MAX_UNDERLYINGS]:
        reason = Reason.UNKNOWN_UNDERLYING
    else:
        for j in range(count):
            leg = cmds[i + 1 + j]
            price = leg["price_ticks"]
            if price <= 0 or price > st.params[P_MAX_PRICE_TICKS]:
                reason = Reason.BAD_INDEX
            for k in range(j):
                if cmds[i + 1 + k]["source_id"] == leg["source_id"]:
                    reason = Reason.BAD_INDEX
    if reason != Reason.OK:
        return n, reason
    n = accepted(ev, n, seq, CommandKind.SET_INDEX, 0, underlying, 0, count, 0)
    now = st.counters[Counter.CLOCK_NS]
    oldest = now - st.params[P_INDEX_STALE_NS]
    valid = 0
    for j in range(count):
        leg = cmds[i + 1 + j]
        if leg["source_ts_ns"] >= oldest:
            st.scratch[valid] = leg["price_ticks"]
            valid += 1
    u = st.und_i8[underlying]
    u[Und8.INDEX_TS] = now
    if valid < st.params[P_INDEX_MIN_SOURCES]:
        u[Und8.STATUS] = IndexStatus.STALE
        return index_changed(
            ev, n, seq, Reason.INDEX_STALE, underlying, u[Und8.INDEX], 0, IndexStatus.STALE
        ), Reason.OK
    index, used = _median_and_mean(st, valid)
    if used == 0:  # discard mode with no source inside the band around the median
        u[Und8.STATUS] = IndexStatus.STALE
        return index_changed(
            ev, n, seq, Reason.INDEX_STALE, underlying, u[Und8.INDEX], 0, IndexStatus.STALE
        ), Reason.OK
    u[Und8.INDEX] = index
    u[Und8.STATUS] = IndexStatus.VALID
    u[Und8.SOURCES] = used
    history = st.params[P_INDEX_HISTORY]
    row = underlying * history + u[Und8.HIST_HEAD]
    st.und_hist[row, 0] = now
    st.und_hist[row, 1] = index
    u[Und8.HIST_HEAD] = (u[Und8.HIST_HEAD] + 1) % history
    if u[Und8.HIST_LEN] < history:
        u[Und8.HIST_LEN] += 1
    n = index_changed(ev, n, seq, 0, underlying, index, used, IndexStatus.VALID)
    for instrument in range(st.counters[Counter.INSTRUMENT_HWM]):
        if st.ins_i4[instrument, Ins4.UNDERLYING] != underlying:
            continue
        st.ins_i8[instrument, Ins8.INDEX_NEXT] = index
        _stage(st, instrument)
        if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
            mark = perpetual_mark(st, instrument, index)
            n = mark_changed(
                ev,
                n,
                seq,
                CommandKind.SET_INDEX,
                instrument,
                mark,
                st.ins_i8[instrument, Ins8.BASIS_EMA],
            )
    return n, Reason.OK


@kernel
def risk_array_command(st, ev, n, cmds, i, span, complete):
    """RISK_ARRAY header at ``i`` with its legs; returns ``(events, reject reason or OK)``."""
    c = cmds[i]
    seq = c["seq"]
    instrument = np.int64(c["instrument"])
    count = st.params[P_SCENARIOS]
    value_legs = (count + 4) // 5
    reason = Reason.OK
    legs = span - 1
    if not complete or cmds[i + 1]["kind"] != CommandKind.RISK_GREEKS:
        reason = Reason.BAD_RISK_ARRAY
    elif instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        reason = Reason.UNKNOWN_INSTRUMENT
    elif st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
        if legs != 1 or c["price_ticks"] != 0:
            reason = Reason.BAD_RISK_ARRAY  # a perpetual's mark and P&Ls are the core's
    else:
        price = c["price_ticks"]
        if legs != 1 + value_legs or price <= 0 or price > st.ins_i8[instrument, Ins8.MAX_PRICE]:
            reason = Reason.BAD_RISK_ARRAY
        else:
            for j in range(value_legs):
                if cmds[i + 2 + j]["kind"] != CommandKind.RISK_VALUES:
                    reason = Reason.BAD_RISK_ARRAY
    if reason != Reason.OK:
        return n, reason
    n = accepted(ev, n, seq, CommandKind.SET_RISK_ARRAY, 0, instrument, c["price_ticks"], legs, 0)
    g = cmds[i + 1]
    st.ins_i8[instrument, Ins8.DELTA] = g["delta_nano"]
    st.ins_i8[instrument, Ins8.GAMMA] = g["gamma_nano"]
    st.ins_i8[instrument, Ins8.VEGA] = g["vega_nano"]
    st.ins_i8[instrument, Ins8.THETA] = g["theta_nano"]
    st.ins_i8[instrument, Ins8.RHO] = g["rho_nano"]
    if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
        return n, Reason.OK
    for s in range(count):
        leg = cmds[i + 2 + s // 5]
        k = s % 5
        if k == 0:
            value = leg["v0"]
        elif k == 1:
            value = leg["v1"]
        elif k == 2:
            value = leg["v2"]
        elif k == 3:
            value = leg["v3"]
        else:
            value = leg["v4"]
        st.ins_arr_next[instrument, s] = value
    st.ins_i8[instrument, Ins8.MARK_NEXT] = c["price_ticks"]
    st.ins_i8[instrument, Ins8.MARK_IV] = c["mark_iv_ppm"]
    underlying = st.ins_i4[instrument, Ins4.UNDERLYING]
    st.ins_i8[instrument, Ins8.INDEX_NEXT] = st.und_i8[underlying, Und8.INDEX]
    _stage(st, instrument)
    return mark_changed(
        ev, n, seq, CommandKind.SET_RISK_ARRAY, instrument, c["price_ticks"], c["mark_iv_ppm"]
    ), Reason.OK


@kernel
def flush(st):
    """Apply every staged mark, index and risk array to the accounts holding the instrument
    (one pass over the positions), then make them current. O(positions x S)."""
    if st.counters[Counter.RISK_DIRTY] == 0:
        return
    count = st.params[P_SCENARIOS]
    if st.params[P_RISK_CHECKS] != 0:
        for position in range(st.counters[Counter.POSITION_HWM]):
            if st.pos_i4[position, Pos4.LIVE] != 1:
                continue
            instrument = st.pos_i4[position, Pos4.INSTRUMENT]
            if st.ins_i4[instrument, Ins4.DIRTY] == 0:
                continue
            i8 = st.ins_i8[instrument]
            contribute(st, position, i8[Ins8.MARK], i8[Ins8.INDEX], -1)
            contribute(st, position, i8[Ins8.MARK_NEXT], i8[Ins8.INDEX_NEXT], 1)
            account = st.pos_i4[position, Pos4.ACCOUNT]
            if st.acc_i4[account, Account4.MARGIN_MODE] == MarginMode.PORTFOLIO:
                q = st.pos_i8[position, Pos8.QTY]
                buy = st.pos_i8[position, Pos8.OPEN_BUY]
                sell = st.pos_i8[position, Pos8.OPEN_SELL]
                v = st.acc_scen[account]
                old = st.ins_arr[instrument]
                new = st.ins_arr_next[instrument]
                for s in range(count):
                    d = new[s] - old[s]
                    v[s] += q * d
                    v[count + s] += buy * d
                    v[2 * count + s] -= sell * d
    for instrument in range(st.counters[Counter.INSTRUMENT_HWM]):
        if st.ins_i4[instrument, Ins4.DIRTY] == 0:
            continue
        st.ins_i8[instrument, Ins8.MARK] = st.ins_i8[instrument, Ins8.MARK_NEXT]
        st.ins_i8[instrument, Ins8.INDEX] = st.ins_i8[instrument, Ins8.INDEX_NEXT]
        for s in range(count):
            st.ins_arr[instrument, s] = st.ins_arr_next[instrument, s]
        st.ins_i4[instrument, Ins4.DIRTY] = 0
    st.counters[Counter.RISK_DIRTY] = 0


@kernel
def accumulate(st):
    """Add every live position's margin terms and vectors (at the applied marks) into the
    account sums of ``st``: on zeroed ``acc_risk``/``acc_scen`` this is the from-scratch
    recomputation the incremental sums are checked against."""
    if st.params[P_RISK_CHECKS] == 0:
        return
    for position in range(st.counters[Counter.POSITION_HWM]):
        if st.pos_i4[position, Pos4.LIVE] != 1:
            continue
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        contribute(
            st, position, st.ins_i8[instrument, Ins8.MARK], st.ins_i8[instrument, Ins8.INDEX], 1
        )
        account = st.pos_i4[position, Pos4.ACCOUNT]
        if st.acc_i4[account, Account4.MARGIN_MODE] == MarginMode.PORTFOLIO:
            update_vectors(
                st,
                account,
                st.ins_arr[instrument],
                st.pos_i8[position, Pos8.QTY],
                st.pos_i8[position, Pos8.OPEN_BUY],
                st.pos_i8[position, Pos8.OPEN_SELL],
            )
