"""What the operator dashboard aggregates from the engine's events as they are walked: the
liquidation stages per instrument (with a bounded feed of the latest), the insurance fund's
balance over time (bounded) with its inflows and draws, samples of the engine's command
count for a rate, sampled stamp-to-walked latencies, and the index sources this process
sequenced.

One ``Oversight`` per venue (``watch``), fed by the venue's liquidation watchers (every
LIQUIDATION event). The fund's balance is read at each liquidation event and whenever an
operator asks (``sample_fund``), and kept when it changed: a change between two readings
without a liquidation (a funding residue) appears at the next reading. It counts what this
gateway process walked since it started: a worker started later, or a restart, begins at
zero (the journal holds the whole history). Once an operator asked for anything, the path
of an order carries one listener call more (an increment; one command in
``LATENCY_EVERY`` reads the clock).
"""

from __future__ import annotations

import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from derivex.core import query
from derivex.core.records import CommandKind, LiquidationStage, SystemAccount

if TYPE_CHECKING:
    from derivex.gateway.venue import Venue

FEED_LENGTH = 200  # latest liquidation events kept
FUND_HISTORY = 2_000  # fund balance changes kept
RATE_SAMPLES = 64  # command-count samples kept for the rate
RATE_WINDOW_S = 10.0
LATENCY_SAMPLES = 1_000  # stamp-to-walked latencies kept
LATENCY_EVERY = 16  # one command in this many is timed
_FUND = int(SystemAccount.INSURANCE_FUND)
STAGES = {int(stage): stage.name.lower() for stage in LiquidationStage}
#: stages about the account as a whole: their instrument and lots fields carry other things
ACCOUNT_STAGES = frozenset(
    int(s)
    for s in (LiquidationStage.STARTED, LiquidationStage.ORDERS_CANCELLED, LiquidationStage.ENDED)
)
#: stages that close lots of a position
CLOSING_STAGES = frozenset(
    int(s)
    for s in (
        LiquidationStage.BOOK,
        LiquidationStage.INSURANCE_FUND,
        LiquidationStage.AUTO_DELEVERAGE,
    )
)


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    seq: int
    timestamp_ms: int
    instrument: str  # "" for the account-wide stages (started, orders cancelled, ended)
    account: int
    stage: str
    price_ticks: int
    qty_lots: int
    amount_units: int  # the money involved (fee, fund payment, bad debt)


class Oversight:
    """Aggregates for the ``private/admin_*`` methods (see the module docstring). Cost per
    LIQUIDATION event O(1), a balance read included."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.started_ms = time.time_ns() // 1_000_000
        #: (instrument name or "", stage name) -> events
        self.counts: Counter[tuple[str, str]] = Counter()
        #: (instrument name, stage name) -> lots closed
        self.lots: Counter[tuple[str, str]] = Counter()
        self.feed: deque[LiquidationEvent] = deque(maxlen=FEED_LENGTH)
        self.fund: deque[tuple[int, int]] = deque(maxlen=FUND_HISTORY)  # (ms, units)
        self._samples: deque[tuple[float, int]] = deque(maxlen=RATE_SAMPLES)
        #: sums of the fund's rises and falls between readings (collateral units)
        self.fund_inflows = 0
        self.fund_draws = 0
        #: ns from the sequencer's stamp to this gateway walking the command's events
        self.latencies: deque[int] = deque(maxlen=LATENCY_SAMPLES)
        self._walked = 0
        #: the index sources of the latest INDEX commands this process sequenced, per
        #: underlying code: (source id, source time ns, price ticks)
        self.sources: dict[int, list[tuple[int, int, int]]] = {}
        venue.liquidation_watchers.append(self._liquidation)
        venue.listeners.append(self._walked_one)
        venue.input_watchers.append(self.observe_inputs)
        self.sample_fund()

    def _walked_one(self, update: Any) -> None:
        """Every ``LATENCY_EVERY``th command walked: how long after its stamp (the engine's
        clock is the stamp of the command just walked). Cost: an increment otherwise."""
        self._walked += 1
        if self._walked % LATENCY_EVERY == 0:
            latency = time.time_ns() - query.clock_ns(self.venue.exchange.engine.state)
            if latency >= 0:  # a venue on another clock (tests, replays) has no latency
                self.latencies.append(latency)

    def batch_latency(self) -> dict[str, Any]:
        """Percentiles (ms) of the sampled stamp-to-walked latencies."""
        samples = sorted(self.latencies)
        if not samples:
            return {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def at(fraction: float) -> float:
            return samples[min(len(samples) - 1, int(fraction * len(samples)))] / 1e6

        return {"samples": len(samples), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}

    def observe_inputs(self, commands: Any) -> None:
        """Keep the sources of each INDEX command in ``commands`` (records this process
        sequences: the market feed's). O(len(commands))."""
        kinds = commands["kind"]
        for header in np.flatnonzero(kinds == CommandKind.SET_INDEX):
            count = int(commands["count"][header])
            legs = commands[header + 1 : header + 1 + count]
            self.sources[int(commands["index_underlying"][header])] = [
                (int(leg["source_id"]), int(leg["source_ts_ns"]), int(leg["price_ticks"]))
                for leg in legs
                if int(leg["kind"]) == CommandKind.INDEX_SOURCE
            ]

    def _liquidation(
        self,
        seq: int,
        instrument: int,
        account: int,
        stage: int,
        price_ticks: int,
        qty_lots: int,
        amount_units: int,
    ) -> None:
        account_wide = stage in ACCOUNT_STAGES
        spec = None if account_wide else self.venue.catalog.by_id.get(instrument)
        name = spec.name if spec is not None else ""
        stage_name = STAGES.get(stage, str(stage))
        self.counts[(name, stage_name)] += 1
        if stage in CLOSING_STAGES:
            self.lots[(name, stage_name)] += abs(qty_lots)
        elif account_wide:
            qty_lots = price_ticks = 0  # (margins and equity there, not a trade)
        self.feed.append(
            LiquidationEvent(
                seq,
                self.venue.now_ms(),
                name,
                account,
                stage_name,
                price_ticks,
                qty_lots,
                amount_units,
            )
        )
        self.sample_fund()  # (the state is the batch's end state: events follow the work)

    def sample_fund(self) -> int:
        """Read the fund's balance; append it to the history if it changed. Returns it."""
        balance = self.venue.exchange.balance(_FUND)
        if not self.fund or self.fund[-1][1] != balance:
            if self.fund:
                change = balance - self.fund[-1][1]
                if change > 0:
                    self.fund_inflows += change
                else:
                    self.fund_draws -= change
            self.fund.append((self.venue.now_ms(), balance))
        return balance

    def command_rate(self, commands: int) -> float | None:
        """Commands per second over the last ``RATE_WINDOW_S`` of samples (one taken per
        call, with ``commands`` the engine's count now); None until two samples exist."""
        now = time.monotonic()
        samples = self._samples
        samples.append((now, commands))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_S:
            samples.popleft()
        if len(samples) < 2 or now <= samples[0][0]:
            return None
        return (commands - samples[0][1]) / (now - samples[0][0])

    def liquidation_totals(self) -> list[dict[str, Any]]:
        """Counts (and lots) per instrument and stage, sorted by instrument then stage."""
        return [
            {
                "instrument_name": name,
                "stage": stage,
                "count": count,
                "lots": self.lots[name, stage],
            }
            for (name, stage), count in sorted(self.counts.items())
        ]


_WATCHED: weakref.WeakKeyDictionary[Any, Oversight] = weakref.WeakKeyDictionary()


def watch(venue: Venue) -> Oversight:
    """The venue's ``Oversight``, created (and attached) on the first call."""
    found = _WATCHED.get(venue)
    if found is None:
        found = _WATCHED[venue] = Oversight(venue)
    return found
