"""The gateway's order records and what the venue hands its listeners: ``OrderRecord`` (an
order with its history, outliving the engine's order), ``Trade``, ``Update`` (what one
command changed), ``PlaceOrder`` (an order to place, in engine units), and the names the
API uses for the engine's codes (sides, order types, time in force, cancel reasons).

Plain slotted classes: one record is built per order placed, one update per command.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from derivex.core import codec
from derivex.core.records import (
    COMMAND_DTYPE,
    OrderFlag,
    OrderType,
    Reason,
    Side,
    TimeInForce,
)
from derivex.gateway.errors import (
    CANCEL_REASONS,
    NOT_OPEN_ORDER,
    ORDER_NOT_FOUND,
    OUTCOME_UNKNOWN,
    RpcError,
)

TIF_NAMES = {"gtc": "good_til_cancelled", "ioc": "immediate_or_cancel", "fok": "fill_or_kill"}
SIDES = {"buy": Side.BUY, "sell": Side.SELL}
ORDER_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
TIME_IN_FORCE = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
# command record codes -> the names of ``OrderRecord`` (batches of other workers)
ORDER_TYPE_NAMES = {int(code): name for name, code in ORDER_TYPES.items()}
TIF_NAMES_BY_CODE = {int(code): TIF_NAMES[name] for name, code in TIME_IN_FORCE.items()}
# names -> plain int codes (packing an enum member costs more than an int)
ORDER_TYPE_CODES = {name: int(kind) for name, kind in ORDER_TYPES.items()}
TIF_CODES = {name: int(tif) for name, tif in TIME_IN_FORCE.items()}

# the command layouts of one order (``Venue.place_many`` and the legs of a linked group):
# a PLACE_ORDER's fields after the header the sequencer stamps (seq, ts_ns)
PLACE_LAYOUT = codec.record_struct(
    COMMAND_DTYPE,
    (
        "kind",
        "side",
        "order_type",
        "tif",
        "flags",
        "account",
        "instrument",
        "price_ticks",
        "qty_lots",
        "label",
    ),
)
# a PLACE_TRIGGER: the same, with the trigger's type, source and price (or offset)
TRIGGER_LAYOUT = codec.record_struct(
    COMMAND_DTYPE,
    (
        "kind",
        "side",
        "order_type",
        "tif",
        "flags",
        "trigger_type",
        "trigger_source",
        "account",
        "instrument",
        "trigger_price_ticks",
        "price_ticks",
        "qty_lots",
        "label",
    ),
)
_POST_ONLY, _REJECT_POST_ONLY = int(OrderFlag.POST_ONLY), int(OrderFlag.REJECT_POST_ONLY)
_REDUCE_ONLY, _MMP = int(OrderFlag.REDUCE_ONLY), int(OrderFlag.MMP)


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
    # counts toward market-maker protection: placed with the mmp flag, or a mass-quote leg
    # (the engine counts every quote toward its MMP group: core/mmp.py)
    mmp: bool = False
    # trigger orders and the orders they spawn (gateway/trigger_orders.py)
    trigger: str = ""  # last_price / index_price / mark_price
    trigger_price_ticks: int = 0
    trigger_offset_ticks: int = 0
    trigger_reference_ticks: int = 0
    triggered: bool = False
    trigger_order_id: int = 0  # of a spawned order: the trigger order that placed it
    spawned_order_id: int = 0  # of a fired trigger order: the order it placed
    # an order of an OTO / OCO / OTOCO group: its ``linked_records.Link`` (None otherwise)
    link: Any = field(default=None, repr=False, compare=False)
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
        "mmp_triggers",
        "orders",
        "trades",
    )

    def __init__(self) -> None:
        self.orders: dict[int, OrderRecord] = {}
        self.trades: list[Trade] = []
        self.books: set[int] = set()
        self.accounts: set[int] = set()
        self.marks: set[int] = set()
        # (account, underlying, group code, frozen until ns) of MMP groups that froze
        self.mmp_triggers: list[tuple[int, int, int, int]] = []
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
    # a trigger order (PLACE_TRIGGER): TriggerType, TriggerSource, trigger price or offset
    trigger_type: int = 0
    trigger_source: int = 0
    trigger_ticks: int = 0
    # a linked group (PLACE_LINKED, gateway/linked_orders.py): this order is the group's
    # main order; LinkType, FillCondition and the otoco_config orders (trigger orders)
    link_type: int = 0
    fill_condition: int = 0
    secondaries: tuple[PlaceOrder, ...] = ()


@dataclass(slots=True)
class Pending:
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
    mmp: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.post_only = bool(self.flags & _POST_ONLY)
        self.reject_post_only = bool(self.flags & _REJECT_POST_ONLY)
        self.reduce_only = bool(self.flags & _REDUCE_ONLY)
        self.mmp = bool(self.flags & _MMP)

    def trigger_label(self) -> str:
        """The label of the next trigger order this command places (a linked group's
        pending hands out each leg's in turn: ``linked_records.GroupPending``)."""
        return self.label


class OrderRecords:
    """Open order records, and the last ``closed_orders`` closed ones (with each account's
    closing order): the store the event projection fills."""

    def __init__(self, closed_orders: int) -> None:
        self.orders: dict[int, OrderRecord] = {}  # open orders
        # closed orders, oldest first, and their ids in closing order (the eviction queue:
        # a plain dict and a deque cost less per order than an OrderedDict's node, and
        # resize with shorter stalls)
        self.closed: dict[int, OrderRecord] = {}
        self._closed_queue: deque[int] = deque()
        self._closed_limit = closed_orders
        self.user_closed: dict[int, deque[int]] = {}

    def order(self, account: int, order_id: int) -> OrderRecord:
        """The account's order (open or recently closed); 10004 for anyone else's."""
        record = self.orders.get(order_id) or self.closed.get(order_id)
        if record is None or record.account != account:
            raise RpcError(ORDER_NOT_FOUND, "order_not_found", {"param": "order_id"})
        return record

    def closed_orders(self, account: int) -> list[OrderRecord]:
        ids = self.user_closed.get(account, ())
        return [self.closed[i] for i in reversed(ids) if i in self.closed]

    def close(self, record: OrderRecord, state: str, reason: str) -> None:
        """Move an open record to the closed ones (evicting the oldest beyond the limit).
        O(1)."""
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


def outcome_unknown(data: dict[str, Any]) -> RpcError:
    """The reply to a command whose outcome is unknown (see ``OutcomeUnknown``): the
    client queries the order by ``order_id`` or ``label`` to learn it."""
    return RpcError(OUTCOME_UNKNOWN, "timed_out", {"reason": "outcome_unknown", **data})


def own_trades(trades: list[Trade], order_id: int) -> list[Trade]:
    """The trades ``order_id`` took part in (as maker or taker). O(len(trades))."""
    return [t for t in trades if order_id in (t.maker_order, t.taker_order)]


def cancel_reason(reason: int) -> str:
    """The API's name of a cancel reason code (\"\" for an unknown code)."""
    if reason in CANCEL_REASONS:
        return CANCEL_REASONS[reason]
    try:
        return Reason(reason).name.lower()
    except ValueError:
        return ""


def side_name(side: int) -> str:
    """``buy`` / ``sell`` for a ``Side`` code."""
    return "buy" if side == Side.BUY else "sell"
