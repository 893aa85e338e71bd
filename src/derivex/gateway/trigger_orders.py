"""Trigger orders in the gateway (docs/conditional-orders.md): Deribit's order types and
``trigger`` names, the records the event projection keeps for trigger orders and the orders
they spawn, the extra fields of their order objects, and the ``type`` filters of
``get_open_orders*``.

A trigger order's record is created by its TRIGGER_PLACED event (``order_state``
``untriggered``), closed as ``triggered`` by TRIGGER_FIRED (or ``rejected``, with the
engine's reason, when the order it spawns is refused) or ``cancelled`` by
TRIGGER_CANCELLED. The spawned order gets its own record from its ACCEPTED event
(``command`` PLACE_TRIGGER, ``a`` = the trigger id), with ``trigger_order_id``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from derivex.core import codec, query
from derivex.core.records import (
    EVENT_DTYPE,
    EventKind,
    OrderFlag,
    OrderType,
    Reason,
    TriggerSource,
    TriggerType,
)
from derivex.gateway import params as p
from derivex.gateway.catalog import InstrumentSpec
from derivex.gateway.errors import INVALID_PRICE, RpcError
from derivex.gateway.linked_records import inherit, rebuild_link
from derivex.gateway.order_records import TIF_NAMES, OrderRecord, Pending, Update, cancel_reason

#: Deribit's trigger order types -> (TriggerType, the type of the order it places)
TRIGGER_TYPES: dict[str, tuple[int, str]] = {
    "stop_market": (TriggerType.STOP, "market"),
    "stop_limit": (TriggerType.STOP, "limit"),
    "take_market": (TriggerType.TAKE, "market"),
    "take_limit": (TriggerType.TAKE, "limit"),
    "trailing_stop": (TriggerType.TRAILING, "market"),
}
TYPE_NAMES = {(int(t), o): name for name, (t, o) in TRIGGER_TYPES.items()}
SOURCES = {
    "last_price": TriggerSource.LAST,
    "index_price": TriggerSource.INDEX,
    "mark_price": TriggerSource.MARK,
}
SOURCE_NAMES = {int(code): name for name, code in SOURCES.items()}
#: ``get_open_orders*`` ``type`` filters -> the order types they keep
TYPE_FILTERS: dict[str, frozenset[str] | None] = {
    "all": None,
    "limit": frozenset({"limit", "market"}),
    "trigger_all": frozenset(TRIGGER_TYPES),
    "stop_all": frozenset({"stop_market", "stop_limit"}),
    "stop_limit": frozenset({"stop_limit"}),
    "stop_market": frozenset({"stop_market"}),
    "take_all": frozenset({"take_market", "take_limit"}),
    "take_limit": frozenset({"take_limit"}),
    "take_market": frozenset({"take_market"}),
    "trailing_all": frozenset({"trailing_stop"}),
    "trailing_stop": frozenset({"trailing_stop"}),
}
#: ``cancel_all_by_kind_or_type`` ``type`` -> the order types it cancels
CANCEL_TYPES: dict[str, frozenset[str] | None] = {
    "all": None,
    "limit": TYPE_FILTERS["limit"],
    "stop": TYPE_FILTERS["stop_all"],
    "take": TYPE_FILTERS["take_all"],
    "trigger_all": TYPE_FILTERS["trigger_all"],
}
PARAMS = ("trigger", "trigger_price", "trigger_offset")

_PLACED, _FIRED = int(EventKind.TRIGGER_PLACED), int(EventKind.TRIGGER_FIRED)
_CANCELLED = int(EventKind.TRIGGER_CANCELLED)
_AMENDED = int(EventKind.TRIGGER_AMENDED)
_LEG = codec.field_bits(EVENT_DTYPE, "leg")
_REASON = codec.field_bits(EVENT_DTYPE, "reason")
_SIDE = codec.field_bits(EVENT_DTYPE, "side")
assert _LEG[0] == _REASON[0] == _SIDE[0] == 1  # all in the header word the walk reads
TIF_BY_CODE = {0: "good_til_cancelled", 1: "immediate_or_cancel", 2: "fill_or_kill"}


def parse(
    params: dict[str, Any], spec: InstrumentSpec, order_type: str
) -> tuple[int, int, int, str]:
    """``(trigger_type, source, trigger price or offset in ticks, spawned order type)`` of a
    buy / sell request; raises ``RpcError`` (-32602 naming the parameter)."""
    trigger_type, base = TRIGGER_TYPES[order_type]
    source = SOURCES[p.choice(params, "trigger", tuple(SOURCES), "last_price")]
    if trigger_type == TriggerType.TRAILING:
        if "trigger_price" in params:
            raise p.invalid_params("trigger_price", "trailing_stop takes trigger_offset")
        offset = p.number(params, "trigger_offset", None)
        if offset is None:
            raise p.invalid_params("trigger_offset", "required for trailing_stop")
        return int(trigger_type), int(source), spec.to_ticks(offset, "trigger_offset"), base
    if "trigger_offset" in params:
        raise p.invalid_params("trigger_offset", "only for trailing_stop")
    price = p.number(params, "trigger_price", None)
    if price is None:
        raise RpcError(INVALID_PRICE, "invalid_price", {"param": "trigger_price"})
    return int(trigger_type), int(source), spec.to_ticks(price, "trigger_price"), base


def reject_trigger_params(params: dict[str, Any]) -> None:
    """Trigger parameters on a plain limit / market order are refused, not ignored."""
    for name in PARAMS:
        if name in params:
            raise p.invalid_params(name, "only for trigger order types")


def on_event(
    records: Any,
    update: Update,
    kind: int,
    word: int,
    account: int,
    instrument: int,
    order_id: int,
    price: int,
    qty: int,
    a: int,
    pending: Pending,
    now: int,
) -> None:
    """Apply one TRIGGER_* event to the projection ``records`` (an ``OrderRecords``)."""
    if kind == _PLACED:
        spec = (word >> _LEG[1]) & _LEG[2]
        trigger_type, source = spec & 3, (spec >> 2) & 3
        base = "limit" if (spec >> 4) & 1 == OrderType.LIMIT else "market"
        flags = spec >> 8
        trailing = trigger_type == TriggerType.TRAILING
        record = OrderRecord(
            order_id,
            account,
            instrument,
            (word >> _SIDE[1]) & _SIDE[2],
            TYPE_NAMES[(trigger_type, base)],
            TIF_BY_CODE.get((spec >> 5) & 3, "good_til_cancelled"),
            bool(flags & OrderFlag.POST_ONLY),
            bool(flags & OrderFlag.REJECT_POST_ONLY),
            bool(flags & OrderFlag.REDUCE_ONLY),
            False,
            pending.trigger_label(),
            0 if trailing or base == "market" else a,
            qty,
            state="untriggered",
            created_ms=now,
            updated_ms=now,
        )
        record.trigger = SOURCE_NAMES[source]
        record.trigger_price_ticks = price
        record.triggered = False
        if trailing:
            record.trigger_offset_ticks = a
            side_sell = record.side == 1
            record.trigger_reference_ticks = price + a if side_sell else price - a
        records.orders[order_id] = record
        update.orders[order_id] = record
        update.last_placed = record
        update.accounts.add(account)
        return
    record = records.orders.get(order_id)
    if record is None:
        return
    record.updated_ms = now
    reason = (word >> _REASON[1]) & _REASON[2]
    if kind == _FIRED:
        record.triggered = True
        record.spawned_order_id = a
        if a:
            records.close(record, "triggered", "")
        else:
            records.close(record, "rejected", Reason(reason).name.lower())
        _history_add(records, record, "trigger:order", a)
    elif kind == _CANCELLED:
        records.close(record, "cancelled", cancel_reason(reason))
        _history_add(records, record, "cancel", 0)
    elif kind == _AMENDED:  # price_ticks: the trigger price; a: limit price or offset
        record.amount_lots = qty
        record.trigger_price_ticks = price
        if record.order_type == "trailing_stop":
            record.trigger_offset_ticks = a
        elif record.order_type.endswith("_limit"):
            record.price_ticks = a
        _history_add(records, record, "edit", 0)
    update.orders[order_id] = record
    update.accounts.add(account)


def _history_add(records: Any, record: OrderRecord, request: str, order_id: int) -> None:
    """One entry of ``get_trigger_order_history`` (the last 1,000 per account)."""
    history: dict[int, deque[tuple[OrderRecord, str, int]]] | None = getattr(
        records, "trigger_history", None
    )
    if history is None:
        history = records.trigger_history = {}
    entries = history.get(record.account)
    if entries is None:
        entries = history[record.account] = deque(maxlen=1000)
    entries.append((record, request, order_id))


def history(records: Any, account: int) -> list[tuple[OrderRecord, str, int]]:
    """The account's trigger order history, newest first."""
    entries = getattr(records, "trigger_history", {}).get(account, ())
    return list(reversed(entries))


def spawned(
    records: Any, trigger_id: int, order_id: int, price: int, qty: int, now: int
) -> OrderRecord | None:
    """The record of an order a trigger spawned (its ACCEPTED event), or None if the
    trigger order is unknown here (placed before a restart)."""
    trigger = records.closed.get(trigger_id) or records.orders.get(trigger_id)
    if trigger is None:
        return None
    base = TRIGGER_TYPES[trigger.order_type][1]
    record = OrderRecord(
        order_id,
        trigger.account,
        trigger.instrument,
        trigger.side,
        base,
        TIF_NAMES["ioc"] if base == "market" else trigger.time_in_force,
        trigger.post_only,
        trigger.reject_post_only,
        trigger.reduce_only,
        False,
        trigger.label,
        price,
        qty,
        state="open",
        created_ms=now,
        updated_ms=now,
    )
    record.trigger = trigger.trigger
    record.trigger_price_ticks = trigger.trigger_price_ticks
    record.trigger_offset_ticks = trigger.trigger_offset_ticks
    record.triggered = True
    record.trigger_order_id = trigger_id
    inherit(trigger, record)
    records.orders[order_id] = record
    return record


def add_fields(record: OrderRecord, data: dict[str, Any], spec: InstrumentSpec) -> None:
    """Deribit's trigger fields of an order object (``stop_price`` too: ccxt reads it)."""
    price_num, price_den = spec._price_ratio  # type: ignore[attr-defined]
    price = record.trigger_price_ticks * price_num / price_den
    data["trigger"] = record.trigger
    data["trigger_price"] = price
    data["stop_price"] = price
    data["triggered"] = bool(record.triggered)
    if record.trigger_offset_ticks:
        data["trigger_offset"] = record.trigger_offset_ticks * price_num / price_den
        data["trigger_reference_price"] = record.trigger_reference_ticks * price_num / price_den
    if record.trigger_order_id:
        data["trigger_order_id"] = str(record.trigger_order_id)


def keep(records: list[OrderRecord], type_name: str | None) -> list[OrderRecord]:
    """The records of one ``get_open_orders*`` ``type`` (None or ``all``: every one)."""
    wanted = TYPE_FILTERS.get(type_name or "all")
    if wanted is None:
        return records
    return [record for record in records if record.order_type in wanted]


def rebuild(records: Any, state: Any, labels: Any, now: int) -> None:
    """Records for the live trigger orders of the engine state (after a recovery, or in a
    gateway worker that starts late): what ``Projection.rebuild_open_orders`` does for
    resting orders."""
    for row in query.trigger_orders(state):
        trigger_id = row["trigger_id"]
        if trigger_id in records.orders:
            continue
        trailing = row["trigger_type"] == TriggerType.TRAILING
        base = "limit" if row["order_type"] == OrderType.LIMIT else "market"
        flags = row["flags"]
        record = OrderRecord(
            trigger_id,
            row["account"],
            row["instrument"],
            row["side"],
            TYPE_NAMES[(row["trigger_type"], base)],
            TIF_BY_CODE.get(row["tif"], "good_til_cancelled"),
            bool(flags & OrderFlag.POST_ONLY),
            bool(flags & OrderFlag.REJECT_POST_ONLY),
            bool(flags & OrderFlag.REDUCE_ONLY),
            False,
            labels.name(row["label"]) if labels is not None else "",
            row["price_ticks"],
            row["qty_lots"],
            state="triggered" if row["queued"] else "untriggered",
            created_ms=now,
            updated_ms=now,
        )
        record.trigger = SOURCE_NAMES[row["trigger_source"]]
        record.trigger_price_ticks = row["trigger_price_ticks"]
        record.triggered = bool(row["queued"])
        if trailing:
            record.trigger_offset_ticks = row["trigger_offset_ticks"]
            record.trigger_reference_ticks = row["reference_ticks"]
        rebuild_link(records, record, row)
        records.orders[trigger_id] = record
