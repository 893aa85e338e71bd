"""Index feeds: simulated multi-source index prices as INDEX command records.

The core takes an underlying's index as one sequenced INDEX command carrying one
INDEX_SOURCE leg per source (``source_id``, ``source_ts_ns``, ``price_ticks``) and forms a
deterministic median with staleness and outlier rules. Anything that produces such
records at a given time is an :class:`IndexFeed`.

:class:`SimulatedIndexFeed` simulates one underlying: a reference price following a
geometric random walk (annualised volatility and drift, stepped by the time between calls),
optionally multiplied by a scripted path (:class:`ScriptedPath`, e.g. :func:`crash_path`),
and N sources that each report it with their own noise. Sources misbehave at random (a
stale spell: price and timestamp frozen for ``stale_ns``; an outlier: one report off by
``outlier_ppm``) or on a script (:class:`SourceFault`). Floats are used inside; records
carry integers (price rounded half-up to a tick, at least 1).

Determinism: the feed draws the same number of variates from its own
``numpy.random.Generator(PCG64(seed))`` at every call whatever happened, so the same seed
and the same sequence of ``now_ns`` give the same records, byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .core.records import command_array, concat_commands, index_records

__all__ = [
    "NS_PER_YEAR",
    "OPERATOR_SOURCE_ID",
    "IndexFeed",
    "MultiIndexFeed",
    "ScriptedPath",
    "SimulatedIndexFeed",
    "SourceFault",
    "SourceState",
    "crash_path",
]

NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
#: the source id of an operator's index override (``private/admin_set_index``): simulated
#: sources are numbered from 0, so it is never one of theirs
OPERATOR_SOURCE_ID = 0xFFFF
NS_PER_MINUTE = 60 * 1_000_000_000


@runtime_checkable
class IndexFeed(Protocol):
    """Anything that yields the INDEX command records of its underlying(s) at ``now_ns``."""

    def records(self, now_ns: int) -> np.ndarray: ...


class SourceState:
    """What a source did at the last call (``SimulatedIndexFeed.last_states``)."""

    OK = 0
    STALE = 1
    OUTLIER = 2


@dataclass(frozen=True)
class ScriptedPath:
    """A price multiplier, piecewise linear in time between ``(offset_ns, multiplier)``
    knots (offsets from the feed's start, increasing); flat before the first knot and
    after the last."""

    knots: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        offsets = [k[0] for k in self.knots]
        if not self.knots or any(b <= a for a, b in pairwise(offsets)):
            raise ValueError("knots must be non-empty with increasing offsets")
        if any(not m > 0 for _, m in self.knots):
            raise ValueError("multipliers must be positive")

    def multiplier(self, offset_ns: int) -> float:
        offsets = np.array([k[0] for k in self.knots], dtype=np.float64)
        values = np.array([k[1] for k in self.knots], dtype=np.float64)
        return float(np.interp(float(offset_ns), offsets, values))


def crash_path(
    start_offset_ns: int = 0,
    drop: float = 0.30,
    drop_ns: int = 10 * NS_PER_MINUTE,
    rebound: float = 0.5,
    rebound_ns: int = 20 * NS_PER_MINUTE,
) -> ScriptedPath:
    """A crash: the price falls by ``drop`` (fraction) linearly over ``drop_ns`` starting
    at ``start_offset_ns``, then recovers ``rebound`` of the fall over ``rebound_ns``
    (defaults: -30% over 10 minutes, back to -15% 20 minutes later)."""
    low = 1.0 - drop
    return ScriptedPath(
        (
            (start_offset_ns, 1.0),
            (start_offset_ns + drop_ns, low),
            (start_offset_ns + drop_ns + rebound_ns, low + rebound * drop),
        )
    )


@dataclass(frozen=True)
class SourceFault:
    """A scripted fault of source ``source`` (its position, 0-based) while
    ``start_ns <= now_ns < end_ns``: ``"stale"`` freezes its last report; ``"outlier"``
    reports the reference price times ``1 + size_ppm / 1e6``."""

    source: int
    start_ns: int
    end_ns: int
    kind: str = "stale"
    size_ppm: int = 50_000

    def __post_init__(self) -> None:
        if self.kind not in ("stale", "outlier"):
            raise ValueError("fault kind must be 'stale' or 'outlier'")


class SimulatedIndexFeed:
    """Seeded multi-source index feed for one underlying (see the module docstring).

    Args: ``underlying`` (the INDEX command's ``index_underlying``), ``start_price_ticks``,
    ``start_ns`` (time of the start price), ``seed``; ``sources`` (default 5, ids
    ``source_ids`` or 0..N-1), ``vol`` (annualised) and ``drift`` of the walk,
    ``noise_ppm`` (per-source standard deviation around the reference),
    ``stale_probability`` per source and call of starting a stale spell of ``stale_ns``,
    ``outlier_probability`` per source and call of an outlier of +/- ``outlier_ppm``,
    ``path`` (multiplier on the walk), ``faults`` (scripted faults), ``latency_ns``
    (fresh reports are stamped ``now_ns - latency_ns``). Calls must come with
    non-decreasing ``now_ns`` (``ValueError`` otherwise). Cost O(sources) per call.
    """

    def __init__(
        self,
        underlying: int,
        start_price_ticks: float,
        start_ns: int,
        seed: int,
        *,
        sources: int = 5,
        source_ids: Sequence[int] | None = None,
        vol: float = 0.6,
        drift: float = 0.0,
        noise_ppm: float = 200.0,
        stale_probability: float = 0.002,
        stale_ns: int = 60_000_000_000,
        outlier_probability: float = 0.001,
        outlier_ppm: int = 50_000,
        path: ScriptedPath | None = None,
        faults: Sequence[SourceFault] = (),
        latency_ns: int = 0,
    ) -> None:
        if sources < 1 or start_price_ticks <= 0:
            raise ValueError("need at least one source and a positive start price")
        ids = list(range(sources)) if source_ids is None else [int(s) for s in source_ids]
        if len(ids) != sources:
            raise ValueError("source_ids must have one id per source")
        self.underlying = int(underlying)
        self.source_ids = np.array(ids, dtype=np.int64)
        self.start_ns = int(start_ns)
        self.vol, self.drift, self.noise_ppm = float(vol), float(drift), float(noise_ppm)
        self.stale_probability, self.stale_ns = float(stale_probability), int(stale_ns)
        self.outlier_probability, self.outlier_ppm = float(outlier_probability), outlier_ppm
        self.path, self.faults, self.latency_ns = path, tuple(faults), int(latency_ns)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._log_walk = math.log(float(start_price_ticks))
        self._now_ns = self.start_ns
        self._price = np.zeros(sources, dtype=np.int64)  # last report of each source
        self._ts = np.full(sources, self.start_ns - self.latency_ns, dtype=np.int64)
        self._stale_until = np.full(sources, np.iinfo(np.int64).min, dtype=np.int64)
        self.last_states = np.zeros(sources, dtype=np.int8)
        self.last_reference = float(start_price_ticks)

    def reference_price(self, now_ns: int) -> float:
        """The reference (true) price at ``now_ns`` after stepping the walk to it."""
        self._step(now_ns)
        return self.last_reference

    def _step(self, now_ns: int) -> None:
        if now_ns < self._now_ns:
            raise ValueError("now_ns went backwards")
        dt = (now_ns - self._now_ns) / NS_PER_YEAR
        z = self._rng.standard_normal()
        self._log_walk += (self.drift - 0.5 * self.vol**2) * dt + self.vol * math.sqrt(dt) * z
        self._now_ns = now_ns
        multiplier = 1.0 if self.path is None else self.path.multiplier(now_ns - self.start_ns)
        self.last_reference = math.exp(self._log_walk) * multiplier

    def records(self, now_ns: int) -> np.ndarray:
        """The INDEX command (header + one INDEX_SOURCE leg per source) at ``now_ns``."""
        self._step(now_ns)
        n = self.source_ids.shape[0]
        # fixed number of draws per call: determinism does not depend on the state
        noise = self._rng.standard_normal(n) * (self.noise_ppm / 1e6)
        start_stale = self._rng.random(n) < self.stale_probability
        outlier = np.asarray(self._rng.random(n) < self.outlier_probability)  # mypy: an array
        signs = np.where(self._rng.random(n) < 0.5, -1.0, 1.0)
        bump = np.where(outlier, signs * self.outlier_ppm / 1e6, 0.0)
        stale: np.ndarray = self._stale_until > now_ns
        self._stale_until = np.where(
            ~stale & start_stale, now_ns + self.stale_ns, self._stale_until
        )
        stale |= start_stale & (self._price > 0)  # a source reports once before going stale
        for fault in self.faults:
            if fault.start_ns <= now_ns < fault.end_ns:
                if fault.kind == "stale":
                    stale[fault.source] = self._price[fault.source] > 0
                else:
                    outlier[fault.source] = True
                    bump[fault.source] = fault.size_ppm / 1e6
        outlier &= ~stale
        fresh = np.floor(self.last_reference * (1.0 + noise + bump) + 0.5)
        fresh = np.maximum(fresh, 1.0).astype(np.int64)
        self._price = np.where(stale, self._price, fresh)
        self._ts = np.where(stale, self._ts, now_ns - self.latency_ns)
        self.last_states = np.where(
            stale, SourceState.STALE, np.where(outlier, SourceState.OUTLIER, SourceState.OK)
        ).astype(np.int8)
        return index_records(
            self.underlying,
            [
                (int(s), int(t), int(p))
                for s, t, p in zip(self.source_ids, self._ts, self._price, strict=True)
            ],
        )

    def rebase(self, price_ticks: int) -> None:
        """Continue the walk from ``price_ticks`` (an operator set the index: the feed goes on
        from there instead of pulling the index back). Draws nothing: determinism holds."""
        if price_ticks > 0:
            multiplier = self.last_reference / math.exp(self._log_walk)
            self._log_walk = math.log(price_ticks / multiplier)
            self.last_reference = float(price_ticks)

    def last_prices(self) -> NDArray[np.int64]:
        """Each source's last reported price (ticks)."""
        return self._price.copy()


class MultiIndexFeed:
    """Several feeds (e.g. one per underlying) as one: their records in the given order."""

    def __init__(self, feeds: Sequence[IndexFeed]) -> None:
        self.feeds = tuple(feeds)

    def records(self, now_ns: int) -> np.ndarray:
        parts = [feed.records(now_ns) for feed in self.feeds]
        return concat_commands(parts) if parts else command_array(0)

    def rebase(self, underlying: int, price_ticks: int) -> None:
        """``rebase`` the feeds of ``underlying`` that can (simulated ones)."""
        for feed in self.feeds:
            if getattr(feed, "underlying", None) == underlying and hasattr(feed, "rebase"):
                feed.rebase(price_ticks)
