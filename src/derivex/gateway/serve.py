"""``derivex serve``: the embedded venue behind the gateway, in one process.

The data directory holds everything that survives a restart::

    <data>/journal/          write-ahead journal and snapshots (recovered on start)
    <data>/instruments.json  the catalogue (names and units are not journaled)
    <data>/keys.json         API keys (mode 0600)
    <data>/serve.json        the demo accounts

On a fresh (empty) directory it lists the default instruments (BTC and ETH USDC perpetuals
and a BTC options chain), creates a funded demo account with an API key, and (``demo``)
funded agent accounts; ``serve.json`` is written last. On an existing one it recovers the
venue from its latest snapshot and journal tail and goes on. A directory that holds part of
a venue, or a damaged file of one, is refused naming the file (``datadir``), and a failed
start changes no file.

The market inputs (``derivex.market.Market``: the index feed and the pricing service) and
the demo agents (``derivex.market.agents``) live outside the gateway; ``build`` schedules
them on the server's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from derivex.core import query
from derivex.core.config import EngineConfig
from derivex.exchange import Exchange, open_exchange
from derivex.gateway import datadir
from derivex.gateway.auth_limits import AuthLimits
from derivex.gateway.catalog import Catalog
from derivex.gateway.history_replay import venue_from_journal
from derivex.gateway.keys import ApiKey, KeyStore
from derivex.gateway.limits import Limits
from derivex.gateway.listing import default_specs, list_all
from derivex.gateway.server import Gateway, tune_interpreter
from derivex.gateway.telemetry import logger
from derivex.gateway.venue import Venue
from derivex.journal.writer import DEFAULT_FSYNC
from derivex.market import INNER, OUTER, Market, MarketMaker, NoiseTrader

DEMO_DEPOSIT_UNITS = 1_000_000 * 1_000_000  # 1M USDC
AGENT_DEPOSIT_UNITS = 100_000_000 * 1_000_000  # 100M USDC


@dataclass
class ServeState:
    created_ms: int
    demo_account: int
    maker_accounts: list[int] = field(default_factory=list)
    noise_account: int = -1
    seed: int = 7

    @classmethod
    def load(cls, path: Path) -> ServeState:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        temp = path.with_suffix(".tmp")
        with open(temp, "w") as handle:
            handle.write(json.dumps(asdict(self), indent=1))
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(path)


@dataclass
class Opened:
    venue: Venue
    keys: KeyStore
    state: ServeState
    demo_key: ApiKey
    report: list[str]


def open_venue(
    data_dir: Path | str,
    *,
    config: EngineConfig | None = None,
    fsync: str = DEFAULT_FSYNC,
    demo: bool = True,
    seed: int = 7,
    clock: Callable[[], int] | None = None,
    roll_bytes: int = 64 << 20,
) -> Opened:
    """Open (recover) or create the venue in ``data_dir``; see the module docstring.
    Raises ``DataDirectoryError`` or ``JournalError`` (naming the file) on a partial or
    damaged directory, having changed nothing."""
    data = Path(data_dir)
    new = datadir.is_new(data)  # raises on a partial venue: never re-initialised
    catalog_path, state_path = data / "instruments.json", data / "serve.json"
    if not new:
        datadir.check_files(data)
        try:
            catalog = Catalog.load(catalog_path)
            state = ServeState.load(state_path)
        except (ValueError, KeyError, TypeError) as error:
            raise datadir.DataDirectoryError(
                f"{data}: damaged instruments.json or serve.json ({error!r:.200})"
            ) from None
    data.mkdir(parents=True, exist_ok=True)
    exchange, recovered = open_exchange(
        data / "journal", clock=clock, config=config, fsync=fsync, roll_bytes=roll_bytes
    )
    report = recovered.report() if not new else ["new venue"]
    if new:
        catalog = list_all(exchange, default_specs(time.time_ns() // 1_000_000))
        catalog.save(catalog_path)
        account = exchange.create_account()
        exchange.deposit(account, DEMO_DEPOSIT_UNITS)
        state = ServeState(time.time_ns() // 1_000_000, account, seed=seed)
    changed = new
    if demo and not state.maker_accounts:
        state.maker_accounts = [exchange.create_account() for _ in range(2)]
        state.noise_account = exchange.create_account()
        for account in (*state.maker_accounts, state.noise_account):
            exchange.deposit(account, AGENT_DEPOSIT_UNITS)
        changed = True
    keys = KeyStore(data)
    demo_key = next((k for k in keys.list_keys() if k.name == "demo"), None)
    if demo_key is None:
        demo_key = keys.create(state.demo_account, ("read", "trade"), name="demo")
    if changed:  # last: a venue whose creation was interrupted has no serve.json
        state.save(state_path)
    # a restarted venue's trades, orders and history walked the journal again
    venue = None if new else venue_from_journal(exchange, catalog, data / "journal")
    return Opened(venue or Venue(exchange, catalog), keys, state, demo_key, report)


def build(
    opened: Opened,
    *,
    demo: bool = True,
    index_interval_s: float = 1.0,
    pricing_interval_s: float = 2.0,
    agents_interval_s: float = 0.5,
    snapshot_interval_s: float = 600.0,
    market: Market | None = None,
    auth_limits: AuthLimits | None = None,
    limits: Limits | None = None,
    **gateway_options: Any,
) -> Gateway:
    """The gateway for an opened venue, with the market inputs, agents and snapshots
    scheduled on its loop, within ``limits`` (None: the defaults); ``auth_limits``: the
    back-off on failed authentication (``gateway_options``: the rest of ``Gateway``'s
    options)."""
    venue, state = opened.venue, opened.state
    gateway = Gateway(venue, opened.keys, auth_limits=auth_limits, limits=limits, **gateway_options)
    market = market or Market.simulated(venue, state.seed)
    market.index_step()
    market.pricing_step()
    gateway.add_periodic(index_interval_s, market.index_step)
    gateway.add_periodic(pricing_interval_s, market.pricing_step)
    if demo and state.maker_accounts:
        makers = [
            MarketMaker(venue, account, style, market.fair, state.seed + k)
            for k, (account, style) in enumerate(
                zip(state.maker_accounts, (INNER, OUTER), strict=False)
            )
        ]
        noise = NoiseTrader(venue, state.noise_account, market.fair, state.seed + 10)
        for maker in makers:
            maker.step()

        def agents() -> None:
            for maker in makers:
                maker.step()
            noise.step()

        gateway.add_periodic(agents_interval_s, agents)
    if venue.exchange.journal is not None:
        gateway.add_periodic(snapshot_interval_s, lambda: take_snapshot(venue.exchange))
    return gateway


def take_snapshot(exchange: Exchange) -> Path:
    from derivex.journal import snapshot

    path = snapshot(exchange)
    logger().info(
        "snapshot written", path=str(path), seq=exchange.journal.last_seq if exchange.journal else 0
    )
    return path


def perpetual_count(catalog: Catalog) -> int:
    return sum(1 for spec in catalog if spec.kind == "perpetual")


async def run(
    opened: Opened, host: str, port: int, announce: Callable[[Gateway], None], **options: Any
) -> None:
    """Serve until SIGINT/SIGTERM; then stop, snapshot and close the journal."""
    gateway = build(opened, **options)
    await gateway.start(host, port)
    tune_interpreter()
    announce(gateway)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log = logger()
    log.info("stopping")
    await gateway.stop()
    exchange = opened.venue.exchange
    if exchange.journal is not None:
        take_snapshot(exchange)
        exchange.journal.close()
    log.info("stopped", commands=query.commands_processed(exchange.engine.state))
