"""Margin: the account's margin inputs, kept incrementally, and the margin checks, in
integer arithmetic. The rules are written down in ``docs/risk.md``; this is their one
implementation in the core (market data, which sets the marks these use, is
``market_data``).

* Each account keeps its margin inputs incrementally (``acc_risk`` sums and, for portfolio
  margin, the ``acc_scen`` scenario vectors of its positions, its bids as if filled and its
  asks as if filled). Every change of a position's quantity or resting orders is bracketed by
  ``risk_out`` (remove the position's contribution) and ``risk_in`` (add it back, plus the
  linear change of the vectors): O(S) per order, cancel or fill side.
* ``margins`` and ``initial_margin_after`` read them: standard margin per position, or the
  worst scenario loss plus the short-option add-on (portfolio margin); the price band keeps
  orders near the mark.

Costs: ``risk_out``/``risk_in`` O(S); ``initial_margin_after`` O(S); the rest O(1).
"""

from __future__ import annotations

from derivex.core.config import (
    P_MARKET_BAND_PPM,
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
    P_SCENARIOS,
)
from derivex.core.fixed import mul_div_ceil, mul_div_floor
from derivex.core.jit import kernel
from derivex.core.layout import (
    NIL,
    Account4,
    Account8,
    Ins4,
    Ins8,
    Pos4,
    Pos8,
    Risk8,
    ScenarioBlock,
    Und8,
)
from derivex.core.records import IndexStatus, InstrumentKind, MarginMode, OptionType, Reason, Side

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
def update_vectors(st, account, arr, dq, dbuy, dsell):
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
        update_vectors(st, account, st.ins_arr[instrument], dq, dbuy, dsell)


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
