"""Book plumbing: resting, unresting and cancelling a resting order. Mirrors core/book.py."""

from __future__ import annotations

from derivex.core.records import (
    EventKind,
    Reason,
)
from tests.reference.entities import (
    BUY,
    Order,
)


class BookModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def live_levels(self) -> int:
        return sum(len(i.bids) + len(i.asks) for i in self.instruments)

    def _rest(self, order: Order) -> None:
        inst = self.instruments[order.instrument]
        inst.side_book(order.side).setdefault(order.price, []).append(order)
        self.orders[order.id] = order
        self.accounts[order.account].orders.append(order.id)
        pos = self._pos(order.account, order.instrument)
        pos.resting += 1
        if order.side == BUY:
            pos.open_buy += order.qty
        else:
            pos.open_sell += order.qty

    def _unrest(self, order: Order) -> None:
        """Take a resting order out of its level and the account's lists (id kept)."""
        inst = self.instruments[order.instrument]
        level = inst.side_book(order.side)[order.price]
        level.remove(order)
        if not level:
            del inst.side_book(order.side)[order.price]
        del self.orders[order.id]
        self.accounts[order.account].orders.remove(order.id)
        pos = self.positions[(order.account, order.instrument)]
        pos.resting -= 1
        if order.side == BUY:
            pos.open_buy -= order.qty
        else:
            pos.open_sell -= order.qty

    def _cancel_resting(self, order: Order, reason: Reason, leg: int = 0) -> None:
        self._unrest(order)
        self._free_order_id(order.id)
        self._emit(
            EventKind.CANCELLED,
            reason=int(reason),
            leg=leg,
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=order.price,
            qty_lots=order.qty,
            label=order.label,
        )
