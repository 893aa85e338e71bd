"""``Venue``: the gateway's view of an ``Exchange``: the submission paths (orders, edits,
cancels, mass quotes, market inputs) on top of the event projection.

The venue is built in layers, one concept each: ``order_records.py`` (the records, the
updates listeners get, the API's names for engine codes), ``projection.py`` (events ->
order, trade and price updates), ``deferred.py`` (batches sequenced elsewhere, walked in
seq order with ours) and this module. Every mutation goes through the venue, which submits
the command, walks its events once and hands an ``Update`` to its listeners (the
subscription fan-out, metrics). One thread drives it (the server's event loop), as one
sequencer drives an ``Exchange``. Commands are packed with structs the record codec
derives from the command dtype (``codec.record_struct``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np

from derivex.core import codec, query
from derivex.core.records import COMMAND_DTYPE, RECORD_BYTES, CommandKind, EventKind, OrderFlag
from derivex.exchange import CommandResult, Exchange, Quote
from derivex.gateway import linked_orders
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.deferred import DeferredBatches
from derivex.gateway.errors import (
    INVALID_AMOUNT,
    RpcError,
    invalid_params,
    rpc_error_for,
)
from derivex.gateway.labels import SharedLabels
from derivex.gateway.linked_records import GroupPending
from derivex.gateway.order_records import (
    ORDER_TYPE_CODES,
    ORDER_TYPES,
    PLACE_LAYOUT,
    SIDES,
    TIF_CODES,
    TIF_NAMES,
    TIME_IN_FORCE,
    TRIGGER_LAYOUT,
    Deferred,
    OrderRecord,
    OutcomeUnknown,
    Pending,
    Placed,
    PlaceOrder,
    Trade,
    Update,
    outcome_unknown,
    own_trades,
    side_name,
)

__all__ = [
    "ORDER_TYPES",
    "SIDES",
    "TIF_NAMES",
    "TIME_IN_FORCE",
    "Deferred",
    "OrderRecord",
    "OutcomeUnknown",
    "PlaceOrder",
    "Placed",
    "Trade",
    "Update",
    "Venue",
    "side_name",
]

_PLACE_ORDER = int(CommandKind.PLACE_ORDER)
_ACCEPTED = int(EventKind.ACCEPTED)
_PLACE, _TRIGGER = PLACE_LAYOUT, TRIGGER_LAYOUT  # (order_records: one layout each)
_PLACE_TRIGGER = int(CommandKind.PLACE_TRIGGER)
# cancel / amend / cancel-all: kind, account, instrument, order id, price, quantity
_TARGET = codec.record_struct(
    COMMAND_DTYPE, ("kind", "account", "instrument", "order_id", "price_ticks", "qty_lots")
)
# AMEND_TRIGGER: kind, account, trigger order id, limit price, quantity, new trigger value
_AMEND_TRIGGER = codec.record_struct(
    COMMAND_DTYPE,
    ("kind", "account", "order_id", "price_ticks", "qty_lots", "new_trigger_ticks"),
)
# both pack from the command kind on (the sequencer stamps seq and ts_ns before it)
_BODY_AT = codec.header_offset(COMMAND_DTYPE, ("kind",))
assert codec.header_offset(COMMAND_DTYPE, ("kind", "account")) == _BODY_AT


class Venue(DeferredBatches):
    """The gateway's state around one ``Exchange`` (see the module docstring)."""

    def __init__(
        self,
        exchange: Exchange,
        catalog: Catalog,
        *,
        history: int = 10_000,
        closed_orders: int = 200_000,
        labels: SharedLabels | None = None,
    ) -> None:
        self._limits: dict[int, tuple[int, int]] = {}  # ``order_limits``
        self._buffer = bytearray(RECORD_BYTES)
        self._command = np.frombuffer(self._buffer, dtype=COMMAND_DTYPE)
        #: told of the records ``submit_inputs`` sequences (the operator's index sources)
        self.input_watchers: list[Callable[[np.ndarray], None]] = []
        super().__init__(
            exchange, catalog, history=history, closed_orders=closed_orders, labels=labels
        )

    def order_limits(self, instrument: int) -> tuple[int, int]:
        """``(max_lots, max_price_ticks)`` an order on ``instrument`` may carry: the
        engine's order size cap and the instrument's price cap (fixed when it is listed;
        memoised). The gateway refuses beyond them before packing, as the engine would."""
        limits = self._limits.get(instrument)
        if limits is None:
            engine = self.exchange.engine
            max_lots = int(engine.config.max_order_lots)
            max_ticks = query.max_price_ticks(engine.state, instrument)
            if max_ticks <= 0:  # not (yet) listed here: the engine decides
                return max_lots, 2**63 - 1
            limits = self._limits[instrument] = (max_lots, max_ticks)
        return limits

    # ---- trading ----

    def _submit(self, layout: struct.Struct, *values: int) -> np.ndarray:
        """Sequence one command whose bytes from its kind on are ``layout.pack(*values)``
        (the structured-field setters cost a microsecond each; one ``pack_into`` does all)."""
        try:
            layout.pack_into(self._buffer, _BODY_AT, *values)
        except struct.error:  # a value outside its field (int64 prices, quantities)
            raise invalid_params(
                "amount" if layout is _PLACE else "order", "out of range"
            ) from None
        try:
            return self.exchange.submit(self._command)
        except OutcomeUnknown as unknown:
            self._unresolved(unknown, [self._pending])
            order_id = int(self._command["order_id"][0])
            raise outcome_unknown({"order_id": order_id} if order_id else {}) from None

    def place(
        self,
        account: int,
        spec: InstrumentSpec,
        side: str,
        qty_lots: int,
        price_ticks: int = 0,
        *,
        order_type: str = "limit",
        time_in_force: str = "gtc",
        post_only: bool = False,
        reject_post_only: bool = False,
        reduce_only: bool = False,
        label: str = "",
    ) -> tuple[OrderRecord, list[Trade]]:
        """Place an order; returns its record and the trades it took part in. Raises
        ``RpcError`` with the mapped code when the engine rejects it."""
        flags = (
            (OrderFlag.POST_ONLY if post_only else 0)
            | (OrderFlag.REJECT_POST_ONLY if reject_post_only else 0)
            | (OrderFlag.REDUCE_ONLY if reduce_only else 0)
        )
        order = PlaceOrder(
            account,
            spec.instrument,
            SIDES[side],
            qty_lots,
            price_ticks,
            order_type,
            time_in_force,
            flags,
            label,
        )
        (result,) = self.place_many([order])
        if isinstance(result, Exception):
            raise result
        return result

    def place_many(self, orders: list[PlaceOrder]) -> Iterator[Placed | RpcError | Exception]:
        """Sequence ``orders`` as ONE batch (one compiled engine call: the per-call overhead
        dominates single orders), then yield each order's result in turn: its record and
        trades, or the mapped ``RpcError`` of a reject. An order's events are applied (and
        the listeners notified) when its result is taken, so a caller can answer an order
        before the notifications it caused; the caller must exhaust the iterator. When
        every listener is ``mergeable`` at the call (``merges_batches``: no subscriber
        wants each order's notifications), they are told once, as the last result is
        taken, with one
        ``Update`` merging the batch's: its ``orders`` (each changed record once), all
        ``trades`` in order, the union of the touched sets (``first_*``: the last order's).
        That saves an ``Update`` and the listener calls per order. The
        outcome is the same as placing the orders one by one in this order. Failures are
        per order: one whose fields do not fit the command record (checked by packing it)
        is answered -32602 and not sequenced, the others go on; an exception while walking
        one order's events is that order's result. An order with ``link_type`` is the main
        order of a linked group: the group is ONE PLACE_LINKED command (a header and its
        legs, ``linked_orders.pack``), answered as one order (its main order's record, or
        the group's reject) and failing alone. Cost: one engine call, O(events) Python."""
        size = RECORD_BYTES
        buffer = bytearray(size * len(orders))
        pack = _PLACE.pack_into
        types, tifs = ORDER_TYPE_CODES, TIF_CODES  # plain ints: packing an enum costs more
        labels = self.labels
        failed: dict[int, RpcError] | None = None
        at = 0  # records packed
        heads: list[int] | None = None  # with a linked group: each order's first record
        for i, order in enumerate(orders):
            try:
                if order.link_type:
                    count = linked_orders.records(order)
                    # room for the group and one record for every order after it
                    missing = size * (at + count + len(orders) - i - 1) - len(buffer)
                    if missing > 0:
                        buffer.extend(bytes(missing))
                    linked_orders.pack(
                        buffer, at, order, labels.key if labels is not None else _no_key
                    )
                    if heads is None:  # every order before took one record
                        heads = list(range(at))
                    heads.append(at)
                    at += count
                    continue
                if heads is not None:
                    heads.append(at)
                if order.trigger_type:
                    _TRIGGER.pack_into(
                        buffer,
                        size * at + _BODY_AT,
                        _PLACE_TRIGGER,
                        order.side,
                        types[order.order_type],
                        tifs[order.time_in_force],
                        order.flags,
                        order.trigger_type,
                        order.trigger_source,
                        order.account,
                        order.instrument,
                        order.trigger_ticks,
                        order.price_ticks,
                        order.qty_lots,
                        labels.key(order.label) if labels is not None and order.label else 0,
                    )
                    at += 1
                    continue
                pack(
                    buffer,
                    size * at + _BODY_AT,
                    _PLACE_ORDER,
                    order.side,
                    types[order.order_type],
                    tifs[order.time_in_force],
                    order.flags,
                    order.account,
                    order.instrument,
                    order.price_ticks,
                    order.qty_lots,
                    labels.key(order.label) if labels is not None and order.label else 0,
                )
            except (struct.error, KeyError, TypeError):
                # the gateway checks ranges first; an order that still does not fit its
                # record fails alone (its slot is overwritten by the next, or cut off)
                if heads and heads[-1] == at:
                    heads.pop()
                if failed is None:
                    failed = {}
                failed[i] = invalid_params("order", "a field is out of range")
                continue
            at += 1
        if labels is not None:
            labels.flush()
        if at == 0:
            return iter([failed[i] for i in range(len(orders))]) if failed else iter(())
        if len(buffer) > size * at:
            del buffer[size * at :]
        sequenced = (
            orders
            if failed is None
            else [order for i, order in enumerate(orders) if i not in failed]
        )
        commands = np.frombuffer(buffer, dtype=COMMAND_DTYPE)
        merge = self.merges_batches()
        try:
            events = self.exchange.submit(commands)
        except OutcomeUnknown as unknown:
            self._unresolved(unknown, _record_pendings(sequenced))
            return iter(
                [
                    failed[i]
                    if failed is not None and i in failed
                    else outcome_unknown({"label": o.label} if o.label else {})
                    for i, o in enumerate(orders)
                ]
            )
        # a submission can come back in several engine batches (others' in between): each
        # command has its own stamped seq, not first + position
        seqs, stamps_ms = commands["seq"].tolist(), (commands["ts_ns"] // 1_000_000).tolist()
        if heads is not None:  # a group's events carry its header's seq; its legs' none
            seqs, stamps_ms = [seqs[h] for h in heads], [stamps_ms[h] for h in heads]
        return self._results(
            orders,
            seqs,
            events.view(np.int64).reshape(-1, 8).tolist(),
            merge,
            stamps_ms,
            failed,
        )

    def _results(
        self,
        orders: list[PlaceOrder],
        seqs: list[int],
        rows: list[list[int]],
        merge: bool,
        stamps_ms: list[int],
        failed: dict[int, RpcError] | None,
    ) -> Iterator[Placed | RpcError | Exception]:
        start, total = 0, len(rows)
        pendings = self._pendings
        deferred = self.deferred
        # a batch of orders emits no MARK / INDEX events: every trade of it reads the
        # same post-batch mark and index (the walk runs after the engine call)
        prices: dict[int, tuple[int, int]] = {}
        merged = Update() if merge else None
        last = seqs[-1]
        walk, record_of = self._walk, self._record
        packed = iter(zip(seqs, stamps_ms, strict=True))
        for i, order in enumerate(orders):
            if failed is not None and i in failed:  # never sequenced
                yield failed[i]
                continue
            seq, now = next(packed)
            if deferred and deferred[0].first_seq < seq and self.walk_deferred(seq):
                prices.clear()  # others' batches may have moved marks
            end = start
            while end < total and rows[end][0] == seq:
                end += 1
            key = (order.order_type, order.time_in_force, order.flags, order.label)
            pending = pendings.get(key) if not order.link_type else GroupPending.of(order)
            if pending is None:
                pending = Pending(
                    order.order_type, TIF_NAMES[order.time_in_force], order.flags, order.label
                )
                if not order.label:  # unlabelled kinds are few: keep them
                    pendings[key] = pending
            try:
                if merged is None:
                    update = walk(rows[start:end], pending, now, prices)
                    trades = update.trades
                else:
                    before = len(merged.trades)
                    update = walk(rows[start:end], pending, now, prices, merged)
                    trades = merged.trades[before:] if len(merged.trades) > before else []
            except Exception as error:  # a bug: this order's answer, not its batch's
                update, trades = None, []
                outcome: Placed | RpcError | Exception = error
            head = rows[start][1] if end > start else 0
            start = end
            if merged is not None and seq == last:  # before the last result is taken
                for listener in self.listeners:
                    listener(merged)
            if update is None:
                yield outcome
            elif update.first_kind != _ACCEPTED:
                if order.link_type:  # naming the group's order the core refused
                    yield linked_orders.rejected(update.first_reason, head)
                else:
                    yield rpc_error_for(update.first_reason)
            else:
                order_id = update.first_order
                record = update.last_placed  # (a place command accepts one order: its own)
                if record is None or record.order_id != order_id:
                    record = record_of(order_id)
                yield record, (own_trades(trades, order_id) if trades else [])
        if deferred:
            self.walk_deferred()

    def edit(
        self, account: int, order_id: int, amount_lots: int, price_ticks: int | None
    ) -> tuple[OrderRecord, list[Trade]]:
        """Deribit's edit: ``amount_lots`` is the new total amount (filled included)."""
        record = self._open_record(account, order_id)
        remaining = amount_lots - record.filled_lots
        if remaining <= 0:
            raise RpcError(
                INVALID_AMOUNT,
                "invalid_amount",
                {"param": "amount", "reason": "not above the filled amount"},
            )
        price = record.price_ticks if price_ticks is None else price_ticks
        update = self.apply(
            self._submit(_TARGET, CommandKind.AMEND_ORDER, account, 0, order_id, price, remaining),
            self._stamped_ms(),
        )
        self._accepted(update)
        return self._record(order_id), own_trades(update.trades, order_id)

    def amend_trigger(
        self, account: int, order_id: int, qty_lots: int, price_ticks: int, trigger_ticks: int
    ) -> OrderRecord:
        """Edit an untriggered trigger order (one AMEND_TRIGGER command): its quantity, its
        limit price (limit types; 0 otherwise) and its trigger price (a trailing stop: its
        offset). It keeps its id and time priority; the engine checks the new terms as at
        placement and refuses a trigger order that has fired or is queued to fire."""
        self._open_record(account, order_id)
        update = self.apply(
            self._submit(
                _AMEND_TRIGGER,
                CommandKind.AMEND_TRIGGER,
                account,
                order_id,
                price_ticks,
                qty_lots,
                trigger_ticks,
            ),
            self._stamped_ms(),
        )
        self._accepted(update)
        return self._record(order_id)

    def cancel(self, account: int, order_id: int) -> OrderRecord:
        self._open_record(account, order_id)
        self._accepted(
            self.apply(
                self._submit(_TARGET, CommandKind.CANCEL_ORDER, account, 0, order_id, 0, 0),
                self._stamped_ms(),
            )
        )
        return self._record(order_id)

    def cancel_all(self, account: int, instrument: int | None = None) -> int:
        kind = CommandKind.CANCEL_ALL if instrument is None else CommandKind.CANCEL_ALL_INSTRUMENT
        update = self.apply(
            self._submit(_TARGET, kind, account, instrument or 0, 0, 0, 0), self._stamped_ms()
        )
        self._accepted(update)
        return update.first_qty

    @staticmethod
    def _accepted(update: Update) -> int:
        """The order id of an accepted command; raises the mapped ``RpcError`` otherwise."""
        if update.first_kind != EventKind.ACCEPTED:
            raise rpc_error_for(update.first_reason)
        return update.first_order

    def mass_quote(self, account: int, quotes: list[Quote]) -> bool:
        return self.quote(account, quotes).accepted

    def quote(self, account: int, quotes: list[Quote], mmp_group: int = 0) -> CommandResult:
        """One MASS_QUOTE command (``private/mass_quote``): its result, events applied;
        ``mmp_group``: the MMP group code its fills count toward (0: default)."""
        self._pending = Pending("limit", "good_til_cancelled", int(OrderFlag.POST_ONLY), "")
        try:
            result = self.exchange.mass_quote(account, quotes, mmp_group=mmp_group)
        except OutcomeUnknown as unknown:
            self._unresolved(unknown, [self._pending])
            raise outcome_unknown({}) from None
        self.apply(result.events)
        return result

    # ---- market inputs (index prices, marks and risk arrays) ----

    def submit_inputs(self, commands: np.ndarray) -> np.ndarray:
        """Sequence INDEX / RISK_ARRAY (or any admin) records built by the oracle and the
        pricing service; returns the events."""
        try:
            events = self.exchange.submit(commands)
        except OutcomeUnknown as unknown:
            self._unresolved(unknown, [])
            raise
        self.apply(events)
        for watcher in self.input_watchers:
            watcher(commands)
        return events

    # ---- queries ----

    def open_orders(self, account: int, instruments: set[int] | None = None) -> list[OrderRecord]:
        return [
            record
            for record in self.exchange_open(account)
            if instruments is None or record.instrument in instruments
        ]

    def exchange_open(self, account: int) -> list[OrderRecord]:
        """Open orders of the account, oldest first (engine order of placement)."""
        result = []
        for info in self.exchange.open_orders(account):
            record = self.orders.get(info.order_id)
            if record is not None:
                result.append(record)
        if query.trigger_count(self.exchange.engine.state, account):
            for row in self.exchange.trigger_orders(account):  # untriggered, by placement
                record = self.orders.get(row["trigger_id"])
                if record is not None:
                    if record.trigger_offset_ticks:  # a trailing order's trigger moves
                        record.trigger_price_ticks = row["trigger_price_ticks"]
                        record.trigger_reference_ticks = row["reference_ticks"]
                    result.append(record)
        return result

    def _stamped_ms(self) -> int:
        """The sequencer time the exchange stamped on the last ``_submit`` command (a
        gateway worker's clock may already be past it: others' batches)."""
        return int(self._command["ts_ns"][0]) // 1_000_000


def _no_key(label: str) -> int:
    """A label's key when labels do not travel in commands (one process): none."""
    return 0


def _record_pendings(orders: list[PlaceOrder]) -> list[Pending]:
    """What the venue knows of each command record of ``orders`` (a linked group: its
    header's, then a placeholder per leg), for ``_unresolved``."""
    pendings: list[Pending] = []
    for o in orders:
        if o.link_type:
            pendings.append(GroupPending.of(o))
            pendings.extend(Pending() for _ in range(linked_orders.records(o) - 1))
        else:
            pendings.append(Pending(o.order_type, TIF_NAMES[o.time_in_force], o.flags, o.label))
    return pendings
