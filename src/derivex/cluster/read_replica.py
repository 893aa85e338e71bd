"""``derivex serve --cluster ... --role replica``: a read replica that serves queries.

A replica follows the domain's stream (``Follower``: the same kernel, its roots compared
with the leader's every K frames) and, when its data directory holds the venue's files
(a copy of the leader's: instruments, keys, serve.json), serves the Deribit API from its
own engine: every query method answers from the state the stream holds, i.e. only what
a quorum has acknowledged. That is what keeps queries answered while the leader cannot
write (a stream election, a lost quorum, a takeover): a leader holds every reply until
its frame is in the stream, a replica never has anything to hold. Commands sent over HTTP
are forwarded to the domain's leader (``cluster.forward``); over the WebSocket they are
refused with the retryable 10040 ``not_leader`` (send them to the leader).

How it reads: a thread of its own fetches frames (blocking NATS reads) into a queue; the
gateway's loop applies them every millisecond, in stream order, to the engine and the
venue's records (orders, trades, labels, history), so a query never sees an engine in
the middle of a frame. Its answers trail the leader by the stream's delivery (about a
millisecond on loopback) plus up to one poll. A replica whose root differs from the
leader's stops serving and exits with code 2.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from derivex.cluster.forward import CommandForwarder
from derivex.cluster.jetstream import TRANSIENT, JetStreamLog
from derivex.cluster.log import LogBatch, LogError
from derivex.cluster.node import Follower
from derivex.cluster.shared_keys import follow_from, stop_from
from derivex.gateway.errors import RETRY, RpcError
from derivex.runtime.replica import ReplicaExchange

__all__ = ["FrameFeed", "ReadReplicaExchange", "VenueRecords", "serve_read_replica"]

_log = logging.getLogger("derivex.cluster.serve")

#: how often the gateway's loop applies the fetched frames, and the most time one pass takes
APPLY_INTERVAL_S = 0.001
APPLY_BUDGET_S = 0.002


class ReadReplicaExchange(ReplicaExchange):
    """The replica's read-only ``Exchange``: queries read the follower's engine; every
    command is refused with 10040 ``not_leader`` before anything happens."""

    def submit(self, commands: np.ndarray) -> np.ndarray:
        raise RpcError(RETRY, "not_leader", {"reason": "not_leader"})


class VenueRecords:
    """The venue's records (orders, closed orders, trades, labels) kept current from the
    frames a follower applies (``Follower.on_applied``), so that a standby that takes
    over, or a read replica, answers for the orders of the leaders before it as they
    did. Frames applied before the venue's files exist in ``data_dir`` (a new venue's
    first seconds) wait in memory, at most ``EARLY_FRAMES``; beyond that the history
    starts later (logged). Labels are shared through ``data_dir/labels`` (one directory
    for the nodes of a domain, as ``cluster up`` runs them). Cost: the venue's walk of
    each frame, O(its commands and events)."""

    EARLY_FRAMES = 100_000

    def __init__(self, data_dir: Path, engine: Any, node: str) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.node = node
        self.venue: Any = None
        self._early: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, commands: np.ndarray, events: np.ndarray) -> None:
        if self.venue is None and not self.open():
            if len(self._early) < self.EARLY_FRAMES:
                self._early.append((commands, events))
            return
        self.venue.apply_frame(commands, events, int(commands["ts_ns"][-1]))

    def open(self) -> bool:
        """Build the venue once its files exist in ``data_dir`` (walking the frames that
        waited); True when it exists. Cost: loading the catalogue, then the waiting frames."""
        from derivex.gateway.catalog import Catalog
        from derivex.gateway.labels import SharedLabels
        from derivex.gateway.venue import Venue

        catalog = self.data_dir / "instruments.json"
        if not (catalog.exists() and (self.data_dir / "serve.json").exists()):
            return False
        labels = SharedLabels(self.data_dir / "labels", f"node.{self.node}")
        self.venue = Venue(ReadReplicaExchange(self.engine), Catalog.load(catalog), labels=labels)
        if len(self._early) >= self.EARLY_FRAMES:
            _log.warning("%s: the venue's records start after its first frames", self.node)
        for commands, events in self._early:
            self.venue.apply_frame(commands, events, int(commands["ts_ns"][-1]))
        self._early.clear()
        return True


class FrameFeed:
    """Fetches the frames after stream seq ``position`` on a daemon thread into a queue
    (:meth:`take`). A lost server or an election is waited out (logged, retried every
    half second); the ordered consumer starts again from the last frame fetched."""

    def __init__(self, log: JetStreamLog, position: int) -> None:
        self.log = log
        self.position = position
        self._frames: queue.SimpleQueue[LogBatch] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="derivex-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                for frame in self.log.follow(self.position + 1, idle=0.5):
                    assert frame.position is not None
                    self._frames.put(frame)
                    self.position = frame.position
                    if self._stopped.is_set():
                        return
            except (LogError, *TRANSIENT) as error:
                _log.warning("replica feed: %r", error)
                self._stopped.wait(0.5)

    def take(self) -> LogBatch | None:
        """The next fetched frame, or None (never waits)."""
        try:
            return self._frames.get_nowait()
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5.0)


def serve_read_replica(
    follower: Follower,
    data_dir: Path,
    host: str,
    port: int,
    announce: Callable[[Any, Any], None],
    stopping: Callable[[], bool],
    **gateway_options: Any,
) -> int:
    """Catch up from the stream's start (the venue's records are built on the way), then
    serve queries until ``stopping()`` or a divergence. Returns the exit code (0, or 2
    diverged). Blocks."""
    from derivex.gateway import serve as serving
    from derivex.gateway.keys import KeyStore

    state = serving.ServeState.load(data_dir / "serve.json")
    keys = KeyStore(data_dir)
    records = VenueRecords(data_dir, follower.sequencer.engine, follower.node)
    follower.on_applied = records
    walk = follower.apply_frame

    log = follower.log
    log.refresh()
    started = time.monotonic()
    for frame in log.follow(follower.position + 1, until=log.stream_last):
        walk(frame)
    _log.info(
        "%s: replica caught up to stream seq %d (seq %d) in %.1f s: serving queries",
        follower.node, follower.position, follower.sequencer.seq, time.monotonic() - started,
    )  # fmt: skip
    demo_key = next((k for k in keys.list_keys() if k.name == "demo"), None)
    if records.venue is None:  # an empty stream: nothing applied yet
        records.open()
    opened = serving.Opened(records.venue, keys, state, demo_key, ["read replica"])  # type: ignore[arg-type]
    gateway_options.pop("demo", None)
    return asyncio.run(
        _serve(opened, follower, walk, host, port, announce, stopping, **gateway_options)
    )


async def _serve(
    opened: Any,
    follower: Follower,
    walk: Callable[[LogBatch], Any],
    host: str,
    port: int,
    announce: Callable[[Any, Any], None],
    stopping: Callable[[], bool],
    **gateway_options: Any,
) -> int:
    from derivex.gateway.server import Gateway

    gateway = Gateway(opened.venue, opened.keys, **gateway_options)
    # commands sent over HTTP go on to the leader (cluster/forward.py)
    forwarder = CommandForwarder(follower.log, gateway.auth)
    gateway.app.middlewares.append(forwarder.middleware)
    forwarder.poll()  # now, then every second
    gateway.add_periodic(1.0, forwarder.poll)
    feed = FrameFeed(follower.log, follower.position)
    stop = asyncio.Event()

    def apply() -> None:
        deadline = time.perf_counter() + APPLY_BUDGET_S
        while follower.diverged is None and time.perf_counter() < deadline:
            frame = feed.take()
            if frame is None:
                break
            walk(frame)
        if follower.diverged is not None or stopping():
            stop.set()

    gateway.add_periodic(APPLY_INTERVAL_S, apply)
    # the venue's keys: a key revoked anywhere ends its tokens and sessions here too
    shared = await follow_from(opened.keys, follower.log, "read replica")
    await gateway.start(host, port)
    announce(gateway, opened)
    try:
        await stop.wait()
    finally:
        feed.stop()
        await stop_from(shared, follower.log)
        await gateway.stop()
        await forwarder.close()
    return 2 if follower.diverged is not None else 0
