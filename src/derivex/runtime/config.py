"""``RuntimeConfig``: everything the supervisor hands to the processes it starts."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from derivex.core.config import EngineConfig

__all__ = ["RuntimeConfig", "load_callable"]

_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Configuration of a multi-process runtime (see :mod:`derivex.runtime`).

    ``front_end`` and ``market_data`` are ``"module:attribute"`` paths (importable in a
    fresh process): the front end is called as ``front_end(ctx, **front_end_options)`` in
    each gateway worker; ``market_data(**market_data_options)`` builds the market-data
    sink (``on_frame(header, commands, events)`` and ``report() -> dict``).
    """

    name: str = "derivex"
    workers: int = 1
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: commands the engine sequences itself before any worker traffic (instruments,
    #: accounts, deposits); journaled like the rest. Only on an empty journal: a run that
    #: resumes a journal does not sequence them again
    setup: np.ndarray | None = None
    front_end: str = "derivex.runtime.frontends:synthetic"
    front_end_options: dict[str, Any] = field(default_factory=dict)
    market_data: str = "derivex.runtime.market_data:EventStats"
    market_data_options: dict[str, Any] = field(default_factory=dict)
    #: journal directory: new, empty, or holding the journal (and snapshots) of an earlier
    #: run or of an embedded ``Exchange``, which the engine resumes from (snapshot +
    #: replay) and the journal continues; None: sequenced commands are not kept
    journal_dir: str | None = None
    fsync: str = "group"
    #: a read-only replica of the engine state in every gateway worker
    #: (``WorkerContext.replica``), fed by its own bus consumer; restarted workers catch
    #: up from the journal, so replicas need ``journal_dir``. None: on when there is one
    replicas: bool | None = None
    #: seconds a (re)starting replica may wait for the journal to reach its bus cursor
    catch_up_timeout: float = 60.0
    #: records per engine batch taken from one worker
    batch: int = 512
    command_ring: int = 1 << 14
    response_ring: int = 1 << 14
    bus_ring: int = 1 << 16
    book_instruments: int = 256
    book_depth: int = 10
    #: restarts of one worker before the runtime gives up on it
    max_restarts: int = 20
    #: soak/test knob: probability per loop of a random pause (up to ``max_pause_s``) in
    #: the engine, journal and market-data loops
    pause_probability: float = 0.0
    max_pause_s: float = 0.002
    pause_seed: int = 0
    #: the engine computes ``state_hash()`` at exit (O(state); off for large benchmarks)
    state_hash: bool = True
    stop_timeout: float = 20.0
    #: niceness added to every gateway worker process (0..19, no privilege needed): on a
    #: machine with fewer cores than busy processes, the engine and journal writer (which
    #: every worker waits for) then win the CPU when they wake, instead of waiting for a
    #: worker's time slice to end (docs/limits.md, "Worker mode on few cores")
    worker_nice: int = 0

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"runtime name {self.name!r}: use 1-64 of [A-Za-z0-9_-]")
        if not 1 <= self.workers <= 64:
            raise ValueError("workers must be in 1..64")
        if self.batch < 1 or self.batch > self.command_ring:
            raise ValueError("batch must be in 1..command_ring")
        if self.fsync not in ("group", "batch", "interval", "none"):
            raise ValueError("fsync must be 'group', 'batch', 'interval' or 'none'")
        if not 0 <= self.worker_nice <= 19:
            raise ValueError("worker_nice must be in 0..19")
        if not 0.0 <= self.pause_probability <= 1.0:
            raise ValueError("pause_probability must be in [0, 1]")
        if self.replicas and self.journal_dir is None:
            raise ValueError("replicas need a journal_dir (restarted workers catch up from it)")

    @property
    def with_replicas(self) -> bool:
        """Whether the gateway workers keep replicas (``replicas``, or a journal)."""
        return self.replicas if self.replicas is not None else self.journal_dir is not None

    @property
    def bus_consumers(self) -> int:
        """Consumer slots of the bus: journal, market data, then one per worker replica."""
        return 2 + (self.workers if self.with_replicas else 0)


def load_callable(path: str):
    """Import ``"module:attribute"``."""
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    return getattr(importlib.import_module(module), attribute)
