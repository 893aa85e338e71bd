"""TIME (docs/liquidation.md): the driver, engine IOC orders, option expiry and funding.
Mirrors core/lifecycle.py."""

from __future__ import annotations

from derivex.core.records import (
    EventKind,
    IndexStatus,
    InstrumentKind,
    InstrumentStatus,
    LiquidationStage,
    OptionType,
    Reason,
    SystemAccount,
)
from tests.reference.entities import (
    BUY,
    NS_PER_MS,
    PPM,
    RO,
    SELL,
    Instrument,
    Order,
    ceil_div,
)


class LifecycleModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _time(self, cmd) -> None:
        """[L1] ACCEPTED, then expiry, funding and liquidation, in that order."""
        self._emit(EventKind.ACCEPTED)
        if not self.cfg.risk_checks:
            return
        self._expire()
        self._fund()
        self._liquidate()
        self._unwind_fund()

    def _engine_ioc(self, acct_id: int, inst_id: int, q: int, price: int) -> int:
        """One liquidation step of a position of ``q`` lots through the book, no worse than
        ``price``, without gas; returns the lots filled."""
        inst = self.instruments[inst_id]
        lots = ceil_div(abs(q) * self.cfg.liquidation_step_ppm, PPM)
        lots = min(ceil_div(lots, inst.min_trade) * inst.min_trade, abs(q))
        order = Order(
            id=self._alloc_order_id(),
            account=acct_id,
            instrument=inst_id,
            side=SELL if q > 0 else BUY,
            price=price,
            qty=lots,
            flags=RO,
            label=0,
        )
        acct = self.accounts[acct_id]
        gas, acct.gas = acct.gas, 1 << 62
        filled, _ = self._match(order, price)
        acct.gas = gas
        self._free_order_id(order.id)
        return filled

    def _unwind_fund(self) -> None:
        """[L2] the fund reduces each taken-over position by one step through the book,
        within the market band."""
        fund_id = int(SystemAccount.INSURANCE_FUND)
        for inst_id, inst in enumerate(self.instruments):
            pos = self.positions.get((fund_id, inst_id))
            if pos is None or pos.qty == 0:
                continue
            if (
                inst.status != InstrumentStatus.ACTIVE
                or self._index_status(inst.underlying) != IndexStatus.VALID
                or inst.mark <= 0
                or len(self.orders) >= self.cfg.max_orders
            ):
                continue
            price = self._band_price(inst, SELL if pos.qty > 0 else BUY)
            filled = self._engine_ioc(fund_id, inst_id, pos.qty, price)
            if filled > 0:
                self._stage(fund_id, LiquidationStage.BOOK, inst_id, price, filled)

    def _twap(self, underlying: int, start: int, end: int) -> int:
        row = self.underlyings.get(underlying)
        rows = row[5][-self.cfg.index_history :] if row else []
        total = span = level = 0
        at = start
        have = False
        for ts, value in rows:
            if ts > end:
                break
            if ts <= start:
                level, have = value, True
                continue
            if have:
                duration = (ts - at) // NS_PER_MS
                total += level * duration
                span += duration
            at, level, have = ts, value, True
        if not have:
            return 0
        duration = (end - at) // NS_PER_MS
        total += level * duration
        span += duration
        return level if span <= 0 else total // span

    def _expire(self) -> None:
        for inst_id, inst in enumerate(self.instruments):
            if (
                inst.kind != InstrumentKind.OPTION
                or inst.status == InstrumentStatus.SETTLED
                or inst.expiry_ts_ns > self.clock
            ):
                continue
            start = inst.expiry_ts_ns - self.cfg.expiry_twap_ms * NS_PER_MS
            price = self._twap(inst.underlying, start, inst.expiry_ts_ns)
            if price <= 0:
                continue
            for side in (BUY, SELL):
                while inst.side_book(side):
                    best = inst.levels_in_priority(side)[0]
                    self._cancel_resting(inst.side_book(side)[best][0], Reason.CANCEL_EXPIRED)
            payoff = (
                price - inst.strike_ticks
                if inst.option_type == OptionType.CALL
                else inst.strike_ticks - price
            )
            payoff = max(payoff, 0) * inst.cv
            for acct_id in sorted(self.accounts):
                pos = self.positions.get((acct_id, inst_id))
                if pos is None or pos.qty == 0:
                    continue
                cash = pos.qty * payoff
                self.accounts[acct_id].balance += cash
                q, pos.qty, pos.basis = pos.qty, 0, 0
                self._emit(
                    EventKind.SETTLEMENT,
                    account=acct_id,
                    instrument=inst_id,
                    price_ticks=price,
                    qty_lots=q,
                    a=cash,
                    b=self.accounts[acct_id].balance,
                )
            inst.status = int(InstrumentStatus.SETTLED)
            inst.settlement = price
            self._emit(
                EventKind.INSTRUMENT_STATUS,
                instrument=inst_id,
                price_ticks=price,
                status=int(InstrumentStatus.SETTLED),
            )

    @staticmethod
    def _premium_ppb(mark: int, index: int) -> int:
        diff = mark - index
        while index >= (1 << 31):
            index >>= 1
            diff >>= 1
        if index <= 0:
            return 0
        return (diff * 1_000_000_000) // index

    def _fund(self) -> None:
        cfg = self.cfg
        period = cfg.funding_period_ms
        for inst_id, inst in enumerate(self.instruments):
            if inst.kind != InstrumentKind.PERPETUAL:
                continue
            row = self.underlyings.get(inst.underlying)
            index = row[0] if row else 0
            valid = bool(row) and row[2] == IndexStatus.VALID
            if inst.funding_ts == 0 or not valid or inst.mark <= 0:
                inst.funding_ts = self.clock
                continue
            elapsed = (self.clock - inst.funding_ts) // NS_PER_MS
            if elapsed <= 0:
                continue
            premium = self._premium_ppb(inst.mark, index)
            if cfg.funding_mode == 0:
                band = cfg.funding_dead_band_ppb
                rate = (
                    premium - band if premium > band else (premium + band if premium < -band else 0)
                )
                cap = inst.funding_cap or cfg.funding_cap_ppb
                rate = max(-cap, min(cap, rate))
                elapsed = min(elapsed, period)
                inst.funding_ts = self.clock
                inst.funding_rate = rate
                if rate:
                    self._pay_funding(inst_id, inst, rate, elapsed, index)
                continue
            done = inst.premium_ms
            step = elapsed if done + elapsed <= period else period - done
            inst.premium_acc += premium * step
            inst.premium_ms = done + step
            inst.funding_ts = self.clock
            if done + elapsed >= period:
                average = inst.premium_acc // period
                clamp = cfg.funding_clamp_ppb
                rate = average + max(-clamp, min(clamp, cfg.funding_interest_ppb - average))
                cap = inst.funding_cap or cfg.funding_cap_ppb
                rate = max(-cap, min(cap, rate))
                inst.premium_acc = inst.premium_ms = 0
                self._pay_funding(inst_id, inst, rate, period, index)

    def _pay_funding(
        self, inst_id: int, inst: Instrument, rate: int, elapsed: int, index: int
    ) -> None:
        period = self.cfg.funding_period_ms
        paid = received = 0
        for acct_id in sorted(self.accounts):
            if acct_id < len(SystemAccount):
                continue
            pos = self.positions.get((acct_id, inst_id))
            if pos is None or pos.qty == 0:
                continue
            value = abs(pos.qty) * index * inst.cv
            if (pos.qty > 0) == (rate > 0):
                amount = -ceil_div(ceil_div(value * abs(rate), 10**9) * elapsed, period)
                paid -= amount
            else:
                amount = (value * abs(rate) // 10**9) * elapsed // period
                received += amount
            self.accounts[acct_id].balance += amount
            self._emit(
                EventKind.FUNDING,
                account=acct_id,
                instrument=inst_id,
                price_ticks=rate,
                qty_lots=pos.qty,
                a=amount,
                b=self.accounts[acct_id].balance,
            )
        fund = self.accounts[SystemAccount.INSURANCE_FUND]
        fund.balance += paid - received
        inst.funding_rate = rate
        self._emit(
            EventKind.FUNDING,
            account=int(SystemAccount.INSURANCE_FUND),
            instrument=inst_id,
            price_ticks=rate,
            a=paid - received,
            b=fund.balance,
        )
