"""A real gateway (aiohttp on a free loopback port, its own event loop in a thread) around
a test venue, and helpers that make funded accounts with keys and real ccxt clients."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support
import ccxt.pro
import pytest

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.gateway import ApiKey, Gateway, GatewayThread, KeyStore, Venue
from derivex.gateway.limits import Limits
from derivex.gateway.listing import default_specs, expiries, list_all, option, perpetual

DEPOSIT_UNITS = 10**13  # 10 million USDC
# a signature is accepted once, and ccxt's default nonce is the millisecond clock: identical
# concurrent requests in one millisecond would be one signature, so every client here gets
# nonces unique in the process (what a client sending concurrent requests must do)
_NONCES = itertools.count(time.time_ns())


def unique_nonce() -> int:
    return next(_NONCES)


def test_config() -> EngineConfig:
    """Matching without margin checks: these tests pin the API mapping, not the risk engine
    (``test_serve`` runs the default configuration)."""
    return EngineConfig(risk_checks=False)


@dataclass
class Server:
    thread: GatewayThread
    keys: KeyStore
    options: list[str]
    _next: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.thread.url

    @property
    def ws_url(self) -> str:
        return self.thread.url.replace("http://", "ws://") + "/ws/api/v2"

    @property
    def gateway(self) -> Gateway:
        assert self.thread.gateway is not None
        return self.thread.gateway

    def account(self, deposit: int = DEPOSIT_UNITS) -> int:
        """A new funded account (created on the server's loop, the venue's only thread)."""

        def create() -> int:
            exchange = self.gateway.venue.exchange
            account = exchange.create_account()
            assert exchange.deposit(account, deposit).accepted
            return account

        return self.thread.call(create)

    def key(
        self, scopes: tuple[str, ...] = ("read", "trade"), account: int | None = None
    ) -> ApiKey:
        return self.keys.create(self.account() if account is None else account, scopes)

    def option(self) -> str:
        """An option instrument no other test trades (a book of its own)."""
        return self.options[next(self._next)]

    def config(self, key: ApiKey | None = None, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "urls": {"api": {"rest": self.url, "ws": self.ws_url}},
            "enableRateLimit": False,
            "timeout": 20_000,
            "nonce": unique_nonce,
            **extra,
        }
        if key is not None:
            config.update(apiKey=key.client_id, secret=key.client_secret)
        return config

    def sync(self, key: ApiKey | None = None) -> ccxt.deribit:
        client = ccxt.deribit(self.config(key))
        client.load_markets()
        return client

    def asynchronous(self, key: ApiKey | None = None) -> ccxt.async_support.deribit:
        return ccxt.async_support.deribit(self.config(key))

    def pro(self, key: ApiKey | None = None) -> ccxt.pro.deribit:
        return ccxt.pro.deribit(self.config(key))


def symbol(client: Any, name: str) -> str:
    return client.markets_by_id[name][0]["symbol"]


def build_gateway(keys: KeyStore) -> Gateway:
    exchange = Exchange(test_config())
    now_ms = time.time_ns() // 1_000_000
    # BTC options of one more expiry: more books of their own for ``Server.option`` (each
    # test takes one; the default listing has 56)
    later = expiries(now_ms, monthly=2)[-1]
    extra = [
        option("BTC", later, Decimal(strike), kind, now_ms)
        for strike in (50_000, 55_000, 60_000, 65_000, 70_000, 75_000)
        for kind in ("call", "put")
    ]
    specs = [*default_specs(now_ms), perpetual("SOL"), *extra]
    # one shared server for the whole suite, from one address: the public venue's limits
    # per address and connection would throttle the suite (tests/adversarial/test_load_*
    # test them)
    return Gateway(
        Venue(exchange, list_all(exchange, specs)),
        keys,
        limits=Limits(
            max_connections_per_address=0,
            public_rate_per_connection=0,
            public_rate_per_address=0,
            heartbeat_min_s=1,  # test_order_safety: a missed heartbeat within seconds
        ),
    )


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    keys = KeyStore(None)
    thread = GatewayThread(lambda: build_gateway(keys))
    thread.start()
    options = thread.call(
        lambda: [spec.name for spec in thread.gateway.venue.catalog if spec.kind == "option"]
    )
    yield Server(thread, keys, options)
    thread.stop()
