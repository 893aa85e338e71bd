"""The order commands of the embedded venue: ``place``, ``cancel``, ``amend``, one Python
call per command with a typed ``OrderResult``. With no journal or sink attached they run
through the per-command door (``derivex.door``: a compiled entry point, no numba dispatcher,
no record built in Python); otherwise, and wherever the door cannot run, through
``Exchange.submit``. Both paths give the same results, events and state (tests/test_door.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from derivex.core.records import CommandKind, OrderFlag, OrderType, Side, TimeInForce
from derivex.door import NEED_GROWTH, OrderDoor, load_binding
from derivex.results import OrderResult
from derivex.sequencer import Sequencer

SIDES = {"buy": Side.BUY, "sell": Side.SELL}
ORDER_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
TIME_IN_FORCE = {
    "gtc": TimeInForce.GTC,
    "good_til_cancelled": TimeInForce.GTC,
    "ioc": TimeInForce.IOC,
    "immediate_or_cancel": TimeInForce.IOC,
    "fok": TimeInForce.FOK,
    "fill_or_kill": TimeInForce.FOK,
}


class OrderMethods:
    """``Exchange``'s order commands (a mixin: ``Exchange`` provides what is declared)."""

    sequencer: Sequencer
    fast_orders: bool
    _door: OrderDoor | None
    _door_tried: bool
    _sinks: list[Any]

    def _command(self, kind: CommandKind, **fields: int) -> np.ndarray:
        raise NotImplementedError

    def _fast_door(self) -> OrderDoor | None:
        """The per-command door if it may run this command: it exists (made on first use)
        and no sequencer hook (a journal) has to see the command; else None (the slow
        path, ``submit``)."""
        sequencer = self.sequencer
        if (
            sequencer.before is not None
            or sequencer.after is not None
            or self._sinks
            or not self.fast_orders
        ):
            return None
        door = self._door
        if door is None:
            if self._door_tried:
                return None
            self._door_tried = True
            binding = load_binding()
            if binding is None:
                return None
            door = self._door = OrderDoor(binding)
        if sequencer.engine.arena is not door.arena:
            door.bind(sequencer.engine)
        return door

    def _stamp(self) -> tuple[int, int]:
        """(seq, ts_ns) for one command on the fast path, by the sequencer's rules; the
        caller commits ``seq`` once the command ran."""
        sequencer = self.sequencer
        ts_ns = sequencer.clock()
        if ts_ns < sequencer.ts_ns:
            ts_ns = sequencer.ts_ns
        sequencer.ts_ns = ts_ns
        return sequencer.seq + 1, ts_ns

    def _door_result(self, door: OrderDoor, row: int, retry: Callable[[], int]) -> OrderResult:
        """The result of a fast call that returned ``row``; a full log is replaced and the
        call retried, a command that needs growth runs through the engine's wrapper."""
        if row < 0:
            if row == NEED_GROWTH:
                result = door.slow(self.sequencer.engine)
                self._commit()
                return result
            door.fresh_log()
            row = retry()
            if row < 0:  # a single command larger than a fresh buffer: the slow path
                result = door.slow(self.sequencer.engine)
                self._commit()
                return result
        self._commit()
        return OrderResult(door.log, row)

    def _commit(self) -> None:
        sequencer = self.sequencer
        sequencer.seq += 1
        sequencer.batches += 1

    def place(
        self,
        account: int,
        instrument: int,
        side: str,
        qty_lots: int,
        price_ticks: int = 0,
        *,
        order_type: str = "limit",
        time_in_force: str = "gtc",
        post_only: bool = False,
        reject_post_only: bool = False,
        reduce_only: bool = False,
        label: int = 0,
        client_order_id: bool = False,
    ) -> OrderResult:
        """Place an order. Rejections come back as ``accepted=False`` with a reason. With
        ``client_order_id``, ``label`` is the order's client order id: unique among the
        account's open orders, and ``cancel`` / ``amend`` can name the order by it. Cost:
        one compiled call (the fast path, ``derivex.door``, when no journal is attached)."""
        flags = (
            (OrderFlag.POST_ONLY if post_only else 0)
            | (OrderFlag.REJECT_POST_ONLY if reject_post_only else 0)
            | (OrderFlag.REDUCE_ONLY if reduce_only else 0)
            | (OrderFlag.CLIENT_ORDER_ID if client_order_id else 0)
        )
        door = self._fast_door()
        if door is None:
            return OrderResult.from_events(
                self._command(
                    CommandKind.PLACE_ORDER,
                    account=account,
                    instrument=instrument,
                    side=SIDES[side],
                    order_type=ORDER_TYPES[order_type],
                    tif=TIME_IN_FORCE[time_in_force],
                    flags=flags,
                    price_ticks=price_ticks,
                    qty_lots=qty_lots,
                    label=label,
                )
            )
        seq, ts_ns = self._stamp()
        call = door.binding.place
        args = (
            door.address,
            seq,
            ts_ns,
            account,
            instrument,
            SIDES[side],
            ORDER_TYPES[order_type],
            TIME_IN_FORCE[time_in_force],
            flags,
            price_ticks,
            qty_lots,
            label,
        )
        row = call(*args)
        if row >= 0:
            sequencer = self.sequencer
            sequencer.seq = seq
            sequencer.batches += 1
            return OrderResult(door.log, row)
        return self._door_result(door, row, lambda: call(*args))

    def amend(
        self,
        account: int,
        order_id: int,
        price_ticks: int,
        qty_lots: int,
        *,
        client_order_id: int = 0,
    ) -> OrderResult:
        """Change price and remaining quantity (quantity down at the same price keeps
        priority). ``client_order_id`` (non-zero): name the order by the client order id it
        was placed with instead of ``order_id``."""
        flags = OrderFlag.CLIENT_ORDER_ID if client_order_id else 0
        door = self._fast_door()
        if door is None:
            return OrderResult.from_events(
                self._command(
                    CommandKind.AMEND_ORDER,
                    account=account,
                    order_id=order_id,
                    flags=flags,
                    label=client_order_id,
                    price_ticks=price_ticks,
                    qty_lots=qty_lots,
                )
            )
        seq, ts_ns = self._stamp()
        call = door.binding.amend
        args = (
            door.address,
            seq,
            ts_ns,
            account,
            order_id,
            flags,
            client_order_id,
            price_ticks,
            qty_lots,
        )
        row = call(*args)
        if row >= 0:
            sequencer = self.sequencer
            sequencer.seq = seq
            sequencer.batches += 1
            return OrderResult(door.log, row)
        return self._door_result(door, row, lambda: call(*args))

    def cancel(self, account: int, order_id: int, *, client_order_id: int = 0) -> OrderResult:
        """Cancel a resting order (``status`` "cancelled"), named by ``order_id`` or, when
        non-zero, by the ``client_order_id`` it was placed with."""
        flags = OrderFlag.CLIENT_ORDER_ID if client_order_id else 0
        door = self._fast_door()
        if door is None:
            return OrderResult.from_events(
                self._command(
                    CommandKind.CANCEL_ORDER,
                    account=account,
                    order_id=order_id,
                    flags=flags,
                    label=client_order_id,
                )
            )
        seq, ts_ns = self._stamp()
        call = door.binding.cancel
        args = (door.address, seq, ts_ns, account, order_id, flags, client_order_id)
        row = call(*args)
        if row >= 0:
            sequencer = self.sequencer
            sequencer.seq = seq
            sequencer.batches += 1
            return OrderResult(door.log, row)
        return self._door_result(door, row, lambda: call(*args))
