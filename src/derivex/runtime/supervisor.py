"""The supervisor: creates the segments, starts and watches the processes, restarts
crashed gateway workers, stops everything in order, and removes the segments.

Start: stale segments of an earlier run with the same name are removed (a live one is an
error); the journal directory, if any, is opened once (a torn tail is cut, the engine
configuration recorded or checked) and its last seq becomes the run's ``START_SEQ`` (the
engine resumes from it); kernels are compiled in this process first so that children load
them from the on-disk cache; segments are created (the supervisor owns them all); journal,
market data and engine are started and awaited; then the workers.

Worker replicas (``RuntimeConfig.with_replicas``) own bus consumer slots ``2 + W``. A slot
outlives a crashed worker instance (its successor takes it over), so the engine waits for
a dead worker's slot once the bus is full until the successor has caught up; a worker
that is not restarted (clean exit, ``max_restarts`` reached, or the runtime stopping) has
its slot dropped so that the engine never waits for it.

Stop (``stop()``, or SIGINT/SIGTERM under :func:`serve`): phase STOPPING; workers finish
their front ends and end their command streams; the engine drains every worker, then ends
the bus; journal and market data drain the bus and exit. Stragglers get SIGTERM, then
SIGKILL. Segments are unlinked in every case. A crash of the engine, journal or market
data stops the runtime (the journal holds every command sequenced so far).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_any
from typing import Any

import numpy as np

from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE
from derivex.ipc import BookWriter, BroadcastRing, SpscRing
from derivex.ipc.bcast_kernels import bcast_try_peek
from derivex.journal import Journal, recover
from derivex.runtime.config import RuntimeConfig
from derivex.runtime.consumers import run_journal, run_market_data
from derivex.runtime.control import (
    DURABLE_SEQ,
    ENGINE_READY,
    JOURNAL_READY,
    MD_EVENTS,
    MD_READY,
    PHASE,
    PROCESSED_SEQ,
    RUNNING,
    START_SEQ,
    STOPPING,
    WK_ALIVE,
    WK_APPLIED,
    WK_BUS_SEQ,
    WK_GENERATION,
    WK_SEEN_GENERATION,
    WK_SEQUENCED,
    Control,
    SegmentNames,
    remove_leftovers,
)
from derivex.runtime.doorbell import Doorbells
from derivex.runtime.engine_process import run_engine
from derivex.runtime.frames import FRAME_DTYPE, complete_prefix, frame
from derivex.runtime.replica import replica_slot
from derivex.runtime.rings import offer, take
from derivex.runtime.worker import run_worker

__all__ = ["Runtime", "RuntimeReport", "serve"]


@dataclass
class RuntimeReport:
    """What a run left behind: each process's final report, restarts and exit codes."""

    engine: dict[str, Any] | None = None
    journal: dict[str, Any] | None = None
    market_data: dict[str, Any] | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    removed_stale: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def clean(self) -> bool:
        """No core process failed and every process exited by itself with status 0."""
        return self.failure is None and all(code == 0 for code in self.exit_codes.values())


def warm_kernels(config: RuntimeConfig) -> None:
    """Compile (or load) every kernel the processes use, in this process, so that the
    children find them in the on-disk cache instead of compiling them at once on a small
    machine."""
    engine = Engine(config.engine)
    if config.setup is not None and len(config.setup):
        engine.process(config.setup.copy())
    name = f"dx.warm.{os.getpid()}"
    with SpscRing.create(name + ".r", COMMAND_DTYPE, 8) as ring:
        cmds = np.zeros(2, COMMAND_DTYPE)
        ring.push(cmds)
        offer(ring.ctrl, ring.local, ring.raw, cmds.view(np.uint8), 0, 2)
        take(ring.ctrl, ring.local, ring.raw, np.zeros(512, np.uint8), 0, 8)
        complete_prefix(cmds, 2)
    with BroadcastRing.create(name + ".b", FRAME_DTYPE, 8, consumers=1) as bus:
        bus.push(np.zeros(1, FRAME_DTYPE))
        consumer = bus.consumer(0)
        bcast_try_peek(consumer.ctrl, consumer.local.copy(), 1)  # replicas read this way
        consumer.pop_into(np.zeros(4, FRAME_DTYPE), timeout=1.0)
        consumer.close()
    if config.journal_dir is not None:  # the journal walker, for recoveries
        with tempfile.TemporaryDirectory(prefix="dx-warm-") as directory:
            with Journal(directory, fsync="none") as journal:
                journal.attach(config.engine)
                one = np.zeros(1, COMMAND_DTYPE)
                one["seq"] = 1
                journal.append(one)
            recover(directory, config=config.engine, roots=False)
    with BookWriter.create(name + ".k", 2, config.book_depth) as book:
        book.publish(engine, 1)
    ctl = Control.create(name + ".c", 1)
    ctl.set_worker(0, WK_ALIVE, ctl.worker(0, WK_ALIVE))
    ctl.close()
    ctl.unlink()
    frame(np.zeros(3, FRAME_DTYPE), np.zeros(8, np.int64), cmds[:1], cmds[:1])


class Runtime:
    """A multi-process runtime on this machine (see :mod:`derivex.runtime`).

    >>> # rt = Runtime(RuntimeConfig(workers=2)); rt.start(); ...; report = rt.stop()
    """

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.names = SegmentNames(config.name, config.workers)
        self._bells = Doorbells(config.name, config.workers)
        self._ctx = mp.get_context("spawn")
        self._reports = self._ctx.Queue()
        self._procs: dict[str, Any] = {}
        self._segments: list[Any] = []
        self.ctl: Control | None = None
        self._bus: BroadcastRing | None = None
        self.start_seq = 0
        self.report = RuntimeReport(restarts=[0] * config.workers)
        self._lock = threading.Lock()
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        self._stopping = False

    # ---------------------------------------------------------------- start
    def start(self, timeout: float = 600.0) -> Runtime:
        """Create the segments and start every process; returns once the engine has
        processed the setup commands and the workers are starting. ``timeout`` covers a
        child that finds a kernel cache invalidated by a source edit and compiles."""
        cfg = self.config
        self.report.removed_stale = remove_leftovers(self.names)
        if cfg.journal_dir is not None:
            # cuts a torn tail, records or checks the EngineConfig; raises if another
            # writer (an embedded Exchange, another runtime) holds the journal
            with Journal(cfg.journal_dir, fsync="none") as journal:
                journal.attach(cfg.engine)
                self.start_seq = journal.last_seq
        warm_kernels(cfg)
        try:
            self._create_segments()
            self._spawn("journal", run_journal)
            self._spawn("market_data", run_market_data)
            self._spawn("engine", run_engine)
            self._await(
                {"journal": JOURNAL_READY, "market_data": MD_READY, "engine": ENGINE_READY},
                timeout,
            )
            ctl = self.ctl
            assert ctl is not None
            ctl.set(PHASE, RUNNING)
            for w in range(cfg.workers):
                self._start_worker(w, 0)
        except BaseException:
            self._abort("start failed")
            raise
        self._watcher = threading.Thread(target=self._watch, name="derivex-supervisor", daemon=True)
        self._watcher.start()
        return self

    def _create_segments(self) -> None:
        cfg, names = self.config, self.names
        self.ctl = Control.create(names.control, cfg.workers)
        self._segments.append(self.ctl)
        self.ctl.set(START_SEQ, self.start_seq)
        for w in range(cfg.workers):  # a replica's first instance starts from the journal
            self.ctl.set_worker(w, WK_BUS_SEQ, self.start_seq)
        for name in names.commands:
            self._segments.append(SpscRing.create(name, COMMAND_DTYPE, cfg.command_ring))
        for name in names.responses:
            self._segments.append(SpscRing.create(name, FRAME_DTYPE, cfg.response_ring))
        self._bus = BroadcastRing.create(
            names.bus, FRAME_DTYPE, cfg.bus_ring, consumers=cfg.bus_consumers, policy="block"
        )
        self._bells.create()
        self._segments.append(self._bus)
        self._segments.append(BookWriter.create(names.book, cfg.book_instruments, cfg.book_depth))

    def _spawn(self, role: str, target, *args) -> None:
        proc = self._ctx.Process(
            target=target,
            args=(self.config, self.names, *args, self._reports, os.getpid()),
            name=f"derivex-{role}",
            daemon=False,
        )
        proc.start()
        self._procs[role] = proc

    def _start_worker(self, w: int, generation: int) -> None:
        ctl = self.ctl
        assert ctl is not None
        ctl.set_worker(w, WK_GENERATION, generation)
        ctl.set_worker(w, WK_ALIVE, 1)
        self._spawn(f"worker{w}", run_worker, w, generation)

    def _await(self, ready: dict[str, int], timeout: float) -> None:
        ctl = self.ctl
        assert ctl is not None
        deadline = time.monotonic() + timeout
        while not all(ctl.get(line) for line in ready.values()):
            for role in ready:
                if self._procs[role].exitcode is not None:
                    raise RuntimeError(
                        f"{role} process exited with {self._procs[role].exitcode} during start-up"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"runtime processes not ready within {timeout} s")
            time.sleep(0.01)

    # ---------------------------------------------------------------- watch
    def _watch(self) -> None:
        while not self._stop_watch.is_set():
            with self._lock:
                procs = {p.sentinel: role for role, p in self._procs.items() if p.exitcode is None}
            ready = wait_any(list(procs), timeout=0.05)
            with self._lock:
                if self._stopping:
                    return
                for sentinel in ready:
                    self._exited(procs[sentinel])

    def _exited(self, role: str) -> None:
        proc = self._procs[role]
        proc.join()
        ctl = self.ctl
        assert ctl is not None
        if not role.startswith("worker"):
            self.report.failure = f"{role} process exited with {proc.exitcode}"
            return
        w = int(role[len("worker") :])
        ctl.set_worker(w, WK_ALIVE, 0)
        self.report.exit_codes[f"{role}.{ctl.worker(w, WK_GENERATION)}"] = proc.exitcode
        if proc.exitcode == 0 or self.report.restarts[w] >= self.config.max_restarts:
            self._drop_replica(w)
            return
        self.report.restarts[w] += 1
        time.sleep(min(1.0, 0.05 * self.report.restarts[w]))  # a worker failing at start
        self._start_worker(w, ctl.worker(w, WK_GENERATION) + 1)

    def _drop_replica(self, w: int) -> None:
        """Worker ``w`` will not come back: the engine must stop waiting for its slot."""
        if self._bus is not None and self.config.with_replicas:
            self._bus.drop_consumer(replica_slot(w))

    # ---------------------------------------------------------------- state
    def status(self) -> dict[str, Any]:
        """Live counters from the control block, the processes' pids and restarts."""
        ctl = self.ctl
        assert ctl is not None
        with self._lock:
            pids = {role: p.pid for role, p in self._procs.items() if p.exitcode is None}
        return {
            "processed_seq": ctl.get(PROCESSED_SEQ),
            "durable_seq": ctl.get(DURABLE_SEQ),
            "md_events": ctl.get(MD_EVENTS),
            "start_seq": ctl.get(START_SEQ),
            "generations": [ctl.worker(w, WK_GENERATION) for w in range(self.config.workers)],
            # per worker: the last seq its replica applied
            "applied": [ctl.worker(w, WK_APPLIED) for w in range(self.config.workers)],
            # per worker, from the engine: commands sequenced, generation last seen
            "sequenced": [ctl.worker(w, WK_SEQUENCED) for w in range(self.config.workers)],
            "seen_generations": [
                ctl.worker(w, WK_SEEN_GENERATION) for w in range(self.config.workers)
            ],
            "restarts": list(self.report.restarts),
            "pids": pids,
            "failure": self.report.failure,
        }

    def wait_until(self, predicate, timeout: float, interval: float = 0.01) -> bool:
        """Poll ``predicate(status)`` until true or ``timeout``; False on timeout or on a
        core process failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status["failure"]:
                return False
            if predicate(status):
                return True
            time.sleep(interval)
        return False

    # ---------------------------------------------------------------- stop
    def stop(self) -> RuntimeReport:
        """Stop in order (see the module docstring), collect the reports, remove the
        segments. Idempotent."""
        if self.ctl is None:
            return self.report
        with self._lock:
            self._stopping = True
        self._stop_watch.set()
        if self._watcher is not None:
            self._watcher.join()
        ctl = self.ctl
        ctl.set(PHASE, STOPPING)
        # after a core process failed the bus may never end: do not wait long for anyone
        timeout = self.config.stop_timeout if self.report.failure is None else 2.0
        workers = [r for r in self._procs if r.startswith("worker")]
        self._join_workers(workers, timeout)
        self._join(workers, 0.0)  # stragglers: SIGTERM, then SIGKILL
        for w in range(self.config.workers):
            ctl.set_worker(w, WK_ALIVE, 0)
            self._drop_replica(w)
        self._join(["engine"], timeout)
        self._join(["journal", "market_data"], timeout)
        self._collect()
        self._cleanup()
        return self.report

    def _join_workers(self, roles: list[str], timeout: float) -> None:
        """Wait for the workers (with replicas they apply the bus to its end, so they
        exit after the engine); one that is gone is marked dead at once and its slot
        dropped, so that the engine neither waits for its stream nor for its slot."""
        ctl = self.ctl
        assert ctl is not None
        deadline = time.monotonic() + timeout
        left = set(roles)
        while left and time.monotonic() < deadline:
            for role in sorted(left):
                if self._procs[role].exitcode is not None:
                    w = int(role[len("worker") :])
                    ctl.set_worker(w, WK_ALIVE, 0)
                    self._drop_replica(w)
                    left.discard(role)
            if left:
                time.sleep(0.01)

    def _join(self, roles: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for role in roles:
            proc = self._procs[role]
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.terminate()
                proc.join(2.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join(2.0)
            key = (
                role
                if not role.startswith("worker") or self.ctl is None
                else (f"{role}.{self.ctl.worker(int(role[6:]), WK_GENERATION)}")
            )
            self.report.exit_codes[key] = proc.exitcode

    def _collect(self) -> None:
        while True:
            try:
                item = self._reports.get(timeout=0.2)
            except queue.Empty:
                return
            role = item.pop("role")
            if role == "worker":
                self.report.workers.append(item)
            else:
                setattr(self.report, role, item)

    def _abort(self, why: str) -> None:
        self.report.failure = self.report.failure or why
        for proc in self._procs.values():
            if proc.exitcode is None:
                proc.kill()
                proc.join(2.0)
        self._cleanup()

    def _cleanup(self) -> None:
        self._bells.remove()
        for segment in self._segments:
            segment.close()
            segment.unlink()
        self._segments.clear()
        self.ctl = None
        self._bus = None
        self._reports.close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(config: RuntimeConfig, seconds: float | None = None, on_ready=None) -> RuntimeReport:
    """Run until SIGINT/SIGTERM (or for ``seconds``), then stop cleanly; the body of
    ``derivex serve --workers N``. ``on_ready(runtime)`` is called once it runs."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    runtime = Runtime(config)
    try:
        runtime.start()
        if on_ready is not None:
            on_ready(runtime)
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stop.is_set() and runtime.report.failure is None:
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.1)
        return runtime.stop()
    finally:
        runtime.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
