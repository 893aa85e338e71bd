"""History methods, answered from ``history.History`` (bounded, kept since the gateway
started) and the engine's index history:

- ``public/get_funding_rate_history`` (ccxt ``fetch_funding_rate_history``): hourly
  ``{timestamp, index_price, prev_index_price, interest_8h, interest_1h}``;
- ``public/get_historical_volatility`` (ccxt ``fetch_volatility_history``): ``[[hour, vol
  %]]``, the annualised realised volatility of the index samples within each hour
  (``sqrt(sum of squared log returns / hours) * sqrt(8760) * 100``);
- ``public/get_mark_price_history``: ``[[ms, mark]]``;
- ``public/get_delivery_prices``, ``public/get_last_settlements_by_instrument`` /
  ``_by_currency``: expiry deliveries and hourly funding settlements;
- ``private/get_transaction_log``: the caller's trades, deposits, withdrawals, funding and
  deliveries, newest first; ``private/get_settlement_history_by_instrument`` /
  ``_by_currency``: its funding and delivery entries.

Every answer is O(what is kept for it) and at most ``count`` entries.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from derivex.core.records import Underlying
from derivex.gateway import params as p
from derivex.gateway import shapes
from derivex.gateway.catalog import COLLATERAL, UNITS_PER_USDC
from derivex.gateway.errors import INVALID_INSTRUMENT, RpcError
from derivex.gateway.history import HOUR_MS, history_of
from derivex.gateway.methods import Context, method
from derivex.gateway.subaccount_api import readable_account

HOURS_PER_YEAR = 24 * 365
_TIMES = ("start_timestamp", "end_timestamp")
_SETTLEMENTS = ("type", "count", "continuation", "search_start_timestamp")


def _range(params: dict[str, Any], required: bool = False) -> tuple[int, int]:
    now = time.time_ns() // 1_000_000
    if required:
        start, end = p.integer(params, "start_timestamp"), p.integer(params, "end_timestamp")
    else:
        start = p.integer(params, "start_timestamp", 0)
        end = p.integer(params, "end_timestamp", now)
    if end < start:
        raise p.invalid_params("end_timestamp", "before start_timestamp")
    return start, end


def _period_hours(ctx: Context) -> float:
    return int(ctx.venue.exchange.engine.config.funding_period_ms) / HOUR_MS


@method("public/get_funding_rate_history", ("instrument_name", *_TIMES))
def get_funding_rate_history(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    if spec.kind != "perpetual":
        raise RpcError(
            INVALID_INSTRUMENT,
            "invalid_or_unsupported_instrument",
            {"param": "instrument_name", "reason": "not a perpetual"},
        )
    start, end = _range(params, required=True)
    period = _period_hours(ctx)
    return [
        {
            "timestamp": entry["hour"],
            "index_price": spec.price(entry["index"]),
            "prev_index_price": spec.price(entry["prev"]),
            "interest_8h": entry["rate"] / 1e9 * 8 / period,
            "interest_1h": entry["rate"] / 1e9 / period,
        }
        for entry in history_of(ctx.venue).funding.get(spec.instrument, ())
        if start <= entry["hour"] <= end
    ]


def _base(ctx: Context, currency: Any, param: str) -> str:
    base = str(currency).upper()
    if base not in Underlying.__members__ or not ctx.venue.catalog.matching(base):
        raise p.invalid_params(param, "no index for this currency")
    return base


@method("public/get_historical_volatility", ("currency",))
def get_historical_volatility(ctx: Context, params: dict[str, Any]) -> list[list[float]]:
    base = _base(ctx, p.text(params, "currency"), "currency")
    samples = ctx.venue.exchange.index_history(base)
    out: list[list[float]] = []
    squares, hours, hour = 0.0, 0.0, -1
    for (t0, p0), (t1, p1) in itertools.pairwise(samples):
        if p0 <= 0 or p1 <= 0 or t1 <= t0:
            continue
        bucket = (t1 // 1_000_000) - (t1 // 1_000_000) % HOUR_MS
        if bucket != hour:
            if hours > 0:
                out.append([hour, math.sqrt(squares / hours * HOURS_PER_YEAR) * 100])
            squares, hours, hour = 0.0, 0.0, bucket
        squares += math.log(p1 / p0) ** 2
        hours += (t1 - t0) / 3.6e12
    if hours > 0:
        out.append([hour, math.sqrt(squares / hours * HOURS_PER_YEAR) * 100])
    return out


@method("public/get_mark_price_history", ("instrument_name", *_TIMES))
def get_mark_price_history(ctx: Context, params: dict[str, Any]) -> list[list[float]]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    start, end = _range(params, required=True)
    marks = history_of(ctx.venue).marks.get(spec.instrument, ())
    return [[ms, spec.price(mark)] for ms, mark in marks if start <= ms <= end]


@method("public/get_delivery_prices", ("index_name", "offset", "count"))
def get_delivery_prices(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = p.text(params, "index_name")
    base, _, quote = name.partition("_")
    if quote.upper() != COLLATERAL:
        raise p.invalid_params("index_name", "unknown index")
    base = _base(ctx, base, "index_name")
    offset = p.clamped(params, "offset", 0, 0, 1_000_000)
    count = p.clamped(params, "count", 10, 1, 1000)
    by_day: dict[str, float] = {}
    catalog = ctx.venue.catalog
    for ms, instrument, price in reversed(history_of(ctx.venue).deliveries):
        spec = catalog.by_id.get(instrument)
        if spec is not None and spec.base == base:
            day = time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))
            by_day.setdefault(day, spec.price(price))
    data = [{"date": d, "delivery_price": v} for d, v in by_day.items()]
    return {"data": data[offset : offset + count], "records_total": len(data)}


def _public_settlements(ctx: Context, params: dict[str, Any], wanted: set[int]) -> dict[str, Any]:
    kind = p.choice(params, "type", ("settlement", "delivery", "bankruptcy"), None)
    count = p.clamped(params, "count", 20, 1, 1000)
    p.text(params, "continuation", None)
    before = p.integer(params, "search_start_timestamp", 2**62)
    history, catalog = history_of(ctx.venue), ctx.venue.catalog
    out: list[dict[str, Any]] = []
    if kind in (None, "delivery"):
        for ms, instrument, price in history.deliveries:
            spec = catalog.by_id[instrument]
            if instrument in wanted and ms <= before:
                index = ctx.venue.index_ticks(spec.base)
                out.append(
                    {
                        "type": "delivery",
                        "timestamp": ms,
                        "instrument_name": spec.name,
                        "mark_price": spec.price(price),
                        "index_price": spec.price(index),
                        "session_profit_loss": 0.0,
                    }
                )
    if kind in (None, "settlement"):
        period = _period_hours(ctx)
        for instrument, entries in history.funding.items():
            if instrument not in wanted:
                continue
            spec = catalog.by_id[instrument]
            for entry in entries:
                if entry["hour"] <= before:
                    out.append(
                        {
                            "type": "settlement",
                            "timestamp": entry["hour"],
                            "instrument_name": spec.name,
                            "index_price": spec.price(entry["index"]),
                            "mark_price": spec.price(ctx.venue.mark_ticks(instrument)),
                            "funding": entry["rate"] / 1e9 * 8 / period,
                            "session_profit_loss": 0.0,
                        }
                    )
    out.sort(key=lambda s: s["timestamp"], reverse=True)
    return {"settlements": out[:count], "continuation": "none"}


@method("public/get_last_settlements_by_instrument", ("instrument_name", *_SETTLEMENTS))
def get_last_settlements_by_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return _public_settlements(ctx, params, {spec.instrument})


@method("public/get_last_settlements_by_currency", ("currency", *_SETTLEMENTS))
def get_last_settlements_by_currency(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"))
    return _public_settlements(ctx, params, {s.instrument for s in specs})


def _entry(ctx: Context, entry: dict[str, Any]) -> dict[str, Any]:
    """A cash entry of ``History.logs`` as Deribit's log / settlement object."""
    spec = ctx.venue.catalog.by_id.get(entry["instrument"])
    out = {
        "id": entry["seq"],
        "type": entry["type"],
        "timestamp": entry["timestamp"],
        "currency": COLLATERAL,
        "instrument_name": spec.name if spec is not None else None,
        "change": entry["cash"] / UNITS_PER_USDC,
        "cashflow": entry["cash"] / UNITS_PER_USDC,
        "balance": entry["balance"] / UNITS_PER_USDC,
    }
    if spec is not None:
        out["position"] = spec.amount(entry["position"])
        out["session_profit_loss"] = out["profit_loss"] = out["change"]
        if entry["type"] == "settlement":
            out["funding"] = out["change"]
            out["interest_pl"] = out["change"]
        else:
            out["mark_price"] = out["index_price"] = out["price"] = spec.price(entry["price"])
    return out


def _trade_entry(ctx: Context, trade: Any, account: int) -> dict[str, Any]:
    shaped = shapes.user_trade(trade, account, ctx.venue)
    return {
        "id": trade.trade_id,
        "type": "trade",
        "timestamp": trade.timestamp_ms,
        "currency": COLLATERAL,
        "instrument_name": shaped["instrument_name"],
        "side": shaped["direction"],
        "amount": shaped["amount"],
        "price": shaped["price"],
        "commission": shaped["fee"],
        "change": -shaped["fee"],
        "cashflow": -shaped["fee"],
        "trade_id": trade.trade_id,
        "order_id": shaped["order_id"],
        "balance": None,  # (trades carry no balance; the account summary has it)
    }


@method(
    "private/get_transaction_log",
    ("currency", *_TIMES, "query", "count", "continuation", "subaccount_id"),
    scope="read",
)
def get_transaction_log(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    currency = p.text(params, "currency").upper()
    start, end = _range(params, required=True)
    wanted = p.text(params, "query", None)
    count = p.clamped(params, "count", 100, 1, 1000)
    p.text(params, "continuation", None)
    account = readable_account(ctx, params)  # a main account's key may name a subaccount
    logs: list[dict[str, Any]] = []
    if currency in (COLLATERAL, *ctx.venue.catalog.currencies()):
        logs = [_entry(ctx, e) for e in history_of(ctx.venue).log_of(account)]
        logs += [_trade_entry(ctx, t, account) for t in ctx.venue.trades_of(account)]
    logs = [
        e
        for e in logs
        if start <= e["timestamp"] <= end
        and (wanted is None or e["type"] == wanted)
        and (currency == COLLATERAL or (e["instrument_name"] or "").startswith(currency))
    ]
    # newest first: by time, then by command (a trade id starts with its command's seq)
    logs.sort(key=lambda e: (e["timestamp"], int(str(e["id"]).split("-")[0])))
    logs.reverse()
    return {"logs": logs[:count], "continuation": None}


def _settlements(ctx: Context, params: dict[str, Any], wanted: set[int]) -> dict[str, Any]:
    kind = p.choice(params, "type", ("settlement", "delivery", "bankruptcy"), None)
    count = p.clamped(params, "count", 20, 1, 1000)
    p.text(params, "continuation", None)
    before = p.integer(params, "search_start_timestamp", 2**62)
    entries = [
        _entry(ctx, e)
        for e in reversed(history_of(ctx.venue).log_of(ctx.session.account))
        if e["instrument"] in wanted
        and e["type"] in ("settlement", "delivery")
        and (kind is None or e["type"] == kind)
        and e["timestamp"] <= before
    ]
    return {"settlements": entries[:count], "continuation": "none"}


@method(
    "private/get_settlement_history_by_instrument", ("instrument_name", *_SETTLEMENTS), scope="read"
)
def get_settlement_history_by_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    return _settlements(ctx, params, {spec.instrument})


@method("private/get_settlement_history_by_currency", ("currency", *_SETTLEMENTS), scope="read")
def get_settlement_history_by_currency(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    specs = ctx.venue.catalog.matching(p.text(params, "currency"))
    return _settlements(ctx, params, {s.instrument for s in specs})
