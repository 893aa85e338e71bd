"""What the dashboard needs from the gateway, without a browser: the pages and files it
serves (and the JSON index moved off ``/``), candles that equal a recomputation from the
trades, the ``admin`` scope guarding the ``private/admin_*`` methods, and liquidation counts
that equal the engine's LIQUIDATION events."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import tomllib
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from derivex.core.records import EventKind, LiquidationStage
from derivex.gateway import admin_api
from derivex.gateway.candles import candles
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.errors import FORBIDDEN
from derivex.gateway.methods import Context
from derivex.gateway.oversight import watch
from derivex.gateway.pages import CSP
from derivex.gateway.venue import Venue
from derivex.ui import STATIC_DIR, UI_DIR, VENDOR_DIR
from tests.core.test_lifecycle import index, leveraged_long, venue
from tests.gateway.conftest import Server, symbol


def _get(url: str, accept: str = "*/*") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_pages_files_and_the_json_index(server: Server) -> None:
    status, headers, body = _get(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="/ui/trader.js"' in body and headers["Content-Security-Policy"] == CSP
    status, headers, body = _get(server.url + "/operator")
    assert status == 200 and b'src="/ui/operator.js"' in body
    index_json = json.loads(_get(server.url + "/index.json")[2])
    assert index_json["websocket"] == "/ws/api/v2" and index_json["operator"] == "/operator"
    # a client that asks for JSON still gets the index at /
    status, headers, body = _get(server.url + "/", accept="application/json")
    assert headers["Content-Type"].startswith("application/json") and json.loads(body) == index_json
    status, headers, body = _get(server.url + "/ui/trader.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert body == (STATIC_DIR / "trader.js").read_bytes()
    chart = "/ui/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"
    status, headers, body = _get(server.url + chart)
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    for licence in ("lightweight-charts/LICENSE", "lightweight-charts/NOTICE", "uplot/LICENSE"):
        assert _get(server.url + "/ui/vendor/" + licence)[2] == (VENDOR_DIR / licence).read_bytes()
    for missing in ("/ui/nothing.js", "/ui/../pyproject.toml", "/ui/__init__.py"):
        assert _get(server.url + missing)[0] == 404


def test_every_dashboard_file_ships_as_package_data() -> None:
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["derivex.ui"]
    files = [
        path.relative_to(UI_DIR).as_posix()
        for path in UI_DIR.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert len(files) >= 15
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


def test_candles_bucket_trades() -> None:
    minute = 60_000
    trades = [(5, 10.0, 1.0), (59_999, 12.0, 0.5), (60_000, 11.0, 2.0), (185_000, 9.0, 1.0)]
    out = candles(trades, minute)
    assert out["ticks"] == [0, minute, 3 * minute]
    assert out["open"] == [10.0, 11.0, 9.0] and out["close"] == [12.0, 11.0, 9.0]
    assert out["high"] == [12.0, 11.0, 9.0] and out["low"] == [10.0, 11.0, 9.0]
    assert out["volume"] == [1.5, 2.0, 1.0] and out["cost"] == [16.0, 22.0, 9.0]


def _recompute(trades: list[dict[str, Any]], width_ms: int) -> list[list[float]]:
    """OHLCV by an independent route: group ccxt's trades by bucket, in time order."""
    buckets: dict[int, list[dict[str, Any]]] = {}
    for trade in sorted(trades, key=lambda t: (t["timestamp"], int(t["info"]["trade_seq"]))):
        buckets.setdefault(trade["timestamp"] // width_ms * width_ms, []).append(trade)
    return [
        [
            start,
            group[0]["price"],
            max(t["price"] for t in group),
            min(t["price"] for t in group),
            group[-1]["price"],
            pytest.approx(sum(t["amount"] for t in group)),
        ]
        for start, group in sorted(buckets.items())
    ]


def test_candles_equal_a_recomputation_from_the_trades(server: Server) -> None:
    name = server.option()
    maker, taker = server.sync(server.key()), server.sync(server.key())
    market = symbol(maker, name)
    for price, amount in ((1000, 0.3), (1100, 0.2), (950, 0.5), (1050, 0.1)):
        maker.create_order(market, "limit", "sell", amount, price)
        taker.create_order(market, "limit", "buy", amount, price)
    trades = taker.fetch_trades(market, limit=100)
    assert len(trades) == 4
    for timeframe, width in (("1m", 60_000), ("1d", 86_400_000)):
        # ccxt's fetch_ohlcv reads public/get_tradingview_chart_data
        ohlcv = taker.fetch_ohlcv(market, timeframe, since=trades[0]["timestamp"] - width)
        assert ohlcv == _recompute(trades, width)
    with pytest.raises(Exception, match="resolution"):
        taker.public_get_get_tradingview_chart_data(
            {
                "instrument_name": name,
                "start_timestamp": 0,
                "end_timestamp": 1,
                "resolution": "7",
            }
        )


class _Socket:
    """A JSON-RPC client over the server's WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(
            json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        )
        while True:
            reply = json.loads(self.ws.recv(timeout=10))
            if reply.get("id") == self.next_id:
                return reply  # type: ignore[no-any-return]

    def notification(self, channel: str) -> Any:
        while True:
            message = json.loads(self.ws.recv(timeout=10))
            if message.get("params", {}).get("channel") == channel:
                return message["params"]["data"]

    def login(self, key: Any) -> None:
        reply = self.call(
            "public/auth",
            grant_type="client_credentials",
            client_id=key.client_id,
            client_secret=key.client_secret,
        )
        assert "result" in reply, reply


ADMIN_METHODS = (
    "private/admin_subscribe",
    "private/admin_get_insurance_fund",
    "private/admin_get_liquidations",
    "private/admin_get_markets",
    "private/admin_get_risk_ranking",
    "private/admin_get_engine_health",
)


def test_admin_methods_need_the_admin_scope(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        trader, anonymous, admin = (
            _Socket(stack.enter_context(connect(server.ws_url, open_timeout=10))) for _ in range(3)
        )
        _admin_checks(server, trader, anonymous, admin)


def _admin_checks(server: Server, trader: _Socket, anonymous: _Socket, admin: _Socket) -> None:
    trader.login(server.key(("read", "trade")))
    for method in ADMIN_METHODS:
        assert trader.call(method)["error"]["code"] == FORBIDDEN, method
    for method in ADMIN_METHODS:
        assert "error" in anonymous.call(method), method
    admin.login(server.key(("admin",)))
    # an admin key reads aggregates and cannot trade or read an account
    assert admin.call("private/get_account_summary", currency="USDC")["error"]["code"] == FORBIDDEN
    fund = admin.call("private/admin_get_insurance_fund")["result"]
    exchange = server.gateway.venue.exchange
    assert fund["balance"] == server.thread.call(lambda: exchange.balance(1)) / 1_000_000
    assert fund["history"][-1][1] == fund["balance"]
    markets = admin.call("private/admin_get_markets")["result"]
    perpetuals = {s.name for s in server.gateway.venue.catalog if s.kind == "perpetual"}
    assert {m["instrument_name"] for m in markets} == perpetuals
    ranking = admin.call("private/admin_get_risk_ranking", count=3)["result"]
    assert len(ranking["top"]) <= 3 and ranking["accounts"] > 0
    usages = [a["margin_usage"] for a in ranking["top"]]
    assert usages == sorted(usages, reverse=True)
    health = admin.call("private/admin_get_engine_health")["result"]
    assert health["last_seq"] > 0 and health["commands_per_second"] is None  # first sample
    assert health["replica_agreement"] is None  # n/a: not cluster mode
    assert health["process"] == os.getpid()  # (the in-process gateway of the tests)
    assert admin.call("private/admin_get_engine_health")["result"]["commands_per_second"] >= 0
    liquidations = admin.call("private/admin_get_liquidations")["result"]
    assert set(liquidations) == {"since", "totals", "latest"}
    # the pushed overview: at once, then every second, with the same figures
    assert admin.call("private/admin_subscribe")["result"] == ["admin.overview"]
    first = admin.notification("admin.overview")
    assert set(first) == {"fund", "liquidations", "markets", "ranking", "health", "controls"}
    assert first["fund"]["balance"] == fund["balance"]
    assert {m["instrument_name"] for m in first["markets"]} == perpetuals
    second = admin.notification("admin.overview")
    assert second["health"]["last_seq"] >= first["health"]["last_seq"]
    assert second["health"]["commands_per_second"] is not None


def test_liquidation_counts_equal_the_engine_events() -> None:
    ex, clock, perp, dealer = venue()
    spec = InstrumentSpec(
        perp, "BTC_USDC-PERPETUAL", "perpetual", "BTC", Decimal("0.01"), Decimal("0.01")
    )
    walked = Venue(ex, Catalog([spec]))
    watch(walked)  # counts from here on, as a gateway's does from its start
    trader = leveraged_long(ex, perp, dealer)
    assert ex.place(dealer, perp, "buy", 100, 9_830_000).accepted
    events = index(ex, clock, 9_840_000)  # liquidates the trader through the book
    walked.apply(events)
    liquidations = events[events["kind"] == EventKind.LIQUIDATION]
    account_wide = {"started", "orders_cancelled", "ended"}
    stages = [LiquidationStage(int(e["a"])).name.lower() for e in liquidations]
    expected = Counter((spec.name if stage not in account_wide else "", stage) for stage in stages)
    context = Context(walked, None, None)  # type: ignore[arg-type]
    reply = admin_api.get_liquidations(context, {})
    counted = Counter({(t["instrument_name"], t["stage"]): t["count"] for t in reply["totals"]})
    assert counted == expected and counted[(spec.name, "book")] == 1
    assert [e["stage"] for e in reply["latest"]][::-1] == stages
    book = next(t for t in reply["totals"] if t["stage"] == "book")
    assert book["lots"] == 10  # the 25% step of 40 lots
    fund = admin_api.get_insurance_fund(context, {})
    assert fund["balance"] == ex.balance(1) / 1_000_000 == fund["history"][-1][1]
    assert trader in {e["account"] for e in reply["latest"]}
