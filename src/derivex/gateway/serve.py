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

The ``Market`` feeds the engine its inputs: an index feed (``derivex.oracle``, simulated by
default; anything with ``records(now_ns)`` plugs in) sequenced as INDEX commands, and the
pricing service (``derivex.pricing.service``) producing option marks and risk arrays as
RISK_ARRAY commands. Until the engine has the risk engine (``Exchange.set_index``), the
gateway keeps the index and marks for display only and sequences nothing.
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

import numpy as np

from derivex.core import query
from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind, Underlying
from derivex.exchange import Exchange
from derivex.gateway import datadir
from derivex.gateway.agents import INNER, OUTER, MarketMaker, NoiseTrader
from derivex.gateway.auth_limits import AuthLimits
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.keys import ApiKey, KeyStore
from derivex.gateway.limits import Limits
from derivex.gateway.listing import START_PRICES, default_specs, list_all
from derivex.gateway.server import Gateway, tune_gc
from derivex.gateway.telemetry import logger
from derivex.gateway.venue import Venue
from derivex.journal.writer import DEFAULT_FSYNC
from derivex.oracle import IndexFeed, MultiIndexFeed, SimulatedIndexFeed
from derivex.pricing.black import black76_greeks
from derivex.pricing.service import NS_PER_YEAR, OptionSpec, PricingService

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


def _price_ticks(spec: InstrumentSpec, price: Any) -> int:
    return int(price / spec.price_unit)


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
    from derivex.journal import open_exchange

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
    return Opened(Venue(exchange, catalog), keys, state, demo_key, report)


class Market:
    """Index prices and option marks for the venue (see the module docstring)."""

    def __init__(
        self,
        venue: Venue,
        feed: IndexFeed,
        pricers: dict[str, PricingService],
        underlyings: dict[int, str],
    ) -> None:
        self.venue = venue
        self.feed = feed
        self.pricers = pricers
        self.underlyings = underlyings  # INDEX underlying code -> base currency
        self.sequenced = hasattr(venue.exchange, "set_index")  # the risk engine is there

    @classmethod
    def simulated(cls, venue: Venue, seed: int) -> Market:
        now = time.time_ns()
        bases = sorted({spec.base for spec in venue.catalog})
        feeds, underlyings = [], {}
        for offset, base in enumerate(bases):
            start = venue.index_ticks(base) or _price_ticks(
                next(iter(venue.catalog.matching(base))), START_PRICES.get(base, 100)
            )
            code = int(Underlying[base])
            feeds.append(SimulatedIndexFeed(code, float(start), now, seed + offset))
            underlyings[code] = base
        pricers = {}
        for base in bases:
            options = [
                OptionSpec(
                    s.instrument,
                    _price_ticks(s, s.strike),
                    s.expiry_ms * 10**6,
                    s.option_type == "call",
                    s.contract_value_units,
                    s.tick_size_ticks,
                )
                for s in venue.catalog.matching(base, "option")
                if s.base == base
            ]
            if options:
                pricers[base] = PricingService(options, scenarios=venue.exchange.engine.config)
        return cls(venue, MultiIndexFeed(feeds), pricers, underlyings)

    def index_step(self) -> None:
        records = self.feed.records(time.time_ns())
        if self.sequenced:
            self.venue.submit_inputs(records)
        headers = np.flatnonzero(records["kind"] == CommandKind.INDEX)
        for start, header in zip(headers, [*headers[1:], len(records)], strict=True):
            prices = records["price_ticks"][start + 1 : header]
            code = int(records["index_underlying"][start])
            if len(prices):
                median = int(np.median(prices))
                self.venue.indices[code] = median
                if not self.sequenced:  # display marks until the engine makes its own
                    for spec in self.venue.catalog.matching(self.underlyings[code], "future"):
                        tick = spec.tick_size_ticks
                        self.venue.marks[spec.instrument] = median // tick * tick

    def pricing_step(self) -> None:
        now = time.time_ns()
        for base, service in self.pricers.items():
            index = self.venue.index_ticks(base)
            if index <= 0:
                continue
            result = service.price(now, float(index))
            if self.sequenced:
                # the venue takes the option views from the sequenced records, as every
                # gateway worker does from this one's batches
                self.venue.submit_inputs(result.records)
            else:
                self.venue.marks.update(
                    zip(result.instrument.tolist(), result.mark_ticks.tolist(), strict=True)
                )
                self._views(service, result, now, index)

    def _views(self, service: PricingService, result: Any, now: int, index: int) -> None:
        specs = service.options
        strikes = np.array([s.strike_ticks for s in specs], dtype=float)
        years = np.maximum(np.array([s.expiry_ns - now for s in specs]) / NS_PER_YEAR, 1e-9)
        calls = np.array([s.is_call for s in specs])
        unit = float(self.venue.catalog.by_id[specs[0].instrument].price_unit)
        greeks = black76_greeks(index * unit, strikes * unit, years, result.vol, 0.0, calls)
        for k, spec in enumerate(specs):
            self.venue.set_option_view(
                spec.instrument,
                round(float(result.vol[k]) * 100, 2),
                {
                    "delta": round(float(greeks.delta[k]), 5),
                    "gamma": round(float(greeks.gamma[k]), 8),
                    "vega": round(float(greeks.vega[k]) / 100, 5),
                    "theta": round(float(greeks.theta[k]) / 365, 5),
                    "rho": round(float(greeks.rho[k]) / 100, 5),
                },
            )

    def fair(self, spec: InstrumentSpec) -> int:
        mark = self.venue.mark_ticks(spec.instrument)
        if mark or spec.kind == "option":
            return mark
        return self.venue.index_ticks(spec.base)


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
    tune_gc()
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
