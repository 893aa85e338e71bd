"""The risk engine: index prices, marks, risk arrays and margin, in integer arithmetic.

The rules are written down in ``docs/risk.md``; this is their one implementation in the core.

* ``INDEX`` (a header and its source legs) computes an underlying's index from several
  sources: stale sources are dropped, the rest clamped to (or, if configured, discarded
  outside) a band around their median, then averaged with equal weights. The perpetuals of
  the underlying get a new mark (index plus a smoothed, clamped basis) and scenario P&Ls.
* ``RISK_ARRAY`` (a header, a Greeks leg and scenario legs) stages an option's mark, Greeks
  and scenario P&Ls from the pricing service.
* Both only *stage* values (``*_NEXT``, ``ins_arr_next``). The staged values are applied to
  every account holding the instrument by ``flush``, which runs before the next command that
  is not market data: one pass over the positions re-margins all accounts at once, however
  many instruments changed. Where the flush happens depends on the command stream only, never
  on how it was cut into batches.
* Each account keeps its margin inputs incrementally (``acc_risk`` sums and, for portfolio
  margin, the ``acc_scen`` scenario vectors of its positions, its bids as if filled and its
  asks as if filled). Every change of a position's quantity or resting orders is bracketed by
  ``risk_out`` (remove the position's contribution) and ``risk_in`` (add it back, plus the
  linear change of the vectors): O(S) per order, cancel or fill side.

Costs: ``risk_out``/``risk_in`` O(S); ``initial_margin_after`` O(S); INDEX O(sources^2 +
instruments); ``flush`` O(positions x S) once per market-data run.
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
    P_MARKET_BAND_PPM,
    P_MAX_PRICE_TICKS,
    P_MAX_UNDERLYINGS,
    P_OPTION_BAND_PPM,
    P_OPTION_IM_MIN_PPM,
    P_OPTION_IM_PPM,
    P_OPTION_MM_PPM,
    P_PERP_IM_PPM,
    P_PERP_MM_PPM,
    P_PERP_TIER_IM_PPM,
    P_PERP_TIER_MM_PPM,
    P_PERP_TIER_UNITS,
    P_PM_MM_PPM,
    P_PM_SHORT_OPTION_PPM,
    P_RISK_CHECKS,
    P_SCENARIO_BASE,
    P_SCENARIOS,
)
from derivex.core.emit import accepted, index_changed, mark_changed
from derivex.core.fixed import mul_div_ceil, mul_div_floor
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Pos4,
    Pos8,
    Risk8,
    ScenarioBlock,
    Und8,
)
from derivex.core.records import (
    CommandKind,
    IndexStatus,
    InstrumentKind,
    MarginMode,
    OptionType,
    Reason,
    Side,
)

PPM = 1_000_000


@kernel
def risk_on(st):
    return st.params[P_RISK_CHECKS] != 0


# ---------------------------------------------------------------------------------------
# per-position margin terms (standard margin and the portfolio short-option add-on)
# ---------------------------------------------------------------------------------------


@kernel
def _perp_margin(st, notional, base, step):
    """ceil(notional x rate): the rate grows by the ``step`` parameter per full risk-limit
    tier of notional from the ``base`` parameter, capped at 100%."""
    rate = st.params[base] + st.params[step] * (notional // st.params[P_PERP_TIER_UNITS])
    return mul_div_ceil(notional, rate if rate < PPM else PPM, PPM)


@kernel
def _otm_ticks(st, instrument, index):
    strike = st.ins_i8[instrument, Ins8.STRIKE]
    if st.ins_i4[instrument, Ins4.OPTION_TYPE] == OptionType.CALL:
        otm = strike - index
    else:
        otm = index - strike
    return otm if otm > 0 else 0


@kernel
def std_im(st, instrument, x, mark, index):
    """Standard initial margin of a position of ``x`` lots (signed)."""
    if x == 0:
        return 0
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    size = x if x > 0 else -x
    if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
        return _perp_margin(st, size * mark * cv, P_PERP_IM_PPM, P_PERP_TIER_IM_PPM)
    if x > 0:
        return size * mark * cv  # a long option's value is not collateral
    underlying = index * cv
    need = (
        mul_div_ceil(underlying, st.params[P_OPTION_IM_PPM], PPM)
        - _otm_ticks(st, instrument, index) * cv
    )
    floor_ = mul_div_ceil(underlying, st.params[P_OPTION_IM_MIN_PPM], PPM)
    if need < floor_:
        need = floor_
    return size * (need + mark * cv)


@kernel
def std_mm(st, instrument, x, mark, index):
    """Standard maintenance margin of a position of ``x`` lots (signed)."""
    if x == 0:
        return 0
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    size = x if x > 0 else -x
    if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
        return _perp_margin(st, size * mark * cv, P_PERP_MM_PPM, P_PERP_TIER_MM_PPM)
    if x > 0:
        return size * mark * cv
    return size * (mul_div_ceil(index * cv, st.params[P_OPTION_MM_PPM], PPM) + mark * cv)


@kernel
def pm_addon(st, instrument, x, index):
    """Portfolio-margin add-on of ``x`` lots: a minimum per net short option lot."""
    if x >= 0 or st.ins_i4[instrument, Ins4.KIND] != InstrumentKind.OPTION:
        return 0
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    return -x * mul_div_ceil(index * cv, st.params[P_PM_SHORT_OPTION_PPM], PPM)


@kernel
def _std_pair(st, instrument, q, open_buy, open_sell, mark, index):
    a = std_im(st, instrument, q + open_buy, mark, index)
    b = std_im(st, instrument, q - open_sell, mark, index)
    return a if a > b else b


@kernel
def contribute(st, position, mark, index, sign):
    """Add (sign +1) or remove (-1) the position's scalar margin terms at ``mark``/``index``
    to/from its account's sums."""
    account = st.pos_i4[position, Pos4.ACCOUNT]
    instrument = st.pos_i4[position, Pos4.INSTRUMENT]
    q = st.pos_i8[position, Pos8.QTY]
    open_buy = st.pos_i8[position, Pos8.OPEN_BUY]
    open_sell = st.pos_i8[position, Pos8.OPEN_SELL]
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    r = st.acc_risk
    value = q * mark * cv
    if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
        value -= st.pos_i8[position, Pos8.BASIS]
    r[account, Risk8.VALUE] += sign * value
    r[account, Risk8.BID_CASH] += (
        sign * (open_buy * mark - st.pos_i8[position, Pos8.BUY_VALUE]) * cv
    )
    r[account, Risk8.ASK_CASH] += (
        sign * (st.pos_i8[position, Pos8.SELL_VALUE] - open_sell * mark) * cv
    )
    if st.acc_i4[account, Account4.MARGIN_MODE] == MarginMode.PORTFOLIO:
        if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.OPTION:
            r[account, Risk8.ADDON_POS] += sign * pm_addon(st, instrument, q, index)
            r[account, Risk8.ADDON_BID] += sign * pm_addon(st, instrument, q + open_buy, index)
            r[account, Risk8.ADDON_ASK] += sign * pm_addon(st, instrument, q - open_sell, index)
    else:
        r[account, Risk8.STD_IM] += sign * _std_pair(
            st, instrument, q, open_buy, open_sell, mark, index
        )
        r[account, Risk8.STD_MM] += sign * std_mm(st, instrument, q, mark, index)


@kernel
def _vectors(st, account, arr, dq, dbuy, dsell):
    """Scenario vectors of a portfolio-margin account += the lot P&Ls ``arr`` times the
    change of position (``dq``), of resting bids (``dbuy``) and resting asks (``dsell``)."""
    count = st.params[P_SCENARIOS]
    v = st.acc_scen[account]
    if dq != 0:
        for s in range(count):
            v[s] += dq * arr[s]
    if dbuy != 0:
        for s in range(count):
            v[count + s] += dbuy * arr[s]
    if dsell != 0:
        for s in range(count):
            v[2 * count + s] -= dsell * arr[s]


@kernel
def risk_out(st, position):
    """Before a position's quantity, entry value or resting orders change."""
    if st.params[P_RISK_CHECKS] == 0:
        return
    instrument = st.pos_i4[position, Pos4.INSTRUMENT]
    contribute(
        st, position, st.ins_i8[instrument, Ins8.MARK], st.ins_i8[instrument, Ins8.INDEX], -1
    )


@kernel
def risk_in(st, position, dq, dbuy, dsell):
    """After the change: the position's terms back in, and the vectors moved by the change
    of quantity ``dq`` and of resting lots ``dbuy``/``dsell``."""
    if st.params[P_RISK_CHECKS] == 0:
        return
    instrument = st.pos_i4[position, Pos4.INSTRUMENT]
    contribute(st, position, st.ins_i8[instrument, Ins8.MARK], st.ins_i8[instrument, Ins8.INDEX], 1)
    account = st.pos_i4[position, Pos4.ACCOUNT]
    if st.acc_i4[account, Account4.MARGIN_MODE] == MarginMode.PORTFOLIO:
        _vectors(st, account, st.ins_arr[instrument], dq, dbuy, dsell)


# ---------------------------------------------------------------------------------------
# account margin
# ---------------------------------------------------------------------------------------


@kernel
def _worst(st, account, which, instrument, extra):
    """max(0, worst loss over the scenarios) of the positions plus vector ``which`` (0 none,
    V_BID, V_ASK), plus ``extra`` lots' P&L of ``instrument`` (signed, as the vector adds)."""
    count = st.params[P_SCENARIOS]
    v = st.acc_scen[account]
    worst = 0
    if instrument >= 0 and extra != 0:
        arr = st.ins_arr[instrument]
        for s in range(count):
            total = v[s] + extra * arr[s]
            if which > 0:
                total += v[which * count + s]
            if -total > worst:
                worst = -total
    elif which > 0:
        for s in range(count):
            total = v[s] + v[which * count + s]
            if -total > worst:
                worst = -total
    else:
        for s in range(count):
            if -v[s] > worst:
                worst = -v[s]
    return worst


@kernel
def _cash_need(cash):
    return -cash if cash < 0 else 0


@kernel
def margins(st, account):
    """``(equity, initial margin, maintenance margin)`` of an account, in collateral units."""
    r = st.acc_risk
    equity = st.acc_i8[account, Account8.BALANCE] + r[account, Risk8.VALUE]
    bid_need = _cash_need(r[account, Risk8.BID_CASH])
    ask_need = _cash_need(r[account, Risk8.ASK_CASH])
    if st.acc_i4[account, Account4.MARGIN_MODE] == MarginMode.PORTFOLIO:
        im_bid = (
            _worst(st, account, ScenarioBlock.BID, -1, 0) + r[account, Risk8.ADDON_BID] + bid_need
        )
        im_ask = (
            _worst(st, account, ScenarioBlock.ASK, -1, 0) + r[account, Risk8.ADDON_ASK] + ask_need
        )
        im = im_bid if im_bid > im_ask else im_ask
        held = _worst(st, account, 0, -1, 0) + r[account, Risk8.ADDON_POS]
        mm = mul_div_ceil(held, st.params[P_PM_MM_PPM], PPM)
    else:
        im = r[account, Risk8.STD_IM] + (bid_need if bid_need > ask_need else ask_need)
        mm = r[account, Risk8.STD_MM]
    return equity, im, mm


@kernel
def initial_margin_after(st, account, instrument, position, side, dq, dvalue):
    """Initial margin if ``dq`` more lots worth ``dvalue`` ticks x lots rested on ``side`` of
    ``instrument`` (``position`` may be NIL: nothing held yet). Nothing is changed."""
    r = st.acc_risk
    mark = st.ins_i8[instrument, Ins8.MARK]
    index = st.ins_i8[instrument, Ins8.INDEX]
    cv = st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    q = 0
    open_buy = 0
    open_sell = 0
    if position != NIL:
        q = st.pos_i8[position, Pos8.QTY]
        open_buy = st.pos_i8[position, Pos8.OPEN_BUY]
        open_sell = st.pos_i8[position, Pos8.OPEN_SELL]
    bid_cash = r[account, Risk8.BID_CASH]
    ask_cash = r[account, Risk8.ASK_CASH]
    if side == Side.BUY:
        bid_cash += (dq * mark - dvalue) * cv
    else:
        ask_cash += (dvalue - dq * mark) * cv
    bid_need = _cash_need(bid_cash)
    ask_need = _cash_need(ask_cash)
    if st.acc_i4[account, Account4.MARGIN_MODE] == MarginMode.PORTFOLIO:
        addon_bid = r[account, Risk8.ADDON_BID]
        addon_ask = r[account, Risk8.ADDON_ASK]
        if side == Side.BUY:
            addon_bid += pm_addon(st, instrument, q + open_buy + dq, index) - pm_addon(
                st, instrument, q + open_buy, index
            )
            im_bid = _worst(st, account, ScenarioBlock.BID, instrument, dq) + addon_bid + bid_need
            im_ask = _worst(st, account, ScenarioBlock.ASK, -1, 0) + addon_ask + ask_need
        else:
            addon_ask += pm_addon(st, instrument, q - open_sell - dq, index) - pm_addon(
                st, instrument, q - open_sell, index
            )
            im_bid = _worst(st, account, ScenarioBlock.BID, -1, 0) + addon_bid + bid_need
            im_ask = _worst(st, account, ScenarioBlock.ASK, instrument, -dq) + addon_ask + ask_need
        return im_bid if im_bid > im_ask else im_ask
    old = _std_pair(st, instrument, q, open_buy, open_sell, mark, index)
    if side == Side.BUY:
        new = _std_pair(st, instrument, q, open_buy + dq, open_sell, mark, index)
    else:
        new = _std_pair(st, instrument, q, open_buy, open_sell + dq, mark, index)
    return r[account, Risk8.STD_IM] - old + new + (bid_need if bid_need > ask_need else ask_need)


@kernel
def margin_reason(st, account, instrument, position, side, dq, dvalue):
    """INSUFFICIENT_MARGIN if resting ``dq`` more lots worth ``dvalue`` would leave initial
    margin above equity and raise it; OK otherwise (risk-reducing orders always pass)."""
    if st.params[P_RISK_CHECKS] == 0:
        return Reason.OK
    equity, im, _ = margins(st, account)
    after = initial_margin_after(st, account, instrument, position, side, dq, dvalue)
    if after > equity and after > im:
        return Reason.INSUFFICIENT_MARGIN
    return Reason.OK


@kernel
def market_reason(st, instrument, reduce_only):
    """NO_MARK / INDEX_STALE gate for orders on ``instrument`` (risk checks on)."""
    if st.params[P_RISK_CHECKS] == 0:
        return Reason.OK
    if st.ins_i8[instrument, Ins8.MARK] <= 0:
        return Reason.NO_MARK
    underlying = st.ins_i4[instrument, Ins4.UNDERLYING]
    if st.und_i8[underlying, Und8.STATUS] != IndexStatus.VALID and not reduce_only:
        return Reason.INDEX_STALE
    return Reason.OK


@kernel
def price_band_ppm(st, instrument):
    """The instrument's price band (SET_INSTRUMENT), else the configured one of its kind
    (``option_band_ppm`` for options, ``market_band_ppm`` otherwise)."""
    band = st.ins_i8[instrument, Ins8.PRICE_BAND]
    if band > 0:
        return band
    if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.OPTION:
        return st.params[P_OPTION_BAND_PPM]
    return st.params[P_MARKET_BAND_PPM]


@kernel
def price_band(st, instrument):
    """(lowest, highest) price of the band around the applied mark m, on the tick grid:
    ceil((m - floor(m * band / 1e6)) / tick) * tick, at least one tick, and
    floor((m + floor(m * band / 1e6)) / tick) * tick, at most the max price. O(1)."""
    mark = st.ins_i8[instrument, Ins8.MARK]
    tick = st.ins_i8[instrument, Ins8.TICK]
    width = mul_div_floor(mark, price_band_ppm(st, instrument), PPM)
    low = -((-(mark - width)) // tick) * tick
    if low < tick:
        low = tick
    high = (mark + width) // tick * tick
    top = st.ins_i8[instrument, Ins8.MAX_PRICE] // tick * tick
    if high > top:
        high = top
    return low, high


@kernel
def market_band_price(st, instrument, side):
    """Limit a market order (or an engine liquidation order) trades to under risk checks:
    the band's edge on its side, i.e. an unlimited price clamped by ``banded_price``."""
    low, high = price_band(st, instrument)
    return high if side == Side.BUY else low


@kernel
def banded_price(st, instrument, side, price):
    """One rule for every order price under risk checks (docs/risk.md, price band): a buy
    above the band trades at most at its top and a sell below it at least at its bottom
    (clamped, as Deribit clamps to max_price / min_price); a buy below the band or a sell
    above it is refused. Returns (price, reason): reason PRICE_BELOW_BAND /
    PRICE_ABOVE_BAND, else OK. Where a band narrower than a tick holds no grid price
    (low > high), buys keep [high, high] and sells [low, low]. O(1)."""
    low, high = price_band(st, instrument)
    if side == Side.BUY:
        if price > high:
            return high, Reason.OK
        if price < low and price < high:
            return price, Reason.PRICE_BELOW_BAND
        return price, Reason.OK
    if price < low:
        return low, Reason.OK
    if price > high and price > low:
        return price, Reason.PRICE_ABOVE_BAND
    return price, Reason.OK


@kernel
def band_reason(st, instrument, price):
    """PRICE_BELOW_BAND / PRICE_ABOVE_BAND for a price that must lie in the band as given
    (mass-quote sides and repriced post-only orders are never clamped), else OK. O(1)."""
    low, high = price_band(st, instrument)
    if price < low and price < high:
        return Reason.PRICE_BELOW_BAND
    if price > high and price > low:
        return Reason.PRICE_ABOVE_BAND
    return Reason.OK


@kernel
def exposed_to_stale_index(st, account):
    """Whether the account holds a position or order on an underlying without a valid index."""
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        instrument = st.pos_i4[position, Pos4.INSTRUMENT]
        if st.und_i8[st.ins_i4[instrument, Ins4.UNDERLYING], Und8.STATUS] != IndexStatus.VALID:
            return True
        position = st.pos_i4[position, Pos4.NEXT]
    return False


# ---------------------------------------------------------------------------------------
# market data: index, perpetual marks, option risk arrays, and the flush
# ---------------------------------------------------------------------------------------


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
    n = accepted(ev, n, seq, CommandKind.INDEX, 0, underlying, 0, count, 0)
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
                CommandKind.INDEX,
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
    n = accepted(ev, n, seq, CommandKind.RISK_ARRAY, 0, instrument, c["price_ticks"], legs, 0)
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
        ev, n, seq, CommandKind.RISK_ARRAY, instrument, c["price_ticks"], c["mark_iv_ppm"]
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
            _vectors(
                st,
                account,
                st.ins_arr[instrument],
                st.pos_i8[position, Pos8.QTY],
                st.pos_i8[position, Pos8.OPEN_BUY],
                st.pos_i8[position, Pos8.OPEN_SELL],
            )
