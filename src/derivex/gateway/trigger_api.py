"""Private methods of trigger orders beyond buy / sell (which take the trigger types, see
``private_api`` and ``trigger_orders``): ``private/cancel_all_by_kind_or_type`` and
``private/get_trigger_order_history``."""

from __future__ import annotations

from typing import Any

from derivex.gateway import params as p
from derivex.gateway import shapes, trigger_orders
from derivex.gateway.methods import ENGINE, Context, method


@method(
    "private/cancel_all_by_kind_or_type",
    ("kind", "type", "currency"),
    scope="trade",
    cost=ENGINE,
)
def cancel_all_by_kind_or_type(ctx: Context, params: dict[str, Any]) -> int:
    """Cancel the caller's open orders of a kind (future, option, any) and type (limit,
    stop, take, trigger_all, all), one CANCEL_ORDER per order; returns how many."""
    kind = p.text(params, "kind", "any")
    if kind == "any":
        kind = None
    currency = p.text(params, "currency", None)
    wanted = {spec.instrument for spec in ctx.venue.catalog.matching(currency, kind)}
    type_name = p.choice(params, "type", tuple(trigger_orders.CANCEL_TYPES), "all")
    types = trigger_orders.CANCEL_TYPES[type_name]
    account = ctx.session.account
    count = 0
    for record in ctx.venue.open_orders(account, wanted):
        if types is None or record.order_type in types:
            ctx.venue.cancel(account, record.order_id)
            count += 1
    return count


@method(
    "private/get_trigger_order_history",
    ("currency", "instrument_name", "count", "continuation"),
    scope="read",
)
def get_trigger_order_history(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The caller's fired and cancelled trigger orders, newest first: Deribit's entries
    (``trigger_order_id``, ``order_id`` of the order placed, ``request`` ``trigger:order``
    or ``cancel``, and the trigger order's fields)."""
    count = p.clamped(params, "count", 20, 1, 1000)
    name = p.text(params, "instrument_name", None)
    instrument = ctx.venue.catalog.get(name).instrument if name is not None else None
    entries = []
    for record, request, order_id in trigger_orders.history(ctx.venue, ctx.session.account):
        if instrument is not None and record.instrument != instrument:
            continue
        shaped = shapes.order(record, ctx.venue.catalog)
        entries.append(
            {
                **shaped,
                "trigger_order_id": str(record.order_id),
                "order_id": str(order_id) if order_id else str(record.order_id),
                "request": request,
                "timestamp": record.updated_ms,
            }
        )
        if len(entries) >= count:
            break
    return {"entries": entries, "continuation": None}
