"""Linked orders over the API (docs/conditional-orders.md, "Linked orders over the API"):
Deribit's ``linked_order_type``, ``trigger_fill_condition`` and ``otoco_config`` on
``private/buy`` / ``private/sell``, checked and turned into ONE ``PLACE_LINKED`` command
with its legs, and the group's rejects mapped to errors that name the parameter.

The request's own order is the group's main order; ``otoco_config`` lists the others:

| ``linked_order_type`` | main order | ``otoco_config`` | core legs |
|---|---|---|---|
| ``one_triggers_other`` | any type | 1 or 2 trigger orders | OTO: primary, secondaries |
| ``one_cancels_other`` | a trigger type | 1 trigger order | OCO: main, then the entry |
| ``one_triggers_one_cancels_other`` | any type | 2 trigger orders | OTOCO |

Every entry of ``otoco_config`` is an order object of Deribit's keys (``LEG_PARAMS``) on the
main order's instrument; it is checked as a ``private/buy`` / ``sell`` request of its own
(``direction``), and an error inside it names ``otoco_config[i].<key>``. Over REST a query
string carries ``otoco_config`` as text: JSON, or the Python literal that ccxt's
``urlencode`` makes of a list of dicts (parsed with ``ast.literal_eval``, bounded in size).

Cost: O(entries) per request; packing writes 2 + entries records.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import orjson

from derivex.core import codec
from derivex.core.records import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    RECORD_BYTES,
    CommandKind,
    FillCondition,
    LinkType,
    Reason,
)
from derivex.gateway import params as p
from derivex.gateway.errors import RpcError, rpc_error_for
from derivex.gateway.order_records import (
    ORDER_TYPE_CODES,
    PLACE_LAYOUT,
    TIF_CODES,
    TRIGGER_LAYOUT,
    PlaceOrder,
)
from derivex.gateway.trigger_orders import TRIGGER_TYPES

LINK_PARAMS = ("linked_order_type", "trigger_fill_condition", "otoco_config")
LINK_TYPES = {
    "one_triggers_other": int(LinkType.OTO),
    "one_cancels_other": int(LinkType.OCO),
    "one_triggers_one_cancels_other": int(LinkType.OTOCO),
}
FILL_CONDITIONS = {
    "first_hit": int(FillCondition.FIRST_HIT),
    "complete_fill": int(FillCondition.COMPLETE_FILL),
    "incremental": int(FillCondition.INCREMENTAL),
}
#: the keys of an ``otoco_config`` entry (Deribit's list); anything else is refused
LEG_PARAMS = frozenset(
    {
        "amount",
        "direction",
        "type",
        "label",
        "price",
        "reduce_only",
        "time_in_force",
        "post_only",
        "reject_post_only",
        "trigger_price",
        "trigger_offset",
        "trigger",
    }
)
#: entries of ``otoco_config`` each link type takes: (fewest, most)
LEG_COUNTS = {LinkType.OTO: (1, 2), LinkType.OCO: (1, 1), LinkType.OTOCO: (2, 2)}
MAX_CONFIG_CHARS = 4096  # otoco_config as text (REST): three order objects fit easily
_SIDES = {"buy": 0, "sell": 1}

Prepare = Callable[[Any, dict[str, Any], int], PlaceOrder]


def wanted(params: dict[str, Any]) -> bool:
    """Whether a buy / sell request asks for a linked group."""
    return (
        "linked_order_type" in params
        or "otoco_config" in params
        or ("trigger_fill_condition" in params)
    )


def attach(ctx: Any, params: dict[str, Any], main: PlaceOrder, prepare: Prepare) -> PlaceOrder:
    """Make ``main`` (the request's own order, already checked) the main order of the
    group the request's linked parameters describe; ``prepare`` checks each
    ``otoco_config`` entry as a buy / sell request. Raises ``RpcError`` (-32602 naming the
    parameter; the entry's own errors with ``otoco_config[i].`` before the name)."""
    if "linked_order_type" not in params:
        raise p.invalid_params("linked_order_type", "required with otoco_config")
    link_type = LINK_TYPES[p.choice(params, "linked_order_type", tuple(LINK_TYPES))]
    fill = FILL_CONDITIONS[
        p.choice(params, "trigger_fill_condition", tuple(FILL_CONDITIONS), "first_hit")
    ]
    config = _config(params)
    fewest, most = LEG_COUNTS[LinkType(link_type)]
    if not fewest <= len(config) <= most:
        count = str(fewest) if fewest == most else f"{fewest} or {most}"
        raise p.invalid_params(
            "otoco_config", f"{params['linked_order_type']} takes {count} order(s)"
        )
    if link_type == LinkType.OCO and not main.trigger_type:
        raise p.invalid_params(
            "type", "one_cancels_other links two trigger orders (stop_*, take_*, trailing_stop)"
        )
    name = ctx.venue.catalog.by_id[main.instrument].name
    main.secondaries = tuple(_leg(ctx, name, i, entry, prepare) for i, entry in enumerate(config))
    main.link_type, main.fill_condition = link_type, fill
    return main


def _config(params: dict[str, Any]) -> list[Any]:
    """``otoco_config`` as a list (JSON array; REST: text holding one)."""
    value = params.get("otoco_config")
    if value is None:
        raise p.invalid_params("otoco_config", "required with linked_order_type")
    if isinstance(value, str):
        if len(value) > MAX_CONFIG_CHARS:
            raise p.invalid_params("otoco_config", f"longer than {MAX_CONFIG_CHARS} characters")
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            try:  # ccxt's query string: str() of the list (single quotes, True / False)
                value = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                value = None
    if not isinstance(value, list):
        raise p.invalid_params("otoco_config", "must be a list of order objects")
    return value


def _leg(ctx: Any, name: str, i: int, entry: Any, prepare: Prepare) -> PlaceOrder:
    """One ``otoco_config`` entry as a trigger order on instrument ``name``."""
    where = f"otoco_config[{i}]"
    if not isinstance(entry, dict):
        raise p.invalid_params(where, "must be an order object")
    for key in entry:
        if key not in LEG_PARAMS:
            raise p.invalid_params(f"{where}.{str(key)[:64]}", "unknown parameter")
    direction = entry.get("direction")
    side = _SIDES.get(direction) if isinstance(direction, str) else None
    if side is None:
        raise p.invalid_params(f"{where}.direction", "must be buy or sell")
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in TRIGGER_TYPES:
        raise p.invalid_params(
            f"{where}.type",
            "must be a trigger order type: " + ", ".join(TRIGGER_TYPES),
        )
    request = {key: value for key, value in entry.items() if key != "direction"}
    request["instrument_name"] = name
    try:
        return prepare(ctx, request, side)
    except RpcError as error:
        data = dict(error.data or {})
        data["param"] = f"{where}.{data['param']}" if "param" in data else where
        raise RpcError(error.code, error.message, data) from None


# ---- packing: the header, then each leg laid out as PLACE_ORDER / PLACE_TRIGGER ----

_HEADER = codec.record_struct(
    COMMAND_DTYPE, ("kind", "link_type", "fill_condition", "count", "account")
)
_ORDER_LEG, _TRIGGER_LEG = PLACE_LAYOUT, TRIGGER_LAYOUT
_AT = codec.header_offset(COMMAND_DTYPE, ("kind",))
assert all(
    codec.header_offset(COMMAND_DTYPE, names) == _AT
    for names in (("kind", "link_type"), ("kind", "side"))
)
_LINKED_ORDER, _LINKED_TRIGGER = int(CommandKind.LINKED_ORDER), int(CommandKind.LINKED_TRIGGER)
_PLACE_LINKED = int(CommandKind.PLACE_LINKED)


def records(order: PlaceOrder) -> int:
    """Command records the group of main order ``order`` takes (header, main, entries)."""
    return 2 + len(order.secondaries)


def pack(buffer: bytearray, record: int, order: PlaceOrder, key: Callable[[str], int]) -> None:
    """Write the group of main order ``order`` into ``buffer`` from record index ``record``
    on (``records(order)`` records); ``key``: a label's key in the command. Raises
    ``struct.error`` / ``KeyError`` for a value that does not fit (nothing is sequenced
    then: the caller drops the group)."""
    size = RECORD_BYTES
    legs = (order, *order.secondaries)
    _HEADER.pack_into(
        buffer,
        size * record + _AT,
        _PLACE_LINKED,
        order.link_type,
        order.fill_condition,
        len(legs),
        order.account,
    )
    for k, leg in enumerate(legs, 1):
        at = size * (record + k) + _AT
        kind, tif = ORDER_TYPE_CODES[leg.order_type], TIF_CODES[leg.time_in_force]
        if leg.trigger_type:
            _TRIGGER_LEG.pack_into(
                buffer, at, _LINKED_TRIGGER, leg.side, kind, tif, leg.flags, leg.trigger_type,
                leg.trigger_source, leg.account, leg.instrument, leg.trigger_ticks,
                leg.price_ticks, leg.qty_lots, key(leg.label),
            )  # fmt: skip
        else:
            _ORDER_LEG.pack_into(
                buffer, at, _LINKED_ORDER, leg.side, kind, tif, leg.flags, leg.account,
                leg.instrument, leg.price_ticks, leg.qty_lots, key(leg.label),
            )  # fmt: skip


# ---- the group's reject ----

_LEG = codec.field_bits(EVENT_DTYPE, "leg")
assert _LEG[0] == 1  # in the header word of an event row


def rejected(reason: int, word: int) -> RpcError:
    """The error of a rejected group: the reason's mapped error, naming the
    ``otoco_config`` entry the core's ``leg`` (1-based over the group's legs: 1 = the main
    order) points at. ``word``: the REJECTED row's header word."""
    error = rpc_error_for(reason)
    leg = (word >> _LEG[1]) & _LEG[2]
    if reason == Reason.BAD_LINK:  # the gateway's checks make this rare: say what it is
        error = p.invalid_params("linked_order_type", "the group's orders do not fit together")
    if leg >= 2:
        error.data = {**(error.data or {}), "param": f"otoco_config[{leg - 2}]"}
    return error
