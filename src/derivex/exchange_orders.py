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
from derivex.door import NEED_ROOM, OrderDoor, load_binding
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


# plain ints for the binding (an IntEnum argument converts more slowly)
_SIDE_CODES = {name: int(code) for name, code in SIDES.items()}
_TYPE_CODES = {name: int(code) for name, code in ORDER_TYPES.items()}
_TIF_CODES = {name: int(code) for name, code in TIME_IN_FORCE.items()}
_POST_ONLY = int(OrderFlag.POST_ONLY)
_REJECT_POST_ONLY = int(OrderFlag.REJECT_POST_ONLY)
_REDUCE_ONLY = int(OrderFlag.REDUCE_ONLY)
_CLIENT_ORDER_ID = int(OrderFlag.CLIENT_ORDER_ID)
_MMP = int(OrderFlag.MMP)
_PLACE = int(CommandKind.PLACE_ORDER)
_CANCEL = int(CommandKind.CANCEL_ORDER)
_AMEND = int(CommandKind.AMEND_ORDER)
_METHODS = ("place", "cancel", "amend")  # the order methods door_native gives in C


class OrderMethods:
    """``Exchange``'s order commands (a mixin: ``Exchange`` provides what is declared).

    Whether the door may run is decided once per change, not per order: ``sequencer``,
    ``fast_orders`` and ``_door`` are properties whose setters (and ``add_sink``) call
    ``_door_changed``, which bumps the sequencer's ``door_version`` (the sequencer bumps it
    itself when its engine, hooks or clock are replaced); ``_fast_door`` records the door
    it approved and the version it approved it at, and an order (C or Python method) only
    compares the version and that the engine still has the arena the door is bound to
    (an engine grows by replacing its arena, and is driven directly too)."""

    _door_tried: bool
    _sinks: list[Any]
    _door_ready: OrderDoor | None  # the door _fast_door approved at _door_version
    _door_version: int

    @property
    def sequencer(self) -> Sequencer:
        """The venue's one sequencer (``derivex.sequencer``); replaceable (a cluster
        leader's)."""
        return self._sequencer

    @sequencer.setter
    def sequencer(self, sequencer: Sequencer) -> None:
        old = self.__dict__.get("_sequencer")
        if old is not None:
            old.door_version += 1  # the C methods hold the old one: they check again
        self._sequencer = sequencer
        self._door_changed()

    @property
    def fast_orders(self) -> bool:
        """Orders through the per-command door where it may run (default True); False:
        always the slow path, ``submit``."""
        return self._fast_orders

    @fast_orders.setter
    def fast_orders(self, fast: bool) -> None:
        self._fast_orders = fast
        self._door_changed()

    @property
    def _door(self) -> OrderDoor | None:
        """The per-command door, made on the first order (None: not yet, or never)."""
        return self.__dict__.get("_door_object")

    @_door.setter
    def _door(self, door: OrderDoor | None) -> None:
        self.__dict__["_door_object"] = door
        self._door_changed()

    def _door_changed(self) -> None:
        """A condition of the door changed (the door, ``fast_orders``, the sinks, the
        sequencer): the next order, C or Python method, checks them all again. O(1)."""
        self._door_ready = None
        sequencer = self.__dict__.get("_sequencer")
        if sequencer is not None:
            sequencer.door_version += 1

    def _command(self, kind: CommandKind, **fields: int) -> np.ndarray:
        raise NotImplementedError

    def _submit_intercepted(self) -> bool:
        raise NotImplementedError

    def install_native(self) -> bool:
        """Give this venue the C order methods of ``derivex.door_native``: instance
        attributes that shadow ``place`` / ``cancel`` / ``amend`` and run the door's common
        case in C, handing everything else to the methods below (same results, same
        errors). ``Exchange.__init__`` calls it; skipped for a class that overrides an order
        method and where the module does not build. Returns whether they are installed.
        Cost: the first call in a process loads (once per machine: compiles) the module."""
        cls = type(self)
        if any(getattr(cls, name) is not getattr(OrderMethods, name) for name in _METHODS):
            return False
        from derivex import door_native

        native = door_native.load()
        if native is None:
            return False
        methods = native.Door(
            self,
            *(getattr(OrderMethods, name).__get__(self) for name in _METHODS),
            _SIDE_CODES,
            _TYPE_CODES,
            _TIF_CODES,
            (_PLACE, _CANCEL, _AMEND),
            (_POST_ONLY, _REJECT_POST_ONLY, _REDUCE_ONLY, _CLIENT_ORDER_ID, _MMP),
        )
        vars(self).update({name: getattr(methods, name) for name in _METHODS})
        return True

    def _fast_door(self) -> OrderDoor | None:
        """The per-command door if it may run this command: it exists (made on first use)
        and no sequencer hook (a journal) has to see the command; else None (the slow
        path, ``submit``). Binds the door to the engine's current arena; records the door
        and the ``door_version`` it was approved at (``_door_ready``), which the C methods
        read too. O(1) unless it makes the door."""
        sequencer = self._sequencer
        version = sequencer.door_version
        self._door_ready = None
        if (
            sequencer.before is not None
            or sequencer.after is not None
            or self._sinks
            or not self._fast_orders
        ):
            return None
        door = self._door
        if door is None:
            if self._door_tried:
                return None
            self._door_tried = True
            if self._submit_intercepted():
                # a subclass or an instance that intercepts submit (a read-only replica
                # view refuses commands) must see every command: it never gets the door
                return None
            binding = load_binding()
            if binding is None:
                return None
            door = self._door = OrderDoor(binding)
            version = sequencer.door_version  # the setter bumped it
        engine = sequencer.engine
        if door.engine is not engine or engine.arena is not door.arena:
            door.bind(engine)
        self._door_ready, self._door_version = door, version
        return door

    def _door_retry(self, door: OrderDoor, row: int, call: Callable, args: tuple) -> OrderResult:
        """The result of a fast call that returned a negative ``row``: a full log or event
        buffer is replaced (``OrderDoor.make_room``) and the call retried; a command that
        needs a pool to grow runs through the engine's Python wrapper. Commits the seq."""
        for _ in range(3):  # the rows, then the event buffer, may each be full
            if row != NEED_ROOM:
                break
            door.make_room(self.sequencer.engine)
            row = call(*args)
        if row < 0:
            result = door.slow(self.sequencer.engine)
        else:
            result = OrderResult(door.log, row)
        sequencer = self.sequencer
        sequencer.seq += 1
        sequencer.batches += 1
        return result

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
        mmp: bool = False,
    ) -> OrderResult:
        """Place an order. Rejections come back as ``accepted=False`` with a reason. With
        ``client_order_id``, ``label`` is the order's client order id: unique among the
        account's open orders, and ``cancel`` / ``amend`` can name the order by it. Cost:
        one compiled call (through ``derivex.door`` when no journal or sink is attached).
        With ``mmp``, its fills count toward the account's market-maker protection (default
        group of the underlying, ``set_mmp_config``).
        Raises KeyError for an unknown side, order type or time in force."""
        flags = 0
        if post_only or reject_post_only or reduce_only or client_order_id or mmp:
            flags = (
                (_POST_ONLY if post_only else 0)
                | (_REJECT_POST_ONLY if reject_post_only else 0)
                | (_REDUCE_ONLY if reduce_only else 0)
                | (_CLIENT_ORDER_ID if client_order_id else 0)
                | (_MMP if mmp else 0)
            )
        side_code = _SIDE_CODES[side]
        type_code = _TYPE_CODES[order_type]
        tif_code = _TIF_CODES[time_in_force]
        door = self._door_ready
        sequencer = self._sequencer
        if (  # nothing changed since _fast_door approved the door (else it decides again)
            door is None
            or sequencer.door_version != self._door_version
            or door.engine.arena is not door.arena  # type: ignore[union-attr]
        ):
            door = self._fast_door()
        if door is None:
            return OrderResult.from_events(
                self._command(
                    CommandKind.PLACE_ORDER,
                    account=account,
                    instrument=instrument,
                    side=side_code,
                    order_type=type_code,
                    tif=tif_code,
                    flags=flags,
                    price_ticks=price_ticks,
                    qty_lots=qty_lots,
                    label=label,
                )
            )
        ts_ns = sequencer._clock()  # the property costs a Python call
        if ts_ns < sequencer.ts_ns:
            ts_ns = sequencer.ts_ns
        sequencer.ts_ns = ts_ns
        seq = sequencer.seq + 1
        row = door.order(
            door.address,
            _PLACE,
            seq,
            ts_ns,
            account,
            instrument,
            0,
            side_code,
            type_code,
            tif_code,
            flags,
            price_ticks,
            qty_lots,
            label,
        )
        if row >= 0:
            sequencer.seq = seq
            sequencer.batches += 1
            return OrderResult(door.log, row)
        args = (
            door.address,
            _PLACE,
            seq,
            ts_ns,
            account,
            instrument,
            0,
            side_code,
            type_code,
            tif_code,
            flags,
            price_ticks,
            qty_lots,
            label,
        )
        return self._door_retry(door, row, door.order, args)

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
        was placed with instead of ``order_id``. Cost: as ``place``."""
        flags = _CLIENT_ORDER_ID if client_order_id else 0
        door = self._door_ready
        sequencer = self._sequencer
        if (  # nothing changed since _fast_door approved the door (else it decides again)
            door is None
            or sequencer.door_version != self._door_version
            or door.engine.arena is not door.arena  # type: ignore[union-attr]
        ):
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
        ts_ns = sequencer._clock()  # the property costs a Python call
        if ts_ns < sequencer.ts_ns:
            ts_ns = sequencer.ts_ns
        sequencer.ts_ns = ts_ns
        seq = sequencer.seq + 1
        args = (
            door.address,
            _AMEND,
            seq,
            ts_ns,
            account,
            0,
            order_id,
            0,
            0,
            0,
            flags,
            price_ticks,
            qty_lots,
            client_order_id,
        )
        row = door.order(*args)
        if row >= 0:
            sequencer.seq = seq
            sequencer.batches += 1
            return OrderResult(door.log, row)
        return self._door_retry(door, row, door.order, args)

    def cancel(self, account: int, order_id: int, *, client_order_id: int = 0) -> OrderResult:
        """Cancel a resting order (``status`` "cancelled"), named by ``order_id`` or, when
        non-zero, by the ``client_order_id`` it was placed with. Cost: as ``place``."""
        flags = _CLIENT_ORDER_ID if client_order_id else 0
        door = self._door_ready
        sequencer = self._sequencer
        if (  # nothing changed since _fast_door approved the door (else it decides again)
            door is None
            or sequencer.door_version != self._door_version
            or door.engine.arena is not door.arena  # type: ignore[union-attr]
        ):
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
        ts_ns = sequencer._clock()  # the property costs a Python call
        if ts_ns < sequencer.ts_ns:
            ts_ns = sequencer.ts_ns
        sequencer.ts_ns = ts_ns
        seq = sequencer.seq + 1
        row = door.order(
            door.address,
            _CANCEL,
            seq,
            ts_ns,
            account,
            0,
            order_id,
            0,
            0,
            0,
            flags,
            0,
            0,
            client_order_id,
        )
        if row >= 0:
            sequencer.seq = seq
            sequencer.batches += 1
            return OrderResult(door.log, row)
        args = (
            door.address,
            _CANCEL,
            seq,
            ts_ns,
            account,
            0,
            order_id,
            0,
            0,
            0,
            flags,
            0,
            0,
            client_order_id,
        )
        return self._door_retry(door, row, door.order, args)
