"""Liquidation (docs/liquidation.md): stages, book reduction, insurance-fund takeover, auto-
deleveraging and socialised losses. Mirrors the liquidation part of core/lifecycle.py."""

from __future__ import annotations

from derivex.core.records import (
    AccountState,
    EventKind,
    IndexStatus,
    InstrumentKind,
    LiquidationStage,
    Reason,
    SystemAccount,
)
from tests.reference.entities import (
    PPM,
    Instrument,
    ceil_div,
)


class LiquidationModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _stage(
        self,
        acct_id: int,
        stage: LiquidationStage,
        instrument: int = 0,
        price: int = 0,
        qty: int = 0,
        money: int = 0,
    ) -> None:
        self._emit(
            EventKind.LIQUIDATION,
            account=acct_id,
            instrument=instrument,
            price_ticks=price,
            qty_lots=qty,
            a=int(stage),
            b=money,
        )

    def _set_state(self, acct_id: int, state: AccountState) -> None:
        self.accounts[acct_id].state = int(state)
        self._emit(EventKind.ACCOUNT_STATE, account=acct_id, status=int(state))

    def _first_position(self, acct_id: int) -> int | None:
        held = [i for (a, i), p in self.positions.items() if a == acct_id and p.qty != 0]
        if not held:
            return None
        return min(held, key=lambda i: (self.instruments[i].kind != InstrumentKind.PERPETUAL, i))

    def _bankruptcy_price(self, inst: Instrument, q: int, equity: int) -> int:
        size, tick = abs(q), inst.tick
        top = inst.max_price // tick * tick
        if q > 0:
            price = ceil_div(size * inst.mark * inst.cv - equity, size * inst.cv)
            price = ceil_div(price, tick) * tick
        else:
            price = (size * inst.mark * inst.cv + equity) // (size * inst.cv) // tick * tick
        return min(max(price, tick), top)

    def _stale_exposed(self, acct_id: int) -> bool:
        return any(
            self._index_status(self.instruments[i].underlying) != IndexStatus.VALID
            for (a, i), p in self.positions.items()
            if a == acct_id and (p.qty != 0 or p.resting > 0)
        )

    def _liquidate(self) -> None:
        for acct_id in sorted(self.accounts):
            if acct_id < len(SystemAccount):
                continue
            acct = self.accounts[acct_id]
            if acct.state != AccountState.IN_LIQUIDATION:
                live = any(
                    a == acct_id and (p.qty != 0 or p.resting > 0)
                    for (a, _), p in self.positions.items()
                )
                if not live and acct.balance >= 0:
                    continue
                equity, _, mm = self.margins(acct_id)
                if equity >= mm:
                    continue
            if self._stale_exposed(acct_id):
                continue
            self._liquidation_round(acct_id)

    def _liquidation_round(self, acct_id: int) -> None:
        acct = self.accounts[acct_id]
        equity, _, mm = self.margins(acct_id)
        if acct.state != AccountState.IN_LIQUIDATION:
            self._stage(acct_id, LiquidationStage.STARTED, qty=mm, money=equity)
            self._set_state(acct_id, AccountState.IN_LIQUIDATION)
            victims = sorted((self.orders[oid] for oid in acct.orders), key=lambda o: o.instrument)
            for order in victims:
                self._cancel_resting(order, Reason.CANCEL_LIQUIDATION)
            self._stage(acct_id, LiquidationStage.ORDERS_CANCELLED, qty=len(victims))
            equity, _, mm = self.margins(acct_id)
        inst_id = self._first_position(acct_id)
        if (inst_id is None and equity >= 0) or (inst_id is not None and equity >= mm):
            self._stage(acct_id, LiquidationStage.ENDED, qty=mm, money=equity)
            self._set_state(acct_id, AccountState.NORMAL)
            return
        if inst_id is not None and equity > 0 and len(self.orders) < self.cfg.max_orders:
            inst = self.instruments[inst_id]
            q = self.positions[(acct_id, inst_id)].qty
            price = self._bankruptcy_price(inst, q, equity)
            filled = self._engine_ioc(acct_id, inst_id, q, price)
            if filled > 0:
                fee = ceil_div(filled * inst.mark * inst.cv * self.cfg.liquidation_fee_ppm, PPM)
                left = self.margins(acct_id)[0]
                if fee > left:
                    fee = max(left, 0)
                acct.balance -= fee
                self.accounts[SystemAccount.INSURANCE_FUND].balance += fee
                self._stage(acct_id, LiquidationStage.BOOK, inst_id, price, filled, fee)
                equity, _, mm = self.margins(acct_id)
                if equity >= mm:
                    self._stage(acct_id, LiquidationStage.ENDED, qty=mm, money=equity)
                    self._set_state(acct_id, AccountState.NORMAL)
                return
        fund_id = int(SystemAccount.INSURANCE_FUND)
        needed = sum(
            1
            for (a, i), p in self.positions.items()
            if a == acct_id and p.qty != 0 and (fund_id, i) not in self.positions
        )
        if needed > self.cfg.max_positions - len(self.positions):
            return
        self._takeover(acct_id)

    def _transfer(self, inst_id: int, seller: int, buyer: int, qty: int, price: int) -> None:
        inst = self.instruments[inst_id]
        pv = price * inst.cv
        for acct_id, dq in ((seller, -qty), (buyer, qty)):
            pos = self._pos(acct_id, inst_id)
            realised = self._apply_to_position(pos, dq, pv)
            if inst.kind == InstrumentKind.PERPETUAL:
                cash = realised
                self.accounts[SystemAccount.PNL_CLEARING].balance -= realised
            else:
                cash = pv * qty if dq < 0 else -pv * qty
            self.accounts[acct_id].balance += cash

    def _transfer_signed(self, inst_id: int, holder: int, other: int, qty: int, price: int) -> None:
        if qty > 0:
            self._transfer(inst_id, holder, other, qty, price)
        else:
            self._transfer(inst_id, other, holder, -qty, price)
        for acct_id in (other, holder):  # [A22]
            pos = self.positions.get((acct_id, inst_id))
            if pos is not None and pos.qty == 0 and pos.resting == 0:
                del self.positions[(acct_id, inst_id)]

    def _adl_score(self, acct_id: int, inst_id: int) -> int:
        inst = self.instruments[inst_id]
        pos = self.positions[(acct_id, inst_id)]
        value = pos.qty * inst.mark * inst.cv
        pnl = value - pos.basis
        scale = abs(pos.basis) // PPM + 1
        pnl_ppm = max(-(10**9), min(10**9, pnl // scale))
        equity = self.margins(acct_id)[0]
        leverage = 10**9 if equity <= 0 else min(10**9, abs(value) // (equity // PPM + 1))
        leverage = max(leverage, 1)
        if pnl_ppm >= 0:
            return pnl_ppm * leverage // PPM
        return pnl_ppm * PPM // leverage

    def _deleverage(self, acct_id: int, inst_id: int, price: int) -> int:
        q = self.positions[(acct_id, inst_id)].qty
        candidates = []
        for other in sorted(self.accounts):
            if other < len(SystemAccount) or other == acct_id:
                continue
            theirs = self.positions.get((other, inst_id))
            if theirs is None or theirs.qty == 0 or (theirs.qty > 0) == (q > 0):
                continue
            candidates.append([other, self._adl_score(other, inst_id)])
        left = abs(q)
        for _ in range(self.cfg.adl_max_counterparties):
            if left == 0 or not candidates:
                break
            best = max(range(len(candidates)), key=lambda k: (candidates[k][1], -k))
            other = candidates.pop(best)[0]
            lots = min(abs(self.positions[(other, inst_id)].qty), left)
            self._transfer_signed(inst_id, acct_id, other, lots if q > 0 else -lots, price)
            left -= lots
            self._stage(acct_id, LiquidationStage.AUTO_DELEVERAGE, inst_id, price, lots, other)
            self._stage(other, LiquidationStage.AUTO_DELEVERAGE, inst_id, price, lots, acct_id)
        return left

    def _takeover(self, acct_id: int) -> None:
        fund_id = int(SystemAccount.INSURANCE_FUND)
        equity = self.margins(acct_id)[0]
        ranked = self.cfg.adl_mode == 0
        if ranked and self.margins(fund_id)[0] + equity < 0:
            while (inst_id := self._first_position(acct_id)) is not None:
                inst = self.instruments[inst_id]
                q = self.positions[(acct_id, inst_id)].qty
                price = self._bankruptcy_price(inst, q, self.margins(acct_id)[0])
                left = self._deleverage(acct_id, inst_id, price)
                if left > 0:
                    self._transfer_signed(
                        inst_id, acct_id, fund_id, left if q > 0 else -left, price
                    )
                    self._stage(acct_id, LiquidationStage.INSURANCE_FUND, inst_id, price, left)
        while (inst_id := self._first_position(acct_id)) is not None:
            inst = self.instruments[inst_id]
            q = self.positions[(acct_id, inst_id)].qty
            self._transfer_signed(inst_id, acct_id, fund_id, q, inst.mark)
            self._stage(acct_id, LiquidationStage.INSURANCE_FUND, inst_id, inst.mark, abs(q))
        acct = self.accounts[acct_id]
        balance = acct.balance
        acct.balance = 0
        self.accounts[fund_id].balance += balance
        self._stage(acct_id, LiquidationStage.INSURANCE_FUND, money=balance)
        if self.accounts[fund_id].balance < 0 and not ranked:
            self._socialise()
        self._stage(acct_id, LiquidationStage.ENDED)
        self._set_state(acct_id, AccountState.BANKRUPT)

    def _socialise(self) -> None:
        fund = self.accounts[SystemAccount.INSURANCE_FUND]
        deficit = -fund.balance
        users = [a for a in sorted(self.accounts) if a >= len(SystemAccount)]
        total = sum(self.accounts[a].balance for a in users if self.accounts[a].balance > 0)
        if total <= 0:
            self.bad_debt += deficit
            self._stage(
                int(SystemAccount.INSURANCE_FUND), LiquidationStage.SOCIALISED, money=-deficit
            )
            return
        largest = max(
            (a for a in users if self.accounts[a].balance > 0),
            key=lambda a: (self.accounts[a].balance, -a),
        )
        if deficit > total:
            self.bad_debt += deficit - total
            deficit = total
        charged = 0
        for a in users:
            balance = self.accounts[a].balance
            if balance <= 0 or a == largest:
                continue
            share = balance if deficit >= total else balance * deficit // total
            if share > 0:
                self.accounts[a].balance -= share
                charged += share
                self._stage(a, LiquidationStage.SOCIALISED, money=-share)
        rest = deficit - charged
        self.accounts[largest].balance -= rest
        self._stage(largest, LiquidationStage.SOCIALISED, money=-rest)
        fund.balance += deficit
