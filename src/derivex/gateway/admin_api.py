"""Read-only operator methods (scope ``admin``): the aggregates the operator dashboard shows.

Every method needs a key with the ``admin`` scope (``derivex keys create --scope admin``); a
trading key (``read``/``trade``) is refused with 13021 ``forbidden``. None of them changes
anything. Amounts are in USDC, prices in the instrument's quote units, times in ms.

- ``private/admin_get_insurance_fund``: the fund account's balance and its recent history.
- ``private/admin_get_liquidations``: LIQUIDATION events by instrument and stage, and the
  latest events (what this gateway process walked since it started).
- ``private/admin_get_markets``: per perpetual: open interest, funding, mark and index, the
  index's age and sources.
- ``private/admin_get_risk_ranking``: the accounts with the highest maintenance-margin usage.
- ``private/admin_get_engine_health``: last sequence number, commands per second, accounts,
  open orders.
- ``private/admin_subscribe``: all of the above pushed once a second on ``admin.overview``.

The controls that do change something (halt / resume, block / unblock) are in
``admin_control.py``, the index override (``private/admin_set_index``) in ``admin_index.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from derivex.core import query, risk_views
from derivex.core.records import SYSTEM_ACCOUNTS, SystemAccount, Underlying
from derivex.gateway import admin_control, replica_roots, shapes
from derivex.gateway import admin_index as _admin_index  # noqa: F401 (registers its method)
from derivex.gateway import params as p
from derivex.gateway.admin_feed import CHANNEL, feed_of
from derivex.gateway.catalog import UNITS_PER_USDC
from derivex.gateway.methods import Context, method
from derivex.gateway.oversight import watch
from derivex.journal.roots import full_root
from derivex.oracle import OPERATOR_SOURCE_ID

if TYPE_CHECKING:
    from derivex.gateway.venue import Venue

ADMIN = "admin"
RANKING_SCAN_LIMIT = 100_000  # accounts a ranking reads at most (O(accounts) per call)
ROOT_SCAN_LIMIT = 10_000  # accounts up to which a process without a journal computes the root


def _usdc(units: int) -> float:
    return units / UNITS_PER_USDC


@method("private/admin_get_insurance_fund", ("count",), scope=ADMIN)
def get_insurance_fund(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """``count``: history points wanted (the latest; default 500)."""
    return insurance_fund(ctx.venue, p.clamped(params, "count", 500, 1, 2_000))


def insurance_fund(venue: Venue, count: int) -> dict[str, Any]:
    oversight = watch(venue)
    balance = oversight.sample_fund()
    history = list(oversight.fund)[-count:]
    return {
        "account": int(SystemAccount.INSURANCE_FUND),
        "balance": _usdc(balance),
        "history": [[ms, _usdc(units)] for ms, units in history],
        "inflows": _usdc(oversight.fund_inflows),
        "draws": _usdc(oversight.fund_draws),
    }


@method("private/admin_get_liquidations", ("count",), scope=ADMIN)
def get_liquidations(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """``count``: latest events wanted (default 50)."""
    return liquidations(ctx.venue, p.clamped(params, "count", 50, 1, 200))


def liquidations(venue: Venue, count: int) -> dict[str, Any]:
    oversight = watch(venue)
    feed = list(oversight.feed)[-count:][::-1]
    catalog = venue.catalog
    events = []
    for event in feed:
        spec = catalog.by_name.get(event.instrument) if event.instrument else None
        events.append(
            {
                "seq": event.seq,
                "timestamp": event.timestamp_ms,
                "instrument_name": event.instrument,
                "account": event.account,
                "stage": event.stage,
                "price": spec.price(event.price_ticks) if spec is not None else 0.0,
                "amount": spec.amount(event.qty_lots) if spec is not None else 0.0,
                "value": _usdc(event.amount_units),
            }
        )
    return {
        "since": oversight.started_ms,
        "totals": oversight.liquidation_totals(),
        "latest": events,
    }


@method("private/admin_get_markets", (), scope=ADMIN)
def get_markets(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    return markets(ctx.venue)


def markets(venue: Venue) -> list[dict[str, Any]]:
    now_ms = venue.now_ms()
    rows = []
    sources = watch(venue).sources
    for spec in venue.catalog:
        if spec.kind != "perpetual":
            continue
        tick = shapes.ticker(venue, spec)
        index = venue.exchange.index(spec.base)
        age = now_ms - index.ts_ns // 1_000_000 if index.ts_ns else None
        mark, index_price = tick["mark_price"], tick["index_price"]
        legs = sources.get(int(Underlying[spec.base]), [])
        rows.append(
            {
                "instrument_name": spec.name,
                "open_interest": tick["open_interest"],
                "funding_8h": tick.get("funding_8h", 0.0),
                "mark_price": mark,
                "index_price": index_price,
                "mark_index_deviation": (mark - index_price) / index_price if index_price else None,
                "index_status": index.status,
                "index_age_ms": age,
                "index_sources": index.sources,
                "sources": [
                    {
                        "source": source,
                        "name": "operator" if source == OPERATOR_SOURCE_ID else f"source {source}",
                        "price": spec.price(ticks),
                        "staleness_ms": now_ms - ts_ns // 1_000_000,
                        "deviation": (spec.price(ticks) - index_price) / index_price
                        if index_price
                        else None,
                    }
                    for source, ts_ns, ticks in legs
                ],
                "best_bid_price": tick["best_bid_price"],
                "best_ask_price": tick["best_ask_price"],
            }
        )
    return rows


@method("private/admin_get_risk_ranking", ("count",), scope=ADMIN, cost=10)
def get_risk_ranking(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The ``count`` (default 10) trading accounts with the highest maintenance margin as a
    share of equity (1.0 = at liquidation; an account with margin and no equity ranks
    first), and how many accounts are in liquidation. Cost: O(accounts)."""
    return risk_ranking(ctx.venue, p.clamped(params, "count", 10, 1, 100))


def risk_ranking(venue: Venue, count: int) -> dict[str, Any]:
    exchange = venue.exchange
    accounts = min(query.account_count(exchange.engine.state), RANKING_SCAN_LIMIT)
    ranked: list[tuple[float, int, Any]] = []
    in_liquidation = 0
    for account in range(SYSTEM_ACCOUNTS, accounts):
        summary = exchange.account_summary(account)
        if summary.state != "normal":
            in_liquidation += 1
        if summary.maintenance_margin_units <= 0:
            continue
        equity = summary.equity_units
        usage = summary.maintenance_margin_units / equity if equity > 0 else float("inf")
        ranked.append((usage, account, summary))
    ranked.sort(key=lambda row: (-row[0], row[1]))
    state = exchange.engine.state
    adl: list[dict[str, Any]] = []
    for spec in venue.catalog:
        if spec.kind != "perpetual":
            continue
        queues = risk_views.adl_ranking(state, spec.instrument, min(count, 5))
        for side, rows in queues.items():
            adl.extend(
                {
                    "instrument_name": spec.name,
                    "side": side,
                    "rank": rank,
                    "account": account,
                    "size": spec.amount(qty),
                    "score": score / 1e6,
                }
                for rank, (account, qty, score) in enumerate(rows, start=1)
            )
    return {
        "accounts": accounts - SYSTEM_ACCOUNTS,
        "in_liquidation": in_liquidation,
        "top": [
            {
                "account": account,
                "state": summary.state,
                "equity": _usdc(summary.equity_units),
                "maintenance_margin": _usdc(summary.maintenance_margin_units),
                "initial_margin": _usdc(summary.initial_margin_units),
                "margin_usage": usage if usage != float("inf") else None,
            }
            for usage, account, summary in ranked[:count]
        ],
        "adl": adl,
    }


@method("private/admin_get_engine_health", (), scope=ADMIN)
def get_engine_health(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Commands per second is measured between this gateway's calls of this method (over
    the last 10 s of them): None on the first call."""
    return engine_health(ctx.venue)


def engine_health(venue: Venue) -> dict[str, Any]:
    state = venue.exchange.engine.state
    commands = query.commands_processed(state)
    oversight = watch(venue)
    journal = getattr(venue.exchange, "journal", None)
    return {
        "last_seq": commands,
        "commands_per_second": oversight.command_rate(commands),
        "accounts": query.account_count(state) - SYSTEM_ACCOUNTS,
        "open_orders": len(venue.orders),
        "timestamp": venue.now_ms(),
        "batch_latency": oversight.batch_latency(),
        # commands appended to the journal and not yet on stable storage (None: this
        # process holds no journal, e.g. a gateway worker)
        "journal_lag": journal.last_seq - journal.durable_seq if journal is not None else None,
        "journal_fsync": getattr(journal, "fsync", None),  # "none": nothing is ever durable
        "state_root": _state_root(journal, state),
        # cluster mode: the followers' state roots against the leader's (None: n/a)
        "replica_agreement": replica_roots.agreement(venue),
        # which process answers (with --workers N the kernel picks one per connection)
        "process": os.getpid(),
    }


def _state_root(journal: Any, state: Any) -> str | None:
    """The state root now: the journal's incremental tracker (O(changed leaves)), else from
    scratch when the venue is small (O(accounts)); None beyond that."""
    roots = getattr(journal, "roots", None)
    if roots is not None:
        return str(roots.update(state).hex())
    if query.account_count(state) <= ROOT_SCAN_LIMIT:
        return full_root(state).hex()
    return None


def overview(venue: Venue) -> dict[str, Any]:
    """Everything the operator page shows, in one object (what ``admin.overview`` carries):
    ``fund``, ``liquidations``, ``markets``, ``ranking``, ``health``. Cost: O(accounts)."""
    return {
        "fund": insurance_fund(venue, 500),
        "liquidations": liquidations(venue, 12),
        "markets": markets(venue),
        "ranking": risk_ranking(venue, 10),
        "health": engine_health(venue),
        "controls": admin_control.controls(venue),
    }


@method("private/admin_subscribe", (), scope=ADMIN)
def subscribe(ctx: Context, params: dict[str, Any]) -> list[str]:
    """Subscribe this WebSocket to ``admin.overview``: ``overview`` now, then every second
    while the connection is open and its key keeps the admin scope (a logout or a
    revocation ends it). The overview is computed once a second for all subscribers of this
    gateway process, and not at all without one."""
    if ctx.connection is None:
        raise p.invalid_params("transport", "subscriptions need a WebSocket")
    feed_of(ctx.venue, overview).add(ctx.connection)
    return [CHANNEL]
