"""Market-maker order management: ``private/mass_quote``, ``private/cancel_quotes``,
``private/close_position`` and ``private/cancel_by_label``. Each acts on the caller's own
account only.

``mass_quote`` is the engine's MASS_QUOTE command (``core/quotes.py``): one command replaces
the account's bid and ask on every quoted instrument; a quote side is a post-only order,
rejected on its own (listed in ``errors``) if it would trade or leave the price band. A
side left out of a quote (or with amount 0) withdraws the account's quote on that side.
``cancel_quotes`` withdraws quotes (mass-quote orders, not other orders) with one mass
quote of empty legs. ``close_position`` is a reduce-only order for the whole position.
"""

from __future__ import annotations

from typing import Any

from derivex.core.records import EventKind, OrderFlag, Side
from derivex.exchange import Quote
from derivex.gateway import params as p
from derivex.gateway import shapes
from derivex.gateway.errors import RpcError, invalid_params, rpc_error_for
from derivex.gateway.methods import ENGINE, Context, method
from derivex.gateway.mmp_api import group_code
from derivex.gateway.order_records import side_name
from derivex.gateway.private_api import order_reply
from derivex.gateway.venue import PlaceOrder

__all__ = ["cancel_by_label", "cancel_quotes", "close_position", "mass_quote"]

MAX_QUOTES = 100  # legs per mass quote (the engine's own cap may be lower: its reject)
NO_POSITION = 11029  # invalid_arguments: close_position without a position


def _side(spec: Any, quote: dict[str, Any], name: str, where: str) -> tuple[int, int]:
    """``(price_ticks, qty_lots)`` of one quote side (``(0, 0)`` when absent)."""
    side = quote.get(name)
    if side is None:
        return 0, 0
    if not isinstance(side, dict):
        raise invalid_params(f"{where}.{name}", "must be an object with price and amount")
    unknown = side.keys() - {"price", "amount", "post_only", "reject_post_only"}
    if unknown:
        raise invalid_params(f"{where}.{name}.{sorted(unknown)[0][:32]}", "not a quote field")
    amount = p.number(side, "amount")  # (-32000 naming ``amount`` when left out)
    if amount == 0:  # an explicit 0 withdraws the side
        return 0, 0
    lots = spec.to_lots(amount)
    return spec.to_ticks(p.number(side, "price")), lots


def _quotes(ctx: Context, params: dict[str, Any]) -> list[Quote]:
    raw = params.get("quotes")
    if not isinstance(raw, list) or not raw:
        raise invalid_params("quotes", "a non-empty list of quotes")
    if len(raw) > MAX_QUOTES:
        raise invalid_params("quotes", f"at most {MAX_QUOTES} quotes")
    out = []
    for index, quote in enumerate(raw):
        where = f"quotes[{index}]"
        if not isinstance(quote, dict):
            raise invalid_params(where, "must be an object")
        unknown = quote.keys() - {"instrument_name", "bid", "ask"}
        if unknown:
            raise invalid_params(f"{where}.{sorted(unknown)[0][:32]}", "not a quote field")
        spec = ctx.venue.catalog.get(quote.get("instrument_name"))
        bid_ticks, bid_lots = _side(spec, quote, "bid", where)
        ask_ticks, ask_lots = _side(spec, quote, "ask", where)
        out.append(Quote(spec.instrument, bid_ticks, bid_lots, ask_ticks, ask_lots))
    return out


@method(
    "private/mass_quote",
    ("quotes", "quote_id", "detailed", "mmp_group"),
    scope="trade",
    cost=ENGINE,
)
def mass_quote(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Replace the caller's quotes; returns the quote orders now resting on the quoted
    instruments (``orders``), ``trades`` (always empty: quotes are post-only) and the
    refused sides (``errors``: instrument, side and the error). A quote that fails as a
    whole (unknown instrument, crossed bid and ask, a capacity limit) is the error reply
    and changes nothing. Cost: one engine command, O(legs + the account's open orders)."""
    quote_id = p.text(params, "quote_id", "")
    p.boolean(params, "detailed", False)
    quotes = _quotes(ctx, params)
    group = group_code(p.text(params, "mmp_group", None))  # MMP (gateway/mmp_api.py)
    account = ctx.session.account
    result = ctx.venue.quote(account, quotes, group)
    if not result.accepted:
        raise rpc_error_for(int(result.reason))
    catalog = ctx.venue.catalog
    errors = [
        {
            "instrument_name": catalog.by_id[int(event["instrument"])].name,
            "side": side_name(int(event["side"])),
            "error": rpc_error_for(int(event["reason"])).to_json(),
        }
        for event in result.events[1:]
        if event["kind"] == EventKind.REJECTED
    ]
    quoted = {quote.instrument for quote in quotes}
    orders = [r for r in ctx.venue.open_orders(account, quoted) if r.quote]
    return {
        "quote_id": quote_id,
        "orders": [shapes.order(record, catalog) for record in orders],
        "trades": [],
        "errors": errors,
    }


CANCEL_TYPES = ("all", "instrument", "currency", "instrument_kind")


@method(
    "private/cancel_quotes",
    ("cancel_type", "instrument_name", "currency", "kind", "detailed"),
    scope="trade",
    cost=ENGINE,
)
def cancel_quotes(ctx: Context, params: dict[str, Any]) -> int:
    """Withdraw the caller's quotes (``cancel_type``: ``all``, ``instrument`` with
    ``instrument_name``, ``currency`` with ``currency``, ``instrument_kind`` with
    ``kind``); returns the quote orders cancelled. Cost: one engine command."""
    cancel_type = p.choice(params, "cancel_type", CANCEL_TYPES, "all")
    p.boolean(params, "detailed", False)
    catalog = ctx.venue.catalog
    wanted: set[int] | None = None
    if cancel_type == "instrument":
        wanted = {catalog.get(p.text(params, "instrument_name")).instrument}
    elif cancel_type == "currency":
        wanted = {spec.instrument for spec in catalog.matching(p.text(params, "currency"))}
    elif cancel_type == "instrument_kind":
        kind = p.choice(params, "kind", ("future", "option", "any"))
        wanted = {spec.instrument for spec in catalog.matching(None, kind)}
    account = ctx.session.account
    quotes = [r for r in ctx.venue.open_orders(account, wanted) if r.quote]
    if not quotes:
        return 0
    instruments = sorted({record.instrument for record in quotes})
    result = ctx.venue.quote(account, [Quote(instrument) for instrument in instruments])
    if not result.accepted:  # e.g. a halted instrument: cancel the orders one by one
        for record in quotes:
            ctx.venue.cancel(account, record.order_id)
    return len(quotes)


@method("private/close_position", ("instrument_name", "type", "price"), scope="trade", cost=ENGINE)
def close_position(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """A reduce-only order for the caller's whole position on the instrument (``type``
    ``limit`` with ``price``, or ``market``); the reply is buy / sell's. 11029 without a
    position."""
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    order_type = p.choice(params, "type", ("limit", "market"))
    ticks = spec.to_ticks(p.number(params, "price")) if order_type == "limit" else 0
    account = ctx.session.account
    held = next(
        (
            x.qty_lots
            for x in ctx.venue.exchange.positions(account)
            if x.instrument == spec.instrument
        ),
        0,
    )
    if held == 0:
        raise RpcError(
            NO_POSITION,
            "invalid_arguments",
            {"param": "instrument_name", "reason": "no open position"},
        )
    side = int(Side.SELL) if held > 0 else int(Side.BUY)
    order = PlaceOrder(
        account,
        spec.instrument,
        side,
        abs(held),
        ticks,
        order_type,
        "gtc",
        int(OrderFlag.REDUCE_ONLY),
        "",
    )
    (placed,) = ctx.venue.place_many([order])
    if isinstance(placed, Exception):
        raise placed
    return order_reply(ctx, placed)


@method("private/cancel_by_label", ("label", "currency"), scope="trade", cost=ENGINE)
def cancel_by_label(ctx: Context, params: dict[str, Any]) -> int:
    """Cancel the caller's open orders carrying ``label`` (of ``currency``'s instruments
    if given); returns how many were cancelled. Cost: one engine command per order."""
    label = p.text(params, "label")
    currency = p.text(params, "currency", None)
    wanted = (
        {spec.instrument for spec in ctx.venue.catalog.matching(currency)}
        if currency is not None
        else None
    )
    account = ctx.session.account
    cancelled = 0
    for record in ctx.venue.open_orders(account, wanted):
        if record.label == label:
            ctx.venue.cancel(account, record.order_id)
            cancelled += 1
    return cancelled
