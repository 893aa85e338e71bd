"""Public methods: currencies, instruments, books, tickers, trades, index and funding,
time and status, authentication and public subscriptions."""

from __future__ import annotations

import time
from typing import Any

from derivex.core.records import Underlying
from derivex.gateway import params as p
from derivex.gateway import shapes
from derivex.gateway.auth import MAX_TOKENS_PER_KEY
from derivex.gateway.catalog import COLLATERAL
from derivex.gateway.errors import INVALID_INSTRUMENT, RpcError
from derivex.gateway.feeds import served
from derivex.gateway.methods import Context, method

VERSION = "2.1.1"
CURRENCY_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "USDC": "USD Coin"}


# parameter lists shared by several registrations (``method``'s ``params``)
_INSTRUMENT = ("instrument_name",)
_TRADES = ("count", "include_old", "sorting")
_TIMES = ("start_timestamp", "end_timestamp")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@method("public/get_time", ())
def get_time(ctx: Context, params: dict[str, Any]) -> int:
    return _now_ms()


@method("public/status", ())
def status(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return {"locked": "false", "locked_indices": []}


@method("public/test", ())
def test(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return {"version": VERSION}


@method("public/hello", ("client_name", "client_version"))
def hello(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return {"version": VERSION}


@method("public/get_currencies", ())
def get_currencies(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "currency": code,
            "currency_long": CURRENCY_NAMES.get(code, code),
            "coin_type": "STABLE"
            if code == COLLATERAL
            else "BITCOIN"
            if code == "BTC"
            else "ETHER",
            "fee_precision": 6 if code == COLLATERAL else 8,
            "min_confirmations": 1,
            "min_withdrawal_fee": 0.0,
            "withdrawal_fee": 0.0,
            "withdrawal_priorities": [],
            "apr": 0.0,
        }
        for code in ctx.venue.catalog.currencies()
    ]


@method("public/get_instruments", ("currency", "kind", "expired"))
def get_instruments(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    currency = p.text(params, "currency", None)
    kind = p.text(params, "kind", None)
    if kind not in (None, "any", "future", "option", "spot", "future_combo", "option_combo"):
        raise p.invalid_params("kind", "unknown kind")
    expired = p.boolean(params, "expired", False)
    if expired:
        return []
    return [spec.deribit() for spec in ctx.venue.catalog.matching(currency, kind)]


@method("public/get_instrument", _INSTRUMENT)
def get_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return ctx.venue.catalog.get(p.text(params, "instrument_name")).deribit()


@method("public/get_order_book", ("instrument_name", "depth"))
def get_order_book(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    depth = p.clamped(params, "depth", 100, 1, 10_000)
    return shapes.order_book(ctx.venue, spec, depth)


@method("public/get_order_book_by_instrument_id", ("instrument_id", "depth"))
def get_order_book_by_id(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.by_id.get(p.integer(params, "instrument_id"))
    if spec is None:
        raise RpcError(INVALID_INSTRUMENT, "invalid_or_unsupported_instrument")
    return shapes.order_book(ctx.venue, spec, p.clamped(params, "depth", 100, 1, 10_000))


@method("public/ticker", _INSTRUMENT)
def ticker(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return shapes.ticker(ctx.venue, ctx.venue.catalog.get(p.text(params, "instrument_name")))


def _summary(ctx: Context, spec: Any) -> dict[str, Any]:
    tick = shapes.ticker(ctx.venue, spec)
    summary = {
        "instrument_name": spec.name,
        "creation_timestamp": tick["timestamp"],
        "last": tick["last_price"],
        "bid_price": tick["best_bid_price"] or None,
        "ask_price": tick["best_ask_price"] or None,
        "high": tick["stats"]["high"],
        "low": tick["stats"]["low"],
        "volume": tick["stats"]["volume"],
        "volume_usd": tick["stats"]["volume_usd"],
        "mark_price": tick["mark_price"],
        "open_interest": tick["open_interest"],
        "base_currency": spec.base,
        "quote_currency": COLLATERAL,
        "estimated_delivery_price": tick["index_price"],
        "price_change": tick["stats"]["price_change"],
        "mid_price": (
            (tick["best_bid_price"] + tick["best_ask_price"]) / 2
            if tick["best_bid_price"] and tick["best_ask_price"]
            else None
        ),
    }
    if "mark_iv" in tick:  # options (Deribit's summary carries it; the term structure reads it)
        summary["mark_iv"] = tick["mark_iv"]
    return summary


@method("public/get_book_summary_by_currency", ("currency", "kind"))
def get_book_summary_by_currency(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"), p.text(params, "kind", None))
    return [_summary(ctx, spec) for spec in specs]


@method("public/get_book_summary_by_instrument", _INSTRUMENT)
def get_book_summary_by_instrument(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [_summary(ctx, ctx.venue.catalog.get(p.text(params, "instrument_name")))]


def _trades(ctx: Context, params: dict[str, Any], with_time: bool) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    count = p.clamped(params, "count", 10, 1, 1000)
    start = p.integer(params, "start_timestamp", 0) if with_time else 0
    end = p.integer(params, "end_timestamp", _now_ms()) if with_time else 2**62
    p.boolean(params, "include_old", True)
    sorting = p.choice(params, "sorting", ("asc", "desc", "default"), "default")
    trades = [
        t
        for t in ctx.venue.public_trades.get(spec.instrument, ())
        if start <= t.timestamp_ms <= end
    ]
    if with_time and sorting == "asc":
        chosen = trades[:count]
    else:
        chosen = trades[-count:]
    if sorting != "asc":
        chosen = chosen[::-1]
    return {
        "trades": [shapes.public_trade(t, spec) for t in chosen],
        "has_more": len(trades) > count,
    }


@method("public/get_last_trades_by_instrument", (*_INSTRUMENT, *_TRADES))
def get_last_trades_by_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return _trades(ctx, params, False)


@method("public/get_last_trades_by_instrument_and_time", (*_INSTRUMENT, *_TRADES, *_TIMES))
def get_last_trades_by_instrument_and_time(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return _trades(ctx, params, True)


@method("public/get_funding_rate_value", (*_INSTRUMENT, *_TIMES))
def get_funding_rate_value(ctx: Context, params: dict[str, Any]) -> float:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    p.integer(params, "start_timestamp", 0)
    p.integer(params, "end_timestamp", 0)
    if spec.kind != "perpetual":
        raise RpcError(
            INVALID_INSTRUMENT,
            "invalid_or_unsupported_instrument",
            {"param": "instrument_name", "reason": "not a perpetual"},
        )
    return shapes.funding_rate(ctx.venue, spec)


@method("public/get_index_price", ("index_name",))
def get_index_price(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = p.text(params, "index_name")
    base = name.split("_")[0].upper()
    if base not in Underlying.__members__ or not name.lower().endswith("_usdc"):
        raise p.invalid_params("index_name", "unknown index")
    specs = ctx.venue.catalog.matching(base)
    if not specs:
        raise p.invalid_params("index_name", "unknown index")
    price = specs[0].price(ctx.venue.index_ticks(base))
    return {"index_price": price, "estimated_delivery_price": price}


@method("public/get_index_price_names", ())
def get_index_price_names(ctx: Context, params: dict[str, Any]) -> list[str]:
    return [f"{code.lower()}_usdc" for code in ctx.venue.catalog.currencies() if code != COLLATERAL]


@method(
    "public/auth",
    (
        "grant_type",
        "client_id",
        "client_secret",
        "refresh_token",
        "timestamp",
        "signature",
        "nonce",
        "data",
    ),
)
def auth(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    key, result = ctx.auth.auth(params, ctx.session.origin)
    ctx.session.key = key  # a WebSocket stays authenticated as this key
    tokens = ctx.session.tokens  # what its logout invalidates
    tokens.append(result["access_token"])
    if len(tokens) > MAX_TOKENS_PER_KEY:  # bounded per session too: the oldest ends
        ctx.auth.logout([tokens.pop(0)])
    return result


@method("public/set_heartbeat", ("interval",))
def set_heartbeat(ctx: Context, params: dict[str, Any]) -> str:
    least = ctx.connection.heartbeat_min_s if ctx.connection is not None else 10
    interval = p.integer(params, "interval", low=least, high=3600)
    if ctx.connection is not None:
        ctx.connection.set_heartbeat(interval)
    return "ok"


@method("public/disable_heartbeat", ())
def disable_heartbeat(ctx: Context, params: dict[str, Any]) -> str:
    if ctx.connection is not None:
        ctx.connection.set_heartbeat(0)
    return "ok"


def _subscribe(ctx: Context, params: dict[str, Any], private: bool) -> list[str]:
    channels = p.string_list(params, "channels")
    if ctx.hub is None or ctx.connection is None:
        raise RpcError(10030, "must_be_websocket_request")
    for name in channels:  # checked before any is subscribed: all or none
        if not served(name):
            raise p.invalid_params("channels", f"channel not served: {name[:128]}")
    return ctx.hub.subscribe(ctx.connection, channels, private)


@method("public/subscribe", ("channels",))
def public_subscribe(ctx: Context, params: dict[str, Any]) -> list[str]:
    return _subscribe(ctx, params, False)


@method("public/unsubscribe", ("channels",))
def public_unsubscribe(ctx: Context, params: dict[str, Any]) -> list[str]:
    channels = p.string_list(params, "channels")
    if ctx.hub is None or ctx.connection is None:
        return []
    return ctx.hub.unsubscribe(ctx.connection, channels)


@method("public/unsubscribe_all", ())
def public_unsubscribe_all(ctx: Context, params: dict[str, Any]) -> str:
    if ctx.hub is not None and ctx.connection is not None:
        ctx.hub.drop(ctx.connection)
    return "ok"


@method("private/subscribe", ("channels",), scope="read")
def private_subscribe(ctx: Context, params: dict[str, Any]) -> list[str]:
    return _subscribe(ctx, params, True)


@method("private/unsubscribe", ("channels",), scope="read")
def private_unsubscribe(ctx: Context, params: dict[str, Any]) -> list[str]:
    return public_unsubscribe(ctx, params)


@method("private/unsubscribe_all", (), scope="read")
def private_unsubscribe_all(ctx: Context, params: dict[str, Any]) -> str:
    return public_unsubscribe_all(ctx, params)


@method("private/logout", ("invalidate_token",), scope="read")
def logout(ctx: Context, params: dict[str, Any]) -> str:
    """As Deribit: the tokens issued on this session (and an ``access_token`` passed
    here), with their refresh tokens, stop working unless ``invalidate_token`` is false;
    the session drops its subscriptions and authentication, and a WebSocket is closed
    after the reply."""
    invalidate = p.boolean(params, "invalidate_token", True)
    tokens = list(ctx.session.tokens)
    token = params.get("access_token")
    if isinstance(token, str):
        tokens.append(token)
    if invalidate:
        ctx.auth.logout(tokens)
    ctx.session.tokens.clear()
    ctx.session.key = None
    if ctx.hub is not None and ctx.connection is not None:
        ctx.hub.drop(ctx.connection)
    return "ok"
