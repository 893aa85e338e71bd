"""Risk (docs/risk.md): the price band, standard and portfolio margin, the margin check, INDEX
and RISK_ARRAY. Mirrors core/risk.py."""

from __future__ import annotations

from derivex.core.records import (
    CommandKind,
    EventKind,
    IndexStatus,
    InstrumentKind,
    MarginMode,
    OptionType,
    Reason,
)
from tests.reference.entities import (
    BUY,
    NS_PER_MS,
    PPM,
    SELL,
    Instrument,
    Position,
    Reject,
    ceil_div,
)


class RiskModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _index_status(self, underlying: int) -> int:
        row = self.underlyings.get(underlying)
        return row[2] if row else int(IndexStatus.NONE)

    def _market_check(self, inst: Instrument, reduce_only: bool) -> None:
        """[R2] NO_MARK, then INDEX_STALE (reduce-only orders pass a stale index)."""
        if not self.cfg.risk_checks:
            return
        if inst.mark <= 0:
            raise Reject(Reason.NO_MARK)
        if self._index_status(inst.underlying) != IndexStatus.VALID and not reduce_only:
            raise Reject(Reason.INDEX_STALE)

    def band(self, inst: Instrument) -> tuple[int, int]:
        """[R5] (low, high): mark -/+ floor(mark x band / 1e6) rounded inwards to the tick
        grid, at least one tick and at most the max price on the grid."""
        default = (
            self.cfg.option_band_ppm
            if inst.kind == InstrumentKind.OPTION
            else self.cfg.market_band_ppm
        )
        width = inst.mark * (inst.price_band or default) // PPM
        low = max(ceil_div(inst.mark - width, inst.tick) * inst.tick, inst.tick)
        high = min(
            (inst.mark + width) // inst.tick * inst.tick, inst.max_price // inst.tick * inst.tick
        )
        return low, high

    def _band_price(self, inst: Instrument, side: int) -> int:
        """[R3] market orders trade no further than the band's edge on their side."""
        low, high = self.band(inst)
        return high if side == BUY else low

    def _banded_price(self, inst: Instrument, side: int, price: int) -> int:
        """[R5] a buy above the band is clamped to its top, a sell below to its bottom; a
        buy below / a sell above is refused (a band without a grid price: low > high)."""
        low, high = self.band(inst)
        if side == BUY:
            if price > high:
                return high
            if price < min(low, high):
                raise Reject(Reason.PRICE_BELOW_BAND)
            return price
        if price < low:
            return low
        if price > max(low, high):
            raise Reject(Reason.PRICE_ABOVE_BAND)
        return price

    def _check_band(self, inst: Instrument, price: int) -> None:
        """[R5] refuse a price outside the band as given (quotes, repriced post-only)."""
        low, high = self.band(inst)
        if price < min(low, high):
            raise Reject(Reason.PRICE_BELOW_BAND)
        if price > max(low, high):
            raise Reject(Reason.PRICE_ABOVE_BAND)

    def _open_values(self, acct_id: int, inst_id: int) -> tuple[int, int]:
        """Sum of price x qty of the resting bids and asks of one position."""
        values = [0, 0]
        for order in self.orders.values():
            if order.account == acct_id and order.instrument == inst_id:
                values[order.side] += order.price * order.qty
        return values[0], values[1]

    def _perp_rate(self, notional: int, base: int, step: int) -> int:
        return min(base + step * (notional // self.cfg.perp_tier_units), PPM)

    def std_im(self, inst: Instrument, x: int, mark: int, index: int) -> int:
        cfg = self.cfg
        if x == 0:
            return 0
        if inst.kind == InstrumentKind.PERPETUAL:
            notional = abs(x) * mark * inst.cv
            return ceil_div(
                notional * self._perp_rate(notional, cfg.perp_im_ppm, cfg.perp_tier_im_ppm), PPM
            )
        if x > 0:
            return x * mark * inst.cv
        underlying = index * inst.cv
        otm = max(
            0,
            (inst.strike_ticks - index)
            if inst.option_type == OptionType.CALL
            else (index - inst.strike_ticks),
        )
        need = max(
            ceil_div(underlying * cfg.option_im_ppm, PPM) - otm * inst.cv,
            ceil_div(underlying * cfg.option_im_min_ppm, PPM),
        )
        return -x * (need + mark * inst.cv)

    def std_mm(self, inst: Instrument, x: int, mark: int, index: int) -> int:
        cfg = self.cfg
        if x == 0:
            return 0
        if inst.kind == InstrumentKind.PERPETUAL:
            notional = abs(x) * mark * inst.cv
            return ceil_div(
                notional * self._perp_rate(notional, cfg.perp_mm_ppm, cfg.perp_tier_mm_ppm), PPM
            )
        if x > 0:
            return x * mark * inst.cv
        return -x * (ceil_div(index * inst.cv * cfg.option_mm_ppm, PPM) + mark * inst.cv)

    def pm_addon(self, inst: Instrument, x: int, index: int) -> int:
        if x >= 0 or inst.kind != InstrumentKind.OPTION:
            return 0
        return -x * ceil_div(index * inst.cv * self.cfg.pm_short_option_ppm, PPM)

    def terms(self, acct_id: int, extra: tuple[int, int, int, int] | None = None) -> dict:
        """The account's margin inputs computed from scratch over its positions (applied
        marks), optionally with ``extra = (instrument, side, lots, value)`` more resting."""
        S = self.S
        sums = [0] * 8  # value, bid cash, ask cash, std IM, std MM, add-on pos/bid/ask
        vectors = [0] * (3 * S)
        if not self.cfg.risk_checks or acct_id not in self.accounts:
            return {"sums": sums, "vectors": vectors}
        portfolio = self.accounts[acct_id].margin_mode == MarginMode.PORTFOLIO
        held = {i for a, i in self.positions if a == acct_id}
        if extra is not None:
            held.add(extra[0])
        for inst_id in sorted(held):
            inst = self.instruments[inst_id]
            pos = self.positions.get((acct_id, inst_id)) or Position()
            q, ob, os_ = pos.qty, pos.open_buy, pos.open_sell
            bv, sv = self._open_values(acct_id, inst_id)
            if extra is not None and extra[0] == inst_id:
                if extra[1] == BUY:
                    ob, bv = ob + extra[2], bv + extra[3]
                else:
                    os_, sv = os_ + extra[2], sv + extra[3]
            m, x, cv = inst.mark, inst.index, inst.cv
            value = q * m * cv
            if inst.kind == InstrumentKind.PERPETUAL:
                value -= pos.basis
            sums[0] += value
            sums[1] += (ob * m - bv) * cv
            sums[2] += (sv - os_ * m) * cv
            if portfolio:
                sums[5] += self.pm_addon(inst, q, x)
                sums[6] += self.pm_addon(inst, q + ob, x)
                sums[7] += self.pm_addon(inst, q - os_, x)
                for s in range(S):
                    vectors[s] += q * inst.arr[s]
                    vectors[S + s] += ob * inst.arr[s]
                    vectors[2 * S + s] -= os_ * inst.arr[s]
            else:
                sums[3] += max(self.std_im(inst, q + ob, m, x), self.std_im(inst, q - os_, m, x))
                sums[4] += self.std_mm(inst, q, m, x)
        return {"sums": sums, "vectors": vectors}

    def margins(self, acct_id: int, extra=None) -> tuple[int, int, int]:
        """(equity, initial margin, maintenance margin)."""
        t = self.terms(acct_id, extra)
        sums, v, S = t["sums"], t["vectors"], self.S
        equity = self.accounts[acct_id].balance + sums[0]
        bid_need, ask_need = max(0, -sums[1]), max(0, -sums[2])
        if self.accounts[acct_id].margin_mode == MarginMode.PORTFOLIO:

            def worst(offset: int | None) -> int:
                return max(
                    [0] + [-(v[s] + (v[offset + s] if offset is not None else 0)) for s in range(S)]
                )

            im = max(worst(S) + sums[6] + bid_need, worst(2 * S) + sums[7] + ask_need)
            mm = ceil_div((worst(None) + sums[5]) * self.cfg.pm_mm_ppm, PPM)
        else:
            im = sums[3] + max(bid_need, ask_need)
            mm = sums[4]
        return equity, im, mm

    def _margin_check(self, acct_id: int, inst_id: int, side: int, lots: int, value: int) -> None:
        """[R4] reject if initial margin after resting ``lots`` more would exceed equity and
        be higher than now."""
        if not self.cfg.risk_checks:
            return
        equity, im, _ = self.margins(acct_id)
        _, after, _ = self.margins(acct_id, (inst_id, side, lots, value))
        if after > equity and after > im:
            raise Reject(Reason.INSUFFICIENT_MARGIN)

    def _scenario_pnl(self, value: int, move: int, weight: int) -> int:
        pnl = (value * move) // PPM  # floor for either sign
        return (pnl * weight) // PPM

    def _index(self, cmd, legs: list, complete: bool) -> None:
        underlying = int(cmd["index_underlying"])
        if not complete:
            raise Reject(Reason.BAD_INDEX)
        if not 1 <= underlying < self.cfg.max_underlyings:
            raise Reject(Reason.UNKNOWN_UNDERLYING)
        ids = [int(leg["source_id"]) for leg in legs]
        if len(set(ids)) != len(ids) or any(
            not 0 < int(leg["price_ticks"]) <= self.cfg.max_price_ticks for leg in legs
        ):
            raise Reject(Reason.BAD_INDEX)
        self._emit(EventKind.ACCEPTED, instrument=underlying, qty_lots=len(legs))
        oldest = self.clock - self.cfg.index_stale_ms * NS_PER_MS
        prices = sorted(
            int(leg["price_ticks"]) for leg in legs if int(leg["source_ts_ns"]) >= oldest
        )
        row = self.underlyings.setdefault(underlying, [0, 0, 0, 0, 0, []])
        row[1] = self.clock
        used: list[int] = []
        if len(prices) >= self.cfg.index_min_sources:
            k = len(prices)
            median = prices[k // 2] if k % 2 else (prices[k // 2 - 1] + prices[k // 2]) // 2
            band = median * self.cfg.index_outlier_ppm // PPM
            for p in prices:
                if median - band <= p <= median + band:
                    used.append(p)
                elif not self.cfg.index_outlier_discard:
                    used.append(min(max(p, median - band), median + band))
        if not used:
            row[2] = int(IndexStatus.STALE)
            self._emit(
                EventKind.INDEX,
                reason=int(Reason.INDEX_STALE),
                instrument=underlying,
                price_ticks=row[0],
                status=int(IndexStatus.STALE),
            )
            return
        index = sum(used) // len(used)
        row[0], row[2], row[3] = index, int(IndexStatus.VALID), len(used)
        row[4] += 1
        row[5].append((self.clock, index))
        del row[5][: -self.cfg.index_history]
        self._emit(
            EventKind.INDEX,
            instrument=underlying,
            price_ticks=index,
            qty_lots=len(used),
            status=int(IndexStatus.VALID),
        )
        for inst_id, inst in enumerate(self.instruments):
            if inst.underlying != underlying:
                continue
            inst.index_next = index
            inst.dirty = True
            if inst.kind == InstrumentKind.PERPETUAL:
                if inst.bids and inst.asks:
                    basis = (inst.best(BUY) + inst.best(SELL)) // 2 - index
                    limit = index * self.cfg.mark_basis_clamp_ppm // PPM
                    basis = min(max(basis, -limit), limit)
                    inst.basis_ema += (basis - inst.basis_ema) * self.cfg.mark_ema_ppm // PPM
                inst.mark_next = max(index + inst.basis_ema, 1)
                value = inst.mark_next * inst.cv
                inst.arr_next = [
                    self._scenario_pnl(value, move, weight)
                    for move, _vol, weight in self.cfg.scenarios
                ]
                self._emit(
                    EventKind.MARK, instrument=inst_id, price_ticks=inst.mark_next, a=inst.basis_ema
                )

    def _risk_array(self, cmd, legs: list, complete: bool) -> None:
        inst_id = int(cmd["instrument"])
        price = int(cmd["price_ticks"])
        value_legs = (self.S + 4) // 5
        if not complete or int(legs[0]["kind"]) != CommandKind.RISK_GREEKS:
            raise Reject(Reason.BAD_RISK_ARRAY)
        inst = self._instrument(inst_id)
        if inst.kind == InstrumentKind.PERPETUAL:
            if len(legs) != 1 or price != 0:
                raise Reject(Reason.BAD_RISK_ARRAY)
        elif (
            len(legs) != 1 + value_legs
            or not 0 < price <= inst.max_price
            or any(int(leg["kind"]) != CommandKind.RISK_VALUES for leg in legs[1:])
        ):
            raise Reject(Reason.BAD_RISK_ARRAY)
        self._emit(EventKind.ACCEPTED, instrument=inst_id, price_ticks=price, qty_lots=len(legs))
        g = legs[0]
        inst.greeks = [
            int(g[name])
            for name in ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano")
        ]
        if inst.kind == InstrumentKind.PERPETUAL:
            return
        values = [int(leg[f"v{k}"]) for leg in legs[1:] for k in range(5)]
        inst.arr_next = values[: self.S]
        inst.mark_next = price
        inst.mark_iv = int(cmd["mark_iv_ppm"])
        row = self.underlyings.get(inst.underlying)
        inst.index_next = row[0] if row else 0
        inst.dirty = True
        self._emit(EventKind.MARK, instrument=inst_id, price_ticks=price, a=inst.mark_iv)

    def _flush(self) -> None:
        """[R1] staged marks, indices and scenario P&Ls become the applied ones before any
        command other than INDEX / RISK_ARRAY."""
        for inst in self.instruments:
            if inst.dirty:
                inst.mark, inst.index, inst.arr = (
                    inst.mark_next,
                    inst.index_next,
                    list(inst.arr_next),
                )
                inst.dirty = False
