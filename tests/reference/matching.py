"""Fills (positions, fees, realised P&L) and matching a taker against the book. Mirrors
core/matching.py."""

from __future__ import annotations

from derivex.core.records import (
    EventKind,
    InstrumentKind,
    Liquidity,
    Reason,
    SelfTradeScope,
    SystemAccount,
    TimeInForce,
)
from tests.reference.entities import (
    BUY,
    PPM,
    RO,
    Order,
    Position,
    ceil_div,
    crosses,
    sign,
)


class MatchingModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    @staticmethod
    def _apply_to_position(pos: Position, dq: int, pv: int) -> int:
        """Rules 1-2 of the spec; returns the realised P&L."""
        if pos.qty == 0 or sign(pos.qty) == sign(dq):
            pos.qty += dq
            pos.basis += sign(dq) * pv * abs(dq)
            return 0
        closing = min(abs(dq), abs(pos.qty))
        long = pos.qty > 0
        if closing == abs(pos.qty):
            e = abs(pos.basis)
        elif long:
            e = ceil_div(abs(pos.basis) * closing, abs(pos.qty))
        else:
            e = (abs(pos.basis) * closing) // abs(pos.qty)
        realised = pv * closing - e if long else e - pv * closing
        pos.basis -= sign(pos.qty) * e
        pos.qty += sign(dq) * closing
        rest = abs(dq) - closing
        if rest:
            assert pos.qty == 0 and pos.basis == 0
            pos.qty = sign(dq) * rest
            pos.basis = sign(dq) * pv * rest
        return realised

    @staticmethod
    def fee(value: int, rate_ppm: int) -> int:
        if rate_ppm >= 0:
            return ceil_div(value * rate_ppm, PPM)  # a charge: rounded up
        return -((value * -rate_ppm) // PPM)  # a rebate: rounded toward zero

    def _fill(self, maker: Order, taker: Order, q: int) -> None:
        inst = self.instruments[maker.instrument]
        price = maker.price
        pv = price * inst.cv
        value = pv * q
        maker.qty -= q
        taker.qty -= q
        results = []
        for order, rate in ((maker, inst.maker_fee), (taker, inst.taker_fee)):
            acct = self.accounts[order.account]
            pos = self._pos(order.account, order.instrument)
            if order is maker:
                if order.side == BUY:
                    pos.open_buy -= q
                else:
                    pos.open_sell -= q
            dq = q if order.side == BUY else -q
            realised = self._apply_to_position(pos, dq, pv)
            if inst.kind == InstrumentKind.PERPETUAL:
                cash = realised
                self.accounts[SystemAccount.PNL_CLEARING].balance -= realised
            else:
                cash = -value if order.side == BUY else value
            fee = self.fee(value, rate)
            acct.balance += cash - fee
            self.accounts[SystemAccount.FEE_POOL].balance += fee
            results.append((order, pos, cash, fee, acct.balance))
        self._mmp_fill(maker, q)  # tests/reference/mmp.py
        self._mmp_fill(taker, q)
        if maker.qty == 0:
            self._unrest(maker)
            self._free_order_id(maker.id)
        for (order, _pos, _cash, fee, _bal), liq in zip(
            results, (Liquidity.MAKER, Liquidity.TAKER), strict=False
        ):
            self._emit(
                EventKind.FILLED,
                account=order.account,
                instrument=order.instrument,
                side=order.side,
                liquidity=int(liq),
                order_id=order.id,
                price_ticks=price,
                qty_lots=q,
                fee_units=fee,
                remaining_lots=order.qty,
            )
        for (order, pos, cash, _fee, bal), liq in zip(
            results, (Liquidity.MAKER, Liquidity.TAKER), strict=False
        ):
            self._emit(
                EventKind.POSITION,
                account=order.account,
                instrument=order.instrument,
                side=order.side,
                liquidity=int(liq),
                order_id=order.id,
                basis_units=pos.basis,
                position_lots=pos.qty,
                cash_units=cash,
                balance_units=bal,
            )

    # ------------------------------------------------------------------ matching

    def _counts_as_own(self, acct_id: int, other: int) -> bool:
        """Whether ``other``'s resting orders count as ``acct_id``'s own for STP: the same
        account, or (``acct_id`` with FAMILY scope) the same main account. [core/stp.py]"""
        if other == acct_id:
            return True
        if not self.accounts[acct_id].stp & SelfTradeScope.FAMILY:
            return False
        return (self.accounts[other].parent or other) == (self.accounts[acct_id].parent or acct_id)

    def _scan(
        self,
        acct_id: int,
        inst_id: int,
        side: int,
        limit: int | None,
        qty: int,
        fok: bool,
        stp_reject: bool,
    ) -> Reason | None:
        """Step 12: walk the opposite side as matching would, changing nothing. [A9]

        The walk goes on until the quantity is exhausted or nothing more crosses, adding up
        the gas that matching would charge. Then: an own order reached (reject mode) is
        SELF_TRADE_REJECTED; for a FOK, gas needed > budget is GAS_EXHAUSTED and an
        incomplete fill FOK_NOT_FILLED."""
        inst = self.instruments[inst_id]
        gas_needed = 0
        sim_pos: dict[int, int] = {}
        remaining = qty
        opposite = 1 - side
        own = False
        for price in inst.levels_in_priority(opposite):
            if remaining == 0 or own or not crosses(side, price, limit):
                break
            gas_needed += self.cfg.gas_per_level
            for resting in inst.side_book(opposite)[price]:
                if remaining == 0:
                    break
                gas_needed += self.cfg.gas_per_fill
                if self._counts_as_own(acct_id, resting.account):
                    if stp_reject:
                        own = True
                        break
                    continue  # would be cancelled (CANCEL_RESTING)
                owner_pos = sim_pos.get(resting.account, self._pos_qty(resting.account, inst_id))
                q = min(remaining, resting.qty)
                if resting.flags & RO:
                    q = min(q, self.reducing_capacity(owner_pos, resting.side))
                sim_pos[resting.account] = owner_pos + (q if resting.side == BUY else -q)
                remaining -= q
        if own:
            return Reason.SELF_TRADE_REJECTED
        if fok and gas_needed > self.accounts[acct_id].gas:
            return Reason.GAS_EXHAUSTED
        if fok and remaining > 0:
            return Reason.FOK_NOT_FILLED
        return None

    def _match(self, taker: Order, limit: int | None) -> tuple[int, bool]:
        """Match an incoming order; returns (filled quantity, stopped for gas)."""
        inst = self.instruments[taker.instrument]
        acct = self.accounts[taker.account]
        opposite = 1 - taker.side
        filled = 0
        while taker.qty > 0:
            best = inst.best(opposite)
            if best is None or not crosses(taker.side, best, limit):
                return filled, False
            if acct.gas < self.cfg.gas_per_level:
                return filled, True
            acct.gas -= self.cfg.gas_per_level
            level = inst.side_book(opposite)[best]
            while taker.qty > 0 and best in inst.side_book(opposite):
                resting = level[0]
                if acct.gas < self.cfg.gas_per_fill:
                    return filled, True
                acct.gas -= self.cfg.gas_per_fill
                if self._counts_as_own(taker.account, resting.account):
                    # CANCEL_RESTING, or an engine order (a liquidation: whatever the mode)
                    self._cancel_resting(resting, Reason.CANCEL_SELF_TRADE)
                    continue
                if resting.flags & RO:
                    cap = self.reducing_capacity(
                        self._pos_qty(resting.account, resting.instrument), resting.side
                    )
                    if cap == 0:
                        self._cancel_resting(resting, Reason.CANCEL_REDUCE_ONLY)
                        continue
                    q = min(taker.qty, resting.qty, cap)
                    self._fill(resting, taker, q)
                    filled += q
                    if q == cap and resting.qty > 0:  # [A11]
                        self._cancel_resting(resting, Reason.CANCEL_REDUCE_ONLY)
                    continue
                q = min(taker.qty, resting.qty)
                self._fill(resting, taker, q)
                filled += q
        return filled, False

    def _finish_taker(
        self,
        taker: Order,
        limit: int | None,
        tif: int,
        filled: int,
        gas_stop: bool,
        market: bool | None = None,
    ) -> None:
        """After matching: rest a GTC remainder, expire anything else. [A10]"""
        if market is None:
            market = limit is None
        if taker.qty == 0:
            self._free_order_id(taker.id)
            return
        if gas_stop:
            reason = Reason.CANCEL_GAS
        elif limit is not None and tif == TimeInForce.GTC:
            self._rest(taker)
            return
        elif market and filled == 0:
            reason = Reason.NO_LIQUIDITY
        else:
            reason = Reason.CANCEL_IOC_REMAINDER
        self._free_order_id(taker.id)
        self._emit(
            EventKind.EXPIRED,
            reason=int(reason),
            account=taker.account,
            instrument=taker.instrument,
            side=taker.side,
            order_id=taker.id,
            price_ticks=taker.price,
            qty_lots=taker.qty,
            label=taker.label,
        )
