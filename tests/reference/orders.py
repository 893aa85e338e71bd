"""Order validation, PLACE_ORDER, CANCEL_ORDER, AMEND_ORDER and the cancel-alls. Mirrors
core/orders.py."""

from __future__ import annotations

from derivex.core.records import (
    CommandKind,
    EventKind,
    OrderType,
    Reason,
    SelfTradePrevention,
    TimeInForce,
)
from tests.reference.entities import (
    ALL_FLAGS,
    BUY,
    CID,
    PO,
    QUOTE,
    RO,
    RPO,
    SELL,
    Instrument,
    Order,
    Reject,
    crosses,
)


class OrdersModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _check_qty(self, inst: Instrument, qty: int) -> None:
        if qty <= 0:
            raise Reject(Reason.QTY_NOT_POSITIVE)
        if qty > self.cfg.max_order_lots:
            raise Reject(Reason.QTY_TOO_LARGE)
        if qty % inst.min_trade:
            raise Reject(Reason.QTY_OFF_STEP)

    def _check_price(self, inst: Instrument, price: int) -> None:
        if price <= 0:
            raise Reject(Reason.PRICE_NOT_POSITIVE)
        if price > inst.max_price:
            raise Reject(Reason.PRICE_TOO_LARGE)
        if price % inst.tick:
            raise Reject(Reason.PRICE_OFF_TICK)

    def _post_only_price(self, inst: Instrument, side: int, price: int, reject: bool) -> int:
        """Step 9. [A13]"""
        best = inst.best(1 - side)
        if best is None or not crosses(side, best, price):
            return price
        if reject:
            raise Reject(Reason.POST_ONLY_WOULD_TAKE)
        new = best - inst.tick if side == BUY else best + inst.tick
        if new <= 0 or new > inst.max_price:
            raise Reject(Reason.POST_ONLY_WOULD_TAKE)
        return new

    def _check_levels(self, inst: Instrument, side: int, price: int) -> None:
        """Level capacity for an order that will rest at ``price`` (current counts)."""
        book = inst.side_book(side)
        if price in book:
            return
        if len(book) >= self.cfg.max_levels_per_side:
            raise Reject(Reason.BOOK_LEVEL_LIMIT)
        if self.live_levels() >= self.cfg.max_levels:
            raise Reject(Reason.LEVEL_POOL_FULL)

    # ------------------------------------------------------------------ PLACE_ORDER

    def _place(self, cmd, spawned_by=None) -> None:
        """``spawned_by``: the trigger order firing it (gas prepaid; tests/reference/triggers)"""
        acct_id, acct = self._user_account(cmd)  # 1
        if spawned_by is None:
            self._charge_base(acct)  # 2
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)  # 3
        side, otype, tif, flags = (
            int(cmd["side"]),
            int(cmd["order_type"]),
            int(cmd["tif"]),
            int(cmd["flags"]),
        )
        if side not in (BUY, SELL):  # 4
            raise Reject(Reason.BAD_SIDE)
        if otype not in (OrderType.LIMIT, OrderType.MARKET):
            raise Reject(Reason.BAD_ORDER_TYPE)
        if tif not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
            raise Reject(Reason.BAD_TIME_IN_FORCE)
        if (
            flags & ~ALL_FLAGS
            or flags & QUOTE
            or (flags & RPO and not flags & PO)
            or (flags & PO and (otype == OrderType.MARKET or tif != TimeInForce.GTC))
        ):
            raise Reject(Reason.BAD_FLAGS)
        if flags & CID:  # 4b: a client order id, unique among the account's open orders
            label = int(cmd["label"])
            if label == 0:
                raise Reject(Reason.BAD_CLIENT_ORDER_ID)
            if self._labelled(acct, label):
                raise Reject(Reason.DUPLICATE_CLIENT_ORDER_ID)
        self._require_active(inst)  # 5
        self._mmp_order_check(acct_id, inst, otype, flags)  # tests/reference/mmp.py
        self._market_check(inst, bool(flags & RO))  # [R2]
        qty = int(cmd["qty_lots"])
        self._check_qty(inst, qty)  # 6
        if otype == OrderType.LIMIT:  # 7
            price = int(cmd["price_ticks"])
            self._check_price(inst, price)
            if self.cfg.risk_checks:  # [R5]
                price = self._banded_price(inst, side, price)
            limit: int | None = price
        else:
            price, limit = 0, None
            if tif == TimeInForce.GTC:
                tif = int(TimeInForce.IOC)
            if self.cfg.risk_checks:  # [R3]
                price = limit = self._band_price(inst, side)
        if flags & RO:  # 8
            cap = self.reducing_capacity(self._pos_qty(acct_id, inst_id), side)
            if cap == 0:
                raise Reject(Reason.REDUCE_ONLY_WOULD_INCREASE)
            qty = min(qty, cap)
        if flags & PO:  # 9
            price = limit = self._post_only_price(inst, side, price, bool(flags & RPO))
            if self.cfg.risk_checks:  # [R5] repriced out of the band
                self._check_band(inst, price)
        if not self._position_limit_ok(acct_id, inst_id, side, qty):  # 10
            raise Reject(Reason.POSITION_LIMIT)
        self._margin_check(acct_id, inst_id, side, qty, qty * price)  # [R4]
        resting = otype == OrderType.LIMIT and tif == TimeInForce.GTC
        if resting:  # 11 [A7]
            if len(acct.orders) + self._trigger_count(acct_id) >= (
                self.cfg.max_open_orders_per_account
            ):
                raise Reject(Reason.ACCOUNT_ORDER_LIMIT)
            if inst.resting_count() >= self.cfg.max_orders_per_book:
                raise Reject(Reason.BOOK_ORDER_LIMIT)
        if len(self.orders) >= self.cfg.max_orders:
            raise Reject(Reason.ORDER_POOL_FULL)
        if resting:
            self._check_levels(inst, side, price)
        if (acct_id, inst_id) not in self.positions and len(
            self.positions
        ) >= self.cfg.max_positions:  # [A7]
            raise Reject(Reason.POSITION_POOL_FULL)
        stp_reject = acct.stp & 1 == SelfTradePrevention.REJECT_INCOMING
        if tif == TimeInForce.FOK or stp_reject:  # 12
            reason = self._scan(
                acct_id, inst_id, side, limit, qty, tif == TimeInForce.FOK, stp_reject
            )
            if reason is not None:
                raise Reject(reason)
        label = int(cmd["label"])
        order = Order(
            id=self._alloc_order_id(),
            account=acct_id,
            instrument=inst_id,
            side=side,
            price=price,
            qty=qty,
            flags=flags,
            label=label,
        )
        if spawned_by is not None:
            spawned_by.qty = qty  # the clamped quantity goes into TRIGGER_FIRED
            self._emit_trigger(EventKind.TRIGGER_FIRED, spawned_by, 0, spawned_by.crossed, order.id)
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=inst_id,
            side=side,
            order_id=order.id,
            price_ticks=price,
            qty_lots=qty,
            label=label,
            a=spawned_by.id if spawned_by is not None else 0,
        )
        self._pos(acct_id, inst_id)  # the slot is live from acceptance
        filled, gas_stop = self._match(order, limit)
        self._finish_taker(order, limit, tif, filled, gas_stop, otype == OrderType.MARKET)

    # ------------------------------------------------------------------ CANCEL / AMEND

    def _labelled(self, acct, label: int) -> list[Order]:
        return [self.orders[oid] for oid in acct.orders if self.orders[oid].label == label]

    def _owned_order(self, cmd, acct_id: int) -> Order:
        if int(cmd["flags"]) & CID:  # the target named by its client order id
            label = int(cmd["label"])
            if label == 0:
                raise Reject(Reason.BAD_CLIENT_ORDER_ID)
            named = self._labelled(self.accounts[acct_id], label)
            if not named:
                raise Reject(Reason.UNKNOWN_ORDER)
            if len(named) > 1:
                raise Reject(Reason.DUPLICATE_CLIENT_ORDER_ID)
            return named[0]
        order = self.orders.get(int(cmd["order_id"]))
        if order is None:
            raise Reject(Reason.UNKNOWN_ORDER)
        if order.account != acct_id:
            raise Reject(Reason.NOT_ORDER_OWNER)
        return order

    def _cancel(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        order = self._owned_order(cmd, acct_id)
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=order.price,
            qty_lots=order.qty,
            label=order.label,
        )
        self._cancel_resting(order, Reason.CANCEL_BY_USER)

    def _amend(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        order = self._owned_order(cmd, acct_id)
        inst = self.instruments[order.instrument]
        self._require_active(inst)
        self._market_check(inst, bool(order.flags & RO))
        qty = int(cmd["qty_lots"])
        self._check_qty(inst, qty)
        price = int(cmd["price_ticks"])
        self._check_price(inst, price)
        banded = self.cfg.risk_checks and (price != order.price or qty > order.qty)  # [R5]
        if banded:
            price = self._banded_price(inst, order.side, price)
        if order.flags & RO:
            cap = self.reducing_capacity(self._pos_qty(acct_id, order.instrument), order.side)
            if cap == 0:
                raise Reject(Reason.REDUCE_ONLY_WOULD_INCREASE)
            qty = min(qty, cap)
        if order.flags & PO:
            price = self._post_only_price(inst, order.side, price, bool(order.flags & RPO))
            if banded:
                self._check_band(inst, price)
        keep = price == order.price and qty <= order.qty  # [A14]
        if not self._position_limit_ok(acct_id, order.instrument, order.side, qty, gone=order.qty):
            raise Reject(Reason.POSITION_LIMIT)
        self._margin_check(
            acct_id,
            order.instrument,
            order.side,
            qty - order.qty,
            qty * price - order.qty * order.price,
        )
        if price != order.price:  # [A14]
            self._check_levels(inst, order.side, price)
        if not keep and acct.stp & 1 == SelfTradePrevention.REJECT_INCOMING:
            reason = self._scan(acct_id, order.instrument, order.side, price, qty, False, True)
            if reason is not None:
                raise Reject(reason)
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=price,
            qty_lots=qty,
            label=order.label,
        )
        self._emit(
            EventKind.AMENDED,
            account=acct_id,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=price,
            qty_lots=qty,
            label=order.label,
            a=int(keep),
        )
        if keep:
            pos = self.positions[(acct_id, order.instrument)]
            if order.side == BUY:
                pos.open_buy -= order.qty - qty
            else:
                pos.open_sell -= order.qty - qty
            order.qty = qty
            return
        self._unrest(order)
        order.price, order.qty = price, qty
        filled, gas_stop = self._match(order, price)
        self._finish_taker(order, price, int(TimeInForce.GTC), filled, gas_stop)

    def _cancel_all(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        only: int | None = None
        if self._kind == CommandKind.CANCEL_ALL_INSTRUMENT:
            only = int(cmd["instrument"])
            self._instrument(only)
        victims = [
            self.orders[oid]
            for oid in acct.orders
            if only is None or self.orders[oid].instrument == only
        ]
        victims.sort(key=lambda o: o.instrument)  # stable: list order within an instrument
        fields = {"account": acct_id, "qty_lots": len(victims)}
        if only is not None:
            fields["instrument"] = only
        self._emit(EventKind.ACCEPTED, **fields)
        for order in victims:
            self._cancel_resting(order, Reason.CANCEL_ALL)  # [A18]
