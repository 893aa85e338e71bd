"""``Venue``: the gateway's view of an ``Exchange`` — order records with their history, public
and private trades, marks and index prices — kept up to date from the engine's events.

Every mutation goes through the venue, which submits the command, walks its events once and
hands an ``Update`` (orders changed, trades, books touched, accounts touched) to its
listeners (the subscription fan-out, metrics). One thread drives it (the server's event
loop), as one sequencer drives an ``Exchange``.

Order records outlive the engine's orders: filled and cancelled orders stay queryable
(``get_order_state``) for the last ``closed_orders`` of them. On a restart the open orders
are rebuilt from the engine state; closed orders and trade history start empty (they are
shell state, not journaled).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from derivex.core import layout as L
from derivex.core.records import (
    COMMAND_DTYPE,
    RECORD_BYTES,
    SYSTEM_ACCOUNTS,
    CommandKind,
    EventKind,
    OrderFlag,
    OrderType,
    Reason,
    Side,
    TimeInForce,
    Underlying,
)
from derivex.exchange import Exchange, Quote
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.errors import (
    CANCEL_REASONS,
    INVALID_AMOUNT,
    NOT_OPEN_ORDER,
    ORDER_NOT_FOUND,
    OUTCOME_UNKNOWN,
    RpcError,
    invalid_params,
    rpc_error_for,
)
from derivex.gateway.labels import SharedLabels
from derivex.gateway.option_views import option_view

TIF_NAMES = {"gtc": "good_til_cancelled", "ioc": "immediate_or_cancel", "fok": "fill_or_kill"}

# command bytes 16..63 (see COMMAND_DTYPE): kind, side, order type, tif, flags, (stp, count),
# account, instrument, (order id), price, quantity, label
_PLACE = struct.Struct("<BBBBB3xII8xqqQ")
# kind, (side..count), account, instrument, order id, price, quantity, (label)
_TARGET = struct.Struct("<B7xIIQqq8x")
SIDES = {"buy": Side.BUY, "sell": Side.SELL}
ORDER_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
TIME_IN_FORCE = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
# command record codes -> the names of ``OrderRecord`` (batches of other workers)
_ORDER_TYPE_NAMES = {int(code): name for name, code in ORDER_TYPES.items()}
_TIF_NAMES_BY_CODE = {int(code): TIF_NAMES[name] for name, code in TIME_IN_FORCE.items()}
# plain ints for the event walk (an enum member lookup per comparison costs ~50 ns each)
_FILLED, _ACCEPTED = int(EventKind.FILLED), int(EventKind.ACCEPTED)
_AMENDED = int(EventKind.AMENDED)
_CANCELLED, _EXPIRED = int(EventKind.CANCELLED), int(EventKind.EXPIRED)
_POSITION, _BALANCE = int(EventKind.POSITION), int(EventKind.BALANCE)
_MARK, _INDEX = int(EventKind.MARK), int(EventKind.INDEX)
_LIQUIDATION = int(EventKind.LIQUIDATION)
_PLACE_ORDER, _MASS_QUOTE = int(CommandKind.PLACE_ORDER), int(CommandKind.MASS_QUOTE)
_POST_ONLY, _REJECT_POST_ONLY = int(OrderFlag.POST_ONLY), int(OrderFlag.REJECT_POST_ONLY)
_REDUCE_ONLY = int(OrderFlag.REDUCE_ONLY)
_UNDERLYING = {member.name: int(member) for member in Underlying}
_GREEK_WORDS = (L.I_DELTA, L.I_GAMMA, L.I_VEGA, L.I_THETA, L.I_RHO)
_ORDER_TYPE_CODES = {name: int(kind) for name, kind in ORDER_TYPES.items()}
_TIF_CODES = {name: int(tif) for name, tif in TIME_IN_FORCE.items()}


@dataclass(slots=True)
class OrderRecord:
    order_id: int
    account: int
    instrument: int
    side: int
    order_type: str = "limit"
    time_in_force: str = "good_til_cancelled"
    post_only: bool = False
    reject_post_only: bool = False
    reduce_only: bool = False
    quote: bool = False
    label: str = ""
    price_ticks: int = 0
    amount_lots: int = 0  # filled + remaining
    filled_lots: int = 0
    traded_value: int = 0  # sum of price_ticks x qty_lots of the fills (average price)
    fee_units: int = 0
    state: str = "open"  # open | filled | cancelled
    cancel_reason: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    replaced: bool = False
    # ``shapes.order``'s template for this record's kind (its fields fixed at creation),
    # kept once found: building the template key costs more than the rest of a look-up
    template: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def remaining_lots(self) -> int:
        return self.amount_lots - self.filled_lots if self.state == "open" else 0


@dataclass(slots=True)
class Trade:
    """One fill between a maker and a taker order."""

    trade_id: str
    trade_seq: int
    instrument: int
    timestamp_ms: int
    price_ticks: int
    qty_lots: int
    direction: int  # the taker's side
    tick_direction: int
    maker_account: int
    maker_order: int
    maker_fee_units: int
    taker_account: int
    taker_order: int
    taker_fee_units: int
    mark_ticks: int = 0
    index_ticks: int = 0


class Update:
    """What one command changed, for listeners: ``orders`` (id -> record, changed),
    ``trades``, ``books`` / ``accounts`` / ``marks`` touched (instrument or account ids),
    and the command's first event (``first_kind`` ACCEPTED / REJECTED, its reason, order
    id and quantity). A plain slotted class: one is built per order placed, and literal
    containers are cheaper than a dataclass's ``default_factory`` calls."""

    __slots__ = (
        "accounts",
        "books",
        "first_kind",
        "first_order",
        "first_qty",
        "first_reason",
        "last_placed",
        "marks",
        "orders",
        "trades",
    )

    def __init__(self) -> None:
        self.orders: dict[int, OrderRecord] = {}
        self.trades: list[Trade] = []
        self.books: set[int] = set()
        self.accounts: set[int] = set()
        self.marks: set[int] = set()
        self.first_kind = 0
        self.first_reason = 0
        self.first_order = 0
        self.first_qty = 0
        self.last_placed: OrderRecord | None = None  # the record the last ACCEPTED made


Placed = tuple[OrderRecord, list[Trade]]


class OutcomeUnknown(Exception):
    """Raised by an ``Exchange.submit`` that took the commands but cannot tell, in time,
    what became of them (the engine or the journal stalled after submission: a gateway
    worker of the multi-process runtime). ``first_position``: the position of the first
    command in the submitter's stream (the exchange's own numbering, handed back with the
    commands' batch when it arrives later: ``Venue.defer_frame``); ``count``: how many of
    the commands were handed on (the rest never will be)."""

    def __init__(self, message: str, first_position: int, count: int) -> None:
        super().__init__(message)
        self.first_position = first_position
        self.count = count


@dataclass(slots=True)
class Deferred:
    """A batch sequenced elsewhere (another gateway worker, or a submission of this one
    whose outcome was unknown), waiting to be walked in seq order with the venue's own."""

    first_seq: int
    commands: np.ndarray
    events: np.ndarray
    ts_ns: int
    first_position: int | None


@dataclass(slots=True)
class PlaceOrder:
    """An order to place, already checked and converted to engine units (``Venue.place`` /
    ``place_many``): ``side`` a ``Side``, ``time_in_force`` gtc / ioc / fok, ``flags``
    ``OrderFlag`` bits."""

    account: int
    instrument: int
    side: int
    qty_lots: int
    price_ticks: int = 0
    order_type: str = "limit"
    time_in_force: str = "gtc"
    flags: int = 0
    label: str = ""


@dataclass(slots=True)
class _Pending:
    """What the venue knows about the order it is about to place (the engine's events do
    not carry type, time in force or flags)."""

    order_type: str = "limit"
    time_in_force: str = "good_til_cancelled"
    flags: int = 0
    label: str = ""
    # the flags as the record's booleans (computed once, not per order)
    post_only: bool = field(init=False, default=False)
    reject_post_only: bool = field(init=False, default=False)
    reduce_only: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.post_only = bool(self.flags & _POST_ONLY)
        self.reject_post_only = bool(self.flags & _REJECT_POST_ONLY)
        self.reduce_only = bool(self.flags & _REDUCE_ONLY)


class Venue:
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
        self.exchange = exchange
        self.catalog = catalog
        #: told of every command's ``Update`` as its events are walked
        self.listeners: list[Callable[[Update], None]] = []
        #: listener -> whether it may, for now, be told of a ``place_many`` batch once, its
        #: orders' updates merged (a listener not in here always gets one per order)
        self.mergeable: dict[Callable[[Update], None], Callable[[], bool]] = {}
        #: told of every LIQUIDATION event as it is walked: (seq, instrument, account,
        #: stage, price_ticks, qty_lots, amount_units) (the operator dashboard's counts)
        self.liquidation_watchers: list[Callable[[int, int, int, int, int, int, int], None]] = []
        self.orders: dict[int, OrderRecord] = {}  # open orders
        # closed orders, oldest first, and their ids in closing order (the eviction queue:
        # a plain dict and a deque cost less per order than an OrderedDict's node, and
        # resize with shorter stalls)
        self.closed: dict[int, OrderRecord] = {}
        self._closed_queue: deque[int] = deque()
        self._closed_limit = closed_orders
        self._history = history
        self.public_trades: dict[int, deque[Trade]] = {}
        self.user_trades: dict[int, deque[Trade]] = {}
        self.user_closed: dict[int, deque[int]] = {}
        self.change_ids: dict[int, int] = {spec.instrument: 1 for spec in catalog}
        self.marks: dict[int, int] = {}
        self.indices: dict[int, int] = {}
        self.option_greeks: dict[int, dict[str, float]] = {}  # from the pricing service
        self.option_iv: dict[int, float] = {}
        self._trade_seq: dict[int, int] = {}
        self._last_price: dict[int, int] = {}
        self._pending = _Pending()
        self._pendings: dict[tuple[str, str, int, str], _Pending] = {}
        self._limits: dict[int, tuple[int, int]] = {}  # ``order_limits``
        self._buffer = bytearray(RECORD_BYTES)
        self._command = np.frombuffer(self._buffer, dtype=COMMAND_DTYPE)
        # batches sequenced elsewhere, in seq order, that the exchange met while it waited
        # for ours: walked before our commands that come after them (a fill of one of our
        # orders by another worker must find the order's record), the rest after ours
        self.deferred: deque[Deferred] = deque()
        # submission position -> what the venue knew of a command whose outcome was
        # unknown (its batch is walked with it when it arrives: the label stays)
        self.unresolved: dict[int, _Pending] = {}
        #: with several gateway workers: labels travel as keys in the commands (``labels``)
        self.labels = labels
        self.rebuild_open_orders()

    def order_limits(self, instrument: int) -> tuple[int, int]:
        """``(max_lots, max_price_ticks)`` an order on ``instrument`` may carry: the
        engine's order size cap and the instrument's price cap (fixed when it is listed;
        memoised). The gateway refuses beyond them before packing, as the engine would."""
        limits = self._limits.get(instrument)
        if limits is None:
            engine = self.exchange.engine
            max_lots = int(engine.config.max_order_lots)
            max_ticks = int(engine.state.ins_i8[instrument, L.I_MAX_PRICE])
            if max_ticks <= 0:  # not (yet) listed here: the engine decides
                return max_lots, 2**63 - 1
            limits = self._limits[instrument] = (max_lots, max_ticks)
        return limits

    # ---- clock ----

    def now_ms(self) -> int:
        return int(self.exchange.engine.state.counters[L.C_CLOCK_NS]) // 1_000_000

    # ---- trading ----

    def _submit(self, layout: struct.Struct, *values: int) -> np.ndarray:
        """Sequence one command whose bytes 16..63 are ``layout.pack(*values)`` (the
        structured-field setters cost a microsecond each; one ``pack_into`` does all)."""
        try:
            layout.pack_into(self._buffer, 16, *values)
        except struct.error:  # a value outside its field (int64 prices, quantities)
            raise invalid_params(
                "amount" if layout is _PLACE else "order", "out of range"
            ) from None
        try:
            return self.exchange.submit(self._command)
        except OutcomeUnknown as unknown:
            self._unresolved(unknown, [self._pending])
            order_id = int(self._command["order_id"][0])
            raise _outcome_unknown({"order_id": order_id} if order_id else {}) from None

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
        one order's events is that order's result. Cost: one engine call, O(events)
        Python."""
        size = RECORD_BYTES
        buffer = bytearray(size * len(orders))
        pack = _PLACE.pack_into
        types, tifs = _ORDER_TYPE_CODES, _TIF_CODES  # plain ints: packing an enum costs more
        labels = self.labels
        failed: dict[int, RpcError] | None = None
        at = 0  # records packed
        for i, order in enumerate(orders):
            try:
                pack(
                    buffer,
                    size * at + 16,
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
                if failed is None:
                    failed = {}
                failed[i] = invalid_params("order", "a field is out of range")
                continue
            at += 1
        if labels is not None:
            labels.flush()
        if at == 0:
            return iter([failed[i] for i in range(len(orders))]) if failed else iter(())
        if at < len(orders):
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
            self._unresolved(
                unknown,
                [
                    _Pending(o.order_type, TIF_NAMES[o.time_in_force], o.flags, o.label)
                    for o in sequenced
                ],
            )
            return iter(
                [
                    failed[i]
                    if failed is not None and i in failed
                    else _outcome_unknown({"label": o.label} if o.label else {})
                    for i, o in enumerate(orders)
                ]
            )
        # a submission can come back in several engine batches (others' in between): each
        # command has its own stamped seq, not first + position
        return self._results(
            orders,
            commands["seq"].tolist(),
            events.view(np.int64).reshape(-1, 8).tolist(),
            merge,
            (commands["ts_ns"] // 1_000_000).tolist(),
            failed,
        )

    def _unresolved(self, unknown: OutcomeUnknown, pendings: list[_Pending]) -> None:
        """Remember what the venue knew of commands whose outcome is unknown, until their
        batch arrives (``defer_frame`` with its position); walk what already did."""
        for k in range(min(unknown.count, len(pendings))):
            self.unresolved[unknown.first_position + k] = pendings[k]
        self.walk_deferred()

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
            pending = pendings.get(key)
            if pending is None:
                pending = _Pending(
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
            start = end
            if merged is not None and seq == last:  # before the last result is taken
                for listener in self.listeners:
                    listener(merged)
            if update is None:
                yield outcome
            elif update.first_kind != _ACCEPTED:
                yield rpc_error_for(update.first_reason)
            else:
                order_id = update.first_order
                record = update.last_placed  # (a place command accepts one order: its own)
                if record is None or record.order_id != order_id:
                    record = record_of(order_id)
                yield record, (_own_trades(trades, order_id) if trades else [])
        if deferred:
            self.walk_deferred()

    def merges_batches(self) -> bool:
        """Whether every listener may, now, take a batch's updates merged: what
        ``place_many`` decides when it is called (no listener is then told anything
        before the batch's last result is taken)."""
        mergeable = self.mergeable
        try:
            for listener in self.listeners:
                allowed = mergeable.get(listener)
                if allowed is None or not allowed():
                    return False
        except TypeError:  # an unhashable callable: not registered, so not mergeable
            return False
        return True

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
        return self._record(order_id), self._own_trades(update, order_id)

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
        self._pending = _Pending("limit", "good_til_cancelled", int(OrderFlag.POST_ONLY), "")
        try:
            result = self.exchange.mass_quote(account, quotes)
        except OutcomeUnknown as unknown:
            self._unresolved(unknown, [self._pending])
            raise _outcome_unknown({}) from None
        self.apply(result.events)
        return result.accepted

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
        return events

    def mark_ticks(self, instrument: int) -> int:
        value = self.exchange.mark(instrument)
        return value if value else self.marks.get(instrument, 0)

    def index_ticks(self, base: str) -> int:
        code = _UNDERLYING[base]
        # the engine's index (``Exchange.index`` reads the same word, and builds a record)
        price = int(self.exchange.engine.state.und_i8[code, L.U_INDEX])
        return price if price else self.indices.get(code, 0)

    def set_option_view(self, instrument: int, iv: float, greeks: dict[str, float]) -> None:
        """What the pricing service computed for an option (implied volatility in
        percent, Greeks per unit of the base), shown until the engine has the option's
        sequenced risk array (then ``mark_iv`` and ``greeks`` read the engine state)."""
        self.option_iv[instrument] = iv
        self.option_greeks[instrument] = greeks

    def mark_iv(self, instrument: int) -> float:
        """Implied volatility of the option's mark, percent: the engine's (from the last
        sequenced RISK_ARRAY: the same on every gateway worker after the same batches),
        else the pricing service's view."""
        view = self._engine_view(instrument)
        return view[0] if view is not None else self.option_iv.get(instrument, 0.0)

    def greeks(self, instrument: int) -> dict[str, float]:
        """Greeks per unit of the base, as ``mark_iv`` chooses its source."""
        view = self._engine_view(instrument)
        if view is not None:
            return view[1]
        return self.option_greeks.get(
            instrument, {"delta": 0.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0, "rho": 0.0}
        )

    def _engine_view(self, instrument: int) -> tuple[float, dict[str, float]] | None:
        state = self.exchange.engine.state.ins_i8
        spec = self.catalog.by_id.get(instrument)
        if spec is None or not 0 <= instrument < len(state):
            return None
        row = state[instrument]
        iv_ppm = int(row[L.I_MARK_IV])
        if not iv_ppm:
            return None
        return option_view(spec, iv_ppm, [int(row[k]) for k in _GREEK_WORDS])

    def last_price_ticks(self, instrument: int) -> int:
        return self._last_price.get(instrument, 0)

    # ---- queries ----

    def order(self, account: int, order_id: int) -> OrderRecord:
        """The account's order (open or recently closed); 10004 for anyone else's."""
        record = self.orders.get(order_id) or self.closed.get(order_id)
        if record is None or record.account != account:
            raise RpcError(ORDER_NOT_FOUND, "order_not_found", {"param": "order_id"})
        return record

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
        return result

    def closed_orders(self, account: int) -> list[OrderRecord]:
        ids = self.user_closed.get(account, ())
        return [self.closed[i] for i in reversed(ids) if i in self.closed]

    def trades_of(self, account: int) -> list[Trade]:
        return list(self.user_trades.get(account, ()))

    # ---- events ----

    def apply(self, events: np.ndarray, now_ms: int | None = None) -> Update:
        """Walk one command's (or one batch's) events: update records and history, then
        notify the listeners. ``now_ms``: the command's sequencer time (default: the
        engine's clock). Cost: O(events); fields are decoded from the records' 64-bit
        words (one ``tolist`` call, no per-field numpy access)."""
        if not len(events):
            if self.deferred:
                self.walk_deferred()
            return Update()
        rows = events.view(np.int64).reshape(-1, 8).tolist()
        if self.deferred:  # others' batches sequenced before this one first
            self.walk_deferred(rows[0][0])
        update = self._walk(rows, self._pending, self.now_ms() if now_ms is None else now_ms)
        if self.deferred:
            self.walk_deferred()
        return update

    def _stamped_ms(self) -> int:
        """The sequencer time the exchange stamped on the last ``_submit`` command (a
        gateway worker's clock may already be past it: others' batches)."""
        return int(self._command["ts_ns"][0]) // 1_000_000

    def defer_frame(
        self,
        commands: np.ndarray,
        events: np.ndarray,
        ts_ns: int,
        first_position: int | None = None,
    ) -> None:
        """Queue a batch sequenced elsewhere (another worker's; or, with
        ``first_position``, this submitter's commands from that position on whose outcome
        was unknown) to be walked in seq order with the venue's own commands: before a
        later own command's events, or by ``walk_deferred``. Cost O(1) (a batch arriving
        out of order, which only a late batch of ours can, sorts the queue)."""
        entry = Deferred(int(commands["seq"][0]), commands, events, ts_ns, first_position)
        queue = self.deferred
        queue.append(entry)
        if len(queue) > 1 and queue[-2].first_seq > entry.first_seq:
            ordered = sorted(queue, key=lambda d: d.first_seq)
            queue.clear()  # in place: a walk in progress holds this deque
            queue.extend(ordered)

    def walk_deferred(self, before_seq: int | None = None) -> int:
        """Walk the queued batches (those sequenced before ``before_seq``; None: all),
        oldest first. Returns how many. Cost: ``apply_frame``'s per batch."""
        queue, count = self.deferred, 0
        while queue and (before_seq is None or queue[0].first_seq < before_seq):
            entry = queue.popleft()
            self.apply_frame(entry.commands, entry.events, entry.ts_ns, entry.first_position)
            count += 1
        return count

    def apply_frame(
        self,
        commands: np.ndarray,
        events: np.ndarray,
        ts_ns: int | None = None,
        first_position: int | None = None,
    ) -> None:
        """Walk a batch sequenced by someone else (another gateway worker): command by
        command, each order's type, time in force and flags read from its command record
        (the label from its key in the record, with ``labels``; for a batch of this
        submitter's own whose outcome was unknown, ``first_position`` finds what the
        venue kept of them). ``ts_ns``: the batch's sequencer time (default: the
        engine's clock). Cost: O(commands + events)."""
        unresolved = self.unresolved if first_position is not None else None
        if not len(events):
            if unresolved:
                for k in range(len(commands)):
                    unresolved.pop(first_position + k, None)  # type: ignore[operator]
            return
        rows = events.view(np.int64).reshape(-1, 8).tolist()
        seqs = commands["seq"].tolist()
        kinds, tifs = commands["order_type"].tolist(), commands["tif"].tolist()
        flags = commands["flags"].tolist()
        labels = self.labels
        # the label word of orders only (other commands' records alias other fields there)
        keys = commands["label"].tolist() if labels is not None else None
        commands_of = commands["kind"].tolist() if labels is not None else None
        now = self.now_ms() if ts_ns is None else ts_ns // 1_000_000
        start, total = 0, len(rows)
        for k, seq in enumerate(seqs):
            end = start
            while end < total and rows[end][0] == seq:
                end += 1
            pending = None
            if unresolved:
                pending = unresolved.pop(first_position + k, None)  # type: ignore[operator]
            if end > start:
                if pending is None:
                    label = ""
                    if (
                        keys is not None
                        and commands_of is not None
                        and keys[k]
                        and (commands_of[k] in (_PLACE_ORDER, _MASS_QUOTE))
                    ):
                        label = labels.name(keys[k])  # type: ignore[union-attr]
                    pending = _Pending(
                        _ORDER_TYPE_NAMES.get(kinds[k], "limit"),
                        _TIF_NAMES_BY_CODE.get(tifs[k], "good_til_cancelled"),
                        flags[k],
                        label,
                    )
                self._walk(rows[start:end], pending, now)
            start = end

    def _walk(
        self,
        rows: list[list[int]],
        pending: _Pending,
        now: int,
        prices: dict[int, tuple[int, int]] | None = None,
        into: Update | None = None,
    ) -> Update:
        """Apply one command's (or batch's) event rows and tell the listeners; returns
        the ``Update``. ``prices``: a cache of the trades' (mark, index) per instrument,
        for walks during which neither can change (None: read for every trade).
        ``into``: add to this (merged) update instead, and tell nobody."""
        update = Update() if into is None else into
        # the books this command touched (a change id each)
        books = update.books if into is None else set()
        if not rows:
            return update
        maker: tuple[int, int, int] | None = None
        fill_index = 0
        head = rows[0][1]
        update.first_kind, update.first_reason = head & 0xFF, (head >> 32) & 0xFFFF
        update.first_order, update.first_qty = rows[0][3], rows[0][5]
        update.last_placed = None
        orders, changed, accounts = self.orders, update.orders, update.accounts
        for seq, word, ids, order_id, price, qty, fee, remaining in rows:
            kind = word & 0xFF
            account = ids & 0xFFFFFFFF
            if kind in (_POSITION, _BALANCE):  # the commonest after fills
                accounts.add(account)
                continue
            instrument = ids >> 32
            if kind == _FILLED:
                record = orders.get(order_id)
                if record is not None:
                    record.filled_lots += qty
                    record.traded_value += price * qty
                    record.fee_units += fee
                    record.updated_ms = now
                    if remaining == 0:
                        self._close(record, "filled", "")
                    changed[order_id] = record
                accounts.add(account)
                if maker is None:
                    maker = (account, order_id, fee)
                else:
                    fill_index += 1
                    update.trades.append(
                        self._trade(
                            seq,
                            fill_index,
                            instrument,
                            now,
                            price,
                            qty,
                            (word >> 16) & 0xFF,
                            maker,
                            account,
                            order_id,
                            fee,
                            prices,
                        )
                    )
                    maker = None
                books.add(instrument)
            elif kind == _ACCEPTED:
                command = (word >> 8) & 0xFF
                if command == _PLACE_ORDER or (command == _MASS_QUOTE and order_id):
                    record = OrderRecord(
                        order_id,
                        account,
                        instrument,
                        (word >> 16) & 0xFF,
                        pending.order_type,
                        pending.time_in_force,
                        pending.post_only,
                        pending.reject_post_only,
                        pending.reduce_only,
                        command == _MASS_QUOTE,
                        pending.label,
                        price,
                        qty,
                        0,
                        0,
                        0,
                        "open",
                        "",
                        now,
                        now,
                    )
                    self.orders[order_id] = record
                    update.orders[order_id] = record
                    update.last_placed = record
                    books.add(instrument)
                    update.accounts.add(account)
            elif kind in (_CANCELLED, _EXPIRED):
                record = self.orders.get(order_id)
                if record is not None:
                    record.updated_ms = now
                    self._close(record, "cancelled", _cancel_reason((word >> 32) & 0xFFFF))
                    update.orders[order_id] = record
                books.add(instrument)
                update.accounts.add(account)
            elif kind == _AMENDED:
                record = self.orders.get(order_id)
                if record is not None:
                    record.price_ticks = price
                    record.amount_lots = record.filled_lots + qty
                    record.updated_ms = now
                    record.replaced = True
                    update.orders[order_id] = record
                books.add(instrument)
                update.accounts.add(account)
            elif kind == _MARK:
                self.marks[instrument] = price
                update.marks.add(instrument)
            elif kind == _INDEX:
                self.indices[instrument] = price
            elif kind == _LIQUIDATION:
                for watcher in self.liquidation_watchers:  # stage in ``a``, money in ``b``
                    watcher(seq, instrument, account, fee, price, qty, remaining)
        for instrument in books:
            self.change_ids[instrument] = self.change_ids.get(instrument, 0) + 1
        if into is None:
            for listener in self.listeners:
                listener(update)
        elif books:
            into.books |= books
        return update

    def _trade(
        self,
        seq: int,
        index: int,
        instrument: int,
        now: int,
        price: int,
        qty: int,
        side: int,
        maker: tuple[int, int, int],
        taker_account: int,
        taker_order: int,
        taker_fee: int,
        prices: dict[int, tuple[int, int]] | None,
    ) -> Trade:
        """Record the trade of a maker fill (``maker``: account, order, fee) and the taker
        fill after it: sequence, tick direction, the public and both accounts' histories."""
        trade_seq = self._trade_seq.get(instrument, 0) + 1
        self._trade_seq[instrument] = trade_seq
        last = self._last_price.get(instrument, price)
        tick_direction = 0 if price > last else 2 if price < last else 1
        self._last_price[instrument] = price
        marks = prices.get(instrument) if prices is not None else None
        if marks is None:
            spec = self.catalog.by_id.get(instrument)
            marks = (
                self.mark_ticks(instrument),
                self.index_ticks(spec.base) if spec is not None else 0,
            )
            if prices is not None:
                prices[instrument] = marks
        maker_account = maker[0]
        trade = Trade(
            f"{seq}-{index}",
            trade_seq,
            instrument,
            now,
            price,
            qty,
            side,
            tick_direction,
            maker_account,
            maker[1],
            maker[2],
            taker_account,
            taker_order,
            taker_fee,
            marks[0],
            marks[1],
        )
        size = self._history
        history = self.public_trades.get(instrument)
        if history is None:
            history = self.public_trades[instrument] = deque(maxlen=size)
        history.append(trade)
        users = self.user_trades
        history = users.get(maker_account)
        if history is None:
            history = users[maker_account] = deque(maxlen=size)
        history.append(trade)
        if taker_account != maker_account:
            history = users.get(taker_account)
            if history is None:
                history = users[taker_account] = deque(maxlen=size)
            history.append(trade)
        return trade

    def _close(self, record: OrderRecord, state: str, reason: str) -> None:
        record.state = state
        record.cancel_reason = reason
        order_id = record.order_id
        self.orders.pop(order_id, None)
        closed = self.closed
        count = len(closed)
        closed[order_id] = record
        if len(closed) != count:  # a new key (one hash probe, not two)
            self._closed_queue.append(order_id)
        history = self.user_closed.get(record.account)
        if history is None:
            history = self.user_closed[record.account] = deque(maxlen=1000)
        history.append(order_id)
        if len(closed) > self._closed_limit:
            del closed[self._closed_queue.popleft()]

    def _record(self, order_id: int) -> OrderRecord:
        record = self.orders.get(order_id) or self.closed.get(order_id)
        assert record is not None, order_id
        return record

    def _open_record(self, account: int, order_id: int) -> OrderRecord:
        record = self.orders.get(order_id)
        if record is None or record.account != account:
            closed = self.closed.get(order_id)
            if closed is not None and closed.account == account:
                raise RpcError(NOT_OPEN_ORDER, "not_open_order", {"param": "order_id"})
            raise RpcError(ORDER_NOT_FOUND, "order_not_found", {"param": "order_id"})
        return record

    @staticmethod
    def _own_trades(update: Update, order_id: int) -> list[Trade]:
        return _own_trades(update.trades, order_id)

    def rebuild_open_orders(self) -> None:
        """Records for the orders resting in the engine (after a recovery)."""
        state = self.exchange.engine.state
        now = self.now_ms()
        for account in range(SYSTEM_ACCOUNTS, int(state.counters[L.C_ACCOUNT_HWM])):
            for info in self.exchange.open_orders(account):
                if info.order_id in self.orders:
                    continue
                self.orders[info.order_id] = OrderRecord(
                    info.order_id,
                    account,
                    info.instrument,
                    int(info.side),
                    post_only=bool(info.flags & OrderFlag.POST_ONLY),
                    reduce_only=bool(info.flags & OrderFlag.REDUCE_ONLY),
                    quote=bool(info.flags & OrderFlag.QUOTE),
                    label=self.labels.name(info.label) if self.labels is not None else "",
                    price_ticks=info.price_ticks,
                    amount_lots=info.remaining_lots,
                    created_ms=now,
                    updated_ms=now,
                )


def _outcome_unknown(data: dict[str, Any]) -> RpcError:
    """The reply to a command whose outcome is unknown (see ``OutcomeUnknown``): the
    client queries the order by ``order_id`` or ``label`` to learn it."""
    return RpcError(OUTCOME_UNKNOWN, "timed_out", {"reason": "outcome_unknown", **data})


def _own_trades(trades: list[Trade], order_id: int) -> list[Trade]:
    return [t for t in trades if order_id in (t.maker_order, t.taker_order)]


def _cancel_reason(reason: int) -> str:
    if reason in CANCEL_REASONS:
        return CANCEL_REASONS[reason]
    try:
        return Reason(reason).name.lower()
    except ValueError:
        return ""


def side_name(side: int) -> str:
    return "buy" if side == Side.BUY else "sell"
