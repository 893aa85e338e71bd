"""Private methods: order entry (buy, sell, edit, cancel, cancel_all*), order and trade
queries, positions and account summaries. Every handler acts on the caller's own account
(``ctx.session.account``) and nothing else: another account's order id answers 10004."""

from __future__ import annotations

import time
from typing import Any

from derivex.core import query
from derivex.core.records import OrderFlag, Side
from derivex.gateway import linked_orders, shapes, trigger_orders
from derivex.gateway import params as p
from derivex.gateway.catalog import COLLATERAL
from derivex.gateway.errors import INVALID_AMOUNT, INVALID_PRICE, PRICE_TOO_HIGH, RpcError
from derivex.gateway.methods import ENGINE, Context, method
from derivex.gateway.self_trading_api import self_trading_fields
from derivex.gateway.subaccount_api import readable_account
from derivex.gateway.venue import Placed, PlaceOrder

ORDER_TYPES = ("limit", "market")
#: what buy / sell implement; anything else (``stopPrice``, ``triggerPrice``, ``max_show``,
#: ``advanced``, ...) is refused by the dispatcher (-32602) rather than ignored
ORDER_PARAMS = (
    "instrument_name",
    "amount",
    "type",
    "label",
    "price",
    "time_in_force",
    "post_only",
    "reject_post_only",
    "reduce_only",
    "mmp",
    *trigger_orders.PARAMS,
    *linked_orders.LINK_PARAMS,
)
# parameter lists shared by several registrations; ``code`` is ccxt's: its
# fetch_open_orders / fetch_closed_orders / fetch_my_trades forward ``params={'code': ...}``
# (the currency it already sent as ``currency``), so it is accepted and has no effect
_CURRENCY = ("currency", "kind", "code")
_PAGE = ("count", "offset")
_TRADES = ("count", "include_old", "sorting")
_TIMES = ("start_timestamp", "end_timestamp")
TIME_IN_FORCE = {
    "good_til_cancelled": "gtc",
    "good_til_day": "gtc",
    "immediate_or_cancel": "ioc",
    "fill_or_kill": "fok",
}


def order_reply(ctx: Context, placed: Placed) -> dict[str, Any]:
    """The result of buy / sell / edit: the order and the caller's trades."""
    record, trades = placed
    venue = ctx.venue
    if not trades:
        return {"order": shapes.order(record, venue.catalog), "trades": []}
    account = ctx.session.account
    return {
        "order": shapes.order(record, venue.catalog),
        "trades": [shapes.user_trade(t, account, venue) for t in trades],
    }


def prepare_place(ctx: Context, params: dict[str, Any], side: int) -> PlaceOrder:
    """Check a buy / sell request and convert it to engine units; raises ``RpcError``.
    The common shape (a limit or market order with only instrument, amount, price and
    type) takes a shortcut with the same checks and result."""
    if params.keys() <= _PLAIN_KEYS:
        get = params.get
        # Any, not Optional: the type checks below narrow them (mypy cannot follow ``kind``)
        amount: Any
        price: Any
        name, amount, price, order_type = (
            get("instrument_name"),
            get("amount"),
            get("price"),
            get("type", "limit"),
        )
        spec = ctx.venue.catalog.by_name.get(name) if type(name) is str else None
        # ``_plain_number`` inlined (a call per number costs as much as the checks)
        kind = type(amount)
        if (
            spec is not None
            and ((kind is str and len(amount) <= 64) or kind is int or kind is float)
            and (order_type == "market" or (order_type == "limit" and _plain_number(price)))
        ):
            lots = spec.plain_lots(amount)
            ticks = spec.plain_ticks(price) if order_type == "limit" else 0
            _check_limits(ctx, spec.instrument, lots, ticks)
            return PlaceOrder(
                ctx.session.account, spec.instrument, side, lots, ticks, order_type, "gtc", 0, ""
            )
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    order_type = p.text(params, "type", "limit")
    trigger: tuple[int, int, int, str] | None = None
    if order_type in trigger_orders.TRIGGER_TYPES:
        trigger = trigger_orders.parse(params, spec, order_type)
        order_type = trigger[3]  # the order it places
    elif order_type not in ORDER_TYPES:
        raise RpcError(
            10033,
            "not_implemented",
            {"param": "type", "reason": "limit, market and trigger order types only"},
        )
    else:
        trigger_orders.reject_trigger_params(params)
    lots = spec.to_lots(p.number(params, "amount"))
    price_ticks = 0
    if order_type == "limit":
        price = p.number(params, "price", None)
        if price is None:
            raise RpcError(INVALID_PRICE, "invalid_price", {"param": "price"})
        price_ticks = spec.to_ticks(price)
    tif = p.choice(params, "time_in_force", tuple(TIME_IN_FORCE), "good_til_cancelled")
    post_only = p.boolean(params, "post_only", False)
    reject_post_only = p.boolean(params, "reject_post_only", False) and post_only
    reduce_only = p.boolean(params, "reduce_only", False)
    mmp = p.boolean(params, "mmp", False)  # fills count toward MMP (gateway/mmp_api.py)
    label = p.text(params, "label", "")
    if len(label) > 64:
        raise p.invalid_params("label", "at most 64 characters")
    flags = (
        (OrderFlag.POST_ONLY if post_only else 0)
        | (OrderFlag.REJECT_POST_ONLY if reject_post_only else 0)
        | (OrderFlag.REDUCE_ONLY if reduce_only else 0)
        | (OrderFlag.MMP if mmp else 0)
    )
    _check_limits(ctx, spec.instrument, lots, price_ticks)
    if trigger is not None:
        _check_limits(ctx, spec.instrument, lots, trigger[2])
    order = PlaceOrder(
        ctx.session.account,
        spec.instrument,
        side,
        lots,
        price_ticks,
        order_type,
        TIME_IN_FORCE[tif],
        flags,
        label,
        *(trigger[:3] if trigger is not None else ()),
    )
    if linked_orders.wanted(params):  # the main order of a linked group
        return linked_orders.attach(ctx, params, order, prepare_place)
    return order


def _check_limits(ctx: Context, instrument: int, lots: int, ticks: int) -> None:
    """Refuse, before anything is packed, an amount above the engine's order size cap
    (10021) or a price above the instrument's cap (10007), as the engine would: both are
    then far inside int64. Non-positive values go on to the engine's own checks."""
    max_lots, max_ticks = ctx.venue.order_limits(instrument)
    if lots > max_lots:
        raise RpcError(
            INVALID_AMOUNT,
            "invalid_amount",
            {"param": "amount", "reason": "above the maximum order size"},
        )
    if ticks > max_ticks:
        raise RpcError(
            PRICE_TOO_HIGH,
            "price_too_high",
            {"param": "price", "reason": "above the instrument's maximum price"},
        )


_PLAIN_KEYS = frozenset({"instrument_name", "amount", "price", "type", "access_token"})


def _plain_number(value: Any) -> bool:
    """What ``params.number`` accepts as it is (``bool`` is not an ``int`` here)."""
    kind = type(value)
    return (kind is str and len(value) <= 64) or kind is int or kind is float


def _place(ctx: Context, params: dict[str, Any], side: int) -> dict[str, Any]:
    (result,) = ctx.venue.place_many([prepare_place(ctx, params, side)])
    if isinstance(result, Exception):
        raise result
    return order_reply(ctx, result)


def _prepare_buy(ctx: Context, params: dict[str, Any]) -> PlaceOrder:
    return prepare_place(ctx, params, _BUY)


def _prepare_sell(ctx: Context, params: dict[str, Any]) -> PlaceOrder:
    return prepare_place(ctx, params, _SELL)


_BUY, _SELL = int(Side.BUY), int(Side.SELL)  # plain ints pack faster than the enum


# the batched path (rpc.Dispatcher.offer) calls ``prepare`` per request, places a whole
# event-loop tick of them with one Venue.place_many and builds each reply with ``finish``
@method(
    "private/buy",
    ORDER_PARAMS,
    scope="trade",
    cost=ENGINE,
    prepare=_prepare_buy,
    finish=order_reply,
)
def buy(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return _place(ctx, params, Side.BUY)


@method(
    "private/sell",
    ORDER_PARAMS,
    scope="trade",
    cost=ENGINE,
    prepare=_prepare_sell,
    finish=order_reply,
)
def sell(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return _place(ctx, params, Side.SELL)


@method(
    "private/edit",
    ("order_id", "amount", "price", "trigger_price", "trigger_offset"),
    scope="trade",
    cost=ENGINE,
)
def edit(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.session.account
    order_id = p.order_id(params)
    record = ctx.venue.order(account, order_id)
    if record.trigger and not record.triggered:
        return _edit_trigger(ctx, params, record)
    for name in ("trigger_price", "trigger_offset"):
        if name in params:
            raise p.invalid_params(name, "only a trigger order that has not fired has one")
    spec = ctx.venue.catalog.by_id[record.instrument]
    lots = spec.to_lots(p.number(params, "amount"))
    price = p.number(params, "price", None)
    ticks = spec.to_ticks(price) if price is not None else None
    _check_limits(ctx, spec.instrument, lots, ticks or 0)
    record, trades = ctx.venue.edit(account, order_id, lots, ticks)
    return order_reply(ctx, (record, trades))


def _edit_trigger(ctx: Context, params: dict[str, Any], record: Any) -> dict[str, Any]:
    """``private/edit`` of an untriggered trigger order: ``amount`` (the new quantity),
    ``price`` (limit types), ``trigger_price`` or, for a trailing stop, ``trigger_offset``;
    what is not given stays. One AMEND_TRIGGER command: the order keeps its id and time
    priority; a trigger that would fire at once is refused as at placement (11036)."""
    spec = ctx.venue.catalog.by_id[record.instrument]
    lots = spec.to_lots(p.number(params, "amount"))
    trailing = record.order_type == "trailing_stop"
    limit = record.order_type.endswith("_limit")
    if "price" in params and not limit:
        raise p.invalid_params("price", "a market trigger order has no limit price")
    forbidden = "trigger_price" if trailing else "trigger_offset"
    if forbidden in params:
        raise p.invalid_params(forbidden, f"not a parameter of a {record.order_type} order")
    price = p.number(params, "price", None) if limit else None
    price_ticks = spec.to_ticks(price) if price is not None else record.price_ticks
    if trailing:
        offset = p.number(params, "trigger_offset", None)
        value = spec.to_ticks(offset) if offset is not None else record.trigger_offset_ticks
    else:
        trigger = p.number(params, "trigger_price", None)
        value = spec.to_ticks(trigger) if trigger is not None else record.trigger_price_ticks
    _check_limits(ctx, spec.instrument, lots, max(price_ticks, value))
    amended = ctx.venue.amend_trigger(
        ctx.session.account, record.order_id, lots, price_ticks if limit else 0, value
    )
    return order_reply(ctx, (amended, []))


@method("private/cancel", ("order_id",), scope="trade", cost=ENGINE)
def cancel(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    record = ctx.venue.cancel(ctx.session.account, p.order_id(params))
    return shapes.order(record, ctx.venue.catalog)


@method("private/cancel_all", (), scope="trade", cost=ENGINE)
def cancel_all(ctx: Context, params: dict[str, Any]) -> int:
    return ctx.venue.cancel_all(ctx.session.account)


@method("private/cancel_all_by_instrument", ("instrument_name",), scope="trade", cost=ENGINE)
def cancel_all_by_instrument(ctx: Context, params: dict[str, Any]) -> int:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return ctx.venue.cancel_all(ctx.session.account, spec.instrument)


@method("private/cancel_all_by_currency", ("currency", "kind"), scope="trade", cost=ENGINE)
def cancel_all_by_currency(ctx: Context, params: dict[str, Any]) -> int:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"), p.text(params, "kind", None))
    account = ctx.session.account
    open_on = {record.instrument for record in ctx.venue.open_orders(account)}
    return sum(
        ctx.venue.cancel_all(account, spec.instrument)
        for spec in specs
        if spec.instrument in open_on
    )


@method("private/get_order_state", ("order_id",), scope="read")
def get_order_state(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    record = ctx.venue.order(ctx.session.account, p.order_id(params))
    return shapes.order(record, ctx.venue.catalog)


def _orders(ctx: Context, records: list[Any]) -> list[dict[str, Any]]:
    return [shapes.order(record, ctx.venue.catalog) for record in records]


def _open(ctx: Context, params: dict[str, Any], wanted: set[int]) -> list[dict[str, Any]]:
    """Open orders on ``wanted`` instruments, of the request's ``type`` (default all)."""
    kind = p.choice(params, "type", tuple(trigger_orders.TYPE_FILTERS), "all")
    records = ctx.venue.open_orders(ctx.session.account, wanted)
    return _orders(ctx, trigger_orders.keep(records, kind))


@method("private/get_open_orders_by_instrument", ("instrument_name", "type"), scope="read")
def get_open_orders_by_instrument(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return _open(ctx, params, {spec.instrument})


@method("private/get_open_orders_by_currency", (*_CURRENCY, "type"), scope="read")
def get_open_orders_by_currency(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"), p.text(params, "kind", None))
    return _open(ctx, params, {spec.instrument for spec in specs})


@method("private/get_open_orders", ("kind", "type"), scope="read")
def get_open_orders(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    specs = ctx.venue.catalog.matching(None, p.text(params, "kind", None))
    return _open(ctx, params, {spec.instrument for spec in specs})


def _history(ctx: Context, params: dict[str, Any], wanted: set[int]) -> list[dict[str, Any]]:
    count = p.clamped(params, "count", 20, 1, 1000)
    offset = p.clamped(params, "offset", 0, 0, 1_000_000)
    records = [r for r in ctx.venue.closed_orders(ctx.session.account) if r.instrument in wanted]
    return _orders(ctx, records[offset : offset + count])


@method("private/get_order_history_by_instrument", ("instrument_name", *_PAGE), scope="read")
def get_order_history_by_instrument(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return _history(ctx, params, {spec.instrument})


@method("private/get_order_history_by_currency", (*_CURRENCY, *_PAGE), scope="read")
def get_order_history_by_currency(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"), p.text(params, "kind", None))
    return _history(ctx, params, {spec.instrument for spec in specs})


def _user_trades(
    ctx: Context, params: dict[str, Any], wanted: set[int], with_time: bool
) -> dict[str, Any]:
    account = ctx.session.account
    count = p.clamped(params, "count", 10, 1, 1000)
    start = p.integer(params, "start_timestamp", 0) if with_time else 0
    end = p.integer(params, "end_timestamp", time.time_ns() // 1_000_000) if with_time else 2**62
    p.boolean(params, "include_old", True)
    sorting = p.choice(params, "sorting", ("asc", "desc", "default"), "default")
    trades = [
        t
        for t in ctx.venue.trades_of(account)
        if t.instrument in wanted and start <= t.timestamp_ms <= end
    ]
    chosen = trades[:count] if with_time and sorting == "asc" else trades[-count:]
    if sorting != "asc":
        chosen = chosen[::-1]
    return {
        "trades": [shapes.user_trade(t, account, ctx.venue) for t in chosen],
        "has_more": len(trades) > count,
    }


@method("private/get_user_trades_by_instrument", ("instrument_name", *_TRADES), scope="read")
def get_user_trades_by_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return _user_trades(ctx, params, {spec.instrument}, False)


@method(
    "private/get_user_trades_by_instrument_and_time",
    ("instrument_name", *_TRADES, *_TIMES),
    scope="read",
)
def get_user_trades_by_instrument_and_time(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return _user_trades(ctx, params, {spec.instrument}, True)


def _currency_instruments(ctx: Context, params: dict[str, Any]) -> set[int]:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"), p.text(params, "kind", None))
    return {spec.instrument for spec in specs}


@method("private/get_user_trades_by_currency", (*_CURRENCY, *_TRADES), scope="read")
def get_user_trades_by_currency(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return _user_trades(ctx, params, _currency_instruments(ctx, params), False)


@method(
    "private/get_user_trades_by_currency_and_time", (*_CURRENCY, *_TRADES, *_TIMES), scope="read"
)
def get_user_trades_by_currency_and_time(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return _user_trades(ctx, params, _currency_instruments(ctx, params), True)


@method("private/get_user_trades_by_order", ("order_id",), scope="read")
def get_user_trades_by_order(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    account = ctx.session.account
    record = ctx.venue.order(account, p.order_id(params))
    return [
        shapes.user_trade(t, account, ctx.venue)
        for t in ctx.venue.trades_of(account)
        if record.order_id in (t.maker_order, t.taker_order)
    ]


def _check_currency(params: dict[str, Any], required: bool) -> str:
    currency = p.text(params, "currency") if required else p.text(params, "currency", COLLATERAL)
    return str(currency).upper()


@method("private/get_account_summary", ("currency", "extended", "subaccount_id"), scope="read")
def get_account_summary(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """``extended``: the account's identity fields too (ccxt's fetch_trading_fees asks;
    no ``fees`` overrides exist here, so its list is empty and ccxt keeps the
    instruments' own maker / taker fees)."""
    currency = _check_currency(params, True)
    extended = p.boolean(params, "extended", False)
    account = readable_account(ctx, params)  # a main account's key may name a subaccount
    summary = shapes.account_summary(ctx.venue, account)
    if currency != COLLATERAL:
        # base currencies are not collateral here: an empty summary in that currency
        summary = {
            key: (0.0 if isinstance(value, float) else value) for key, value in summary.items()
        }
        summary["currency"] = currency
    if extended:
        summary.update(_identity(ctx.venue, account), fees=[])
    return summary


def _identity(venue: Any, account: int) -> dict[str, Any]:
    state = venue.exchange.engine.state
    return {
        "id": account,
        "type": "subaccount" if query.parent_of(state, account) else "main",
        "username": f"account-{account}",
        "system_name": "derivex",
        **self_trading_fields(state, account),  # Deribit reads the STP setting here
    }


@method("private/get_account_summaries", (), scope="read")
def get_account_summaries(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    summary = shapes.account_summary(ctx.venue, ctx.session.account)
    return {**_identity(ctx.venue, ctx.session.account), "summaries": [summary]}


@method("private/get_positions", ("currency", "kind", "subaccount_id"), scope="read")
def get_positions(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    return shapes.positions(
        ctx.venue,
        readable_account(ctx, params),  # a main account's key may name a subaccount
        p.text(params, "currency", None),
        p.text(params, "kind", None),
    )


@method("private/get_position", ("instrument_name",), scope="read")
def get_position(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    for position in ctx.venue.exchange.positions(ctx.session.account):
        if position.instrument == spec.instrument:
            return shapes.position(ctx.venue, spec, position.qty_lots, position.basis_units)
    return shapes.position(ctx.venue, spec, 0, 0)
