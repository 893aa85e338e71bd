"""A domain's sequencer leader and its followers (replicas, the standby), on one
``JetStreamLog`` each.

- :class:`Leader`: the one ``Sequencer`` with the JetStream append as its before-hook:
  a batch reaches the engine (and its caller is answered) only after the frame's PubAck.
  On a fence error (the stream moved on without it) or a lost lease it stops for good:
  every later batch is refused with :class:`~derivex.cluster.log.Fenced` before any
  publish.
- :class:`Follower`: reads frames in stream order and runs them through
  ``Sequencer.apply`` (the same kernel, checking the command seqs continue); with the
  leader, it publishes ``(domain, stream seq, seq, state root)`` on ``dx.<domain>.roots``
  at every stream seq divisible by ``every`` (K) and compares its root with the leader's
  at the same stream seq: a difference marks it ``diverged`` (taken out of service) within
  K frames of the frame that caused it.
- :meth:`Follower.take_over`: the standby becomes the leader: waits for the lease, reads
  the stream's end, catches up to it, then appends a NOOP frame as its first write. That
  frame is the fence against the old leader: once it is in, any frame the old leader
  tries has a stale expected-last-sequence and is refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.log import Fenced, LogBatch, WrongLastSequence
from derivex.cluster.pipeline import FramePipeline
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, command_array
from derivex.journal import full_root
from derivex.sequencer import Sequencer

_log = logging.getLogger("derivex.cluster")

__all__ = ["Follower", "Leader", "LeaseLost", "RootReport", "roots_subject", "warm_kernels"]


class LeaseLost(Fenced):
    """The leader's lease ran out or was taken: it stops before it publishes."""


def warm_kernels() -> None:
    """Load (or compile) the kernels a node runs (the engine on writable command records,
    the state root) on a throwaway engine. A node calls it before it stands by: the first
    engine call of a process loads its kernels from the disk cache, seconds on a loaded
    machine, and a standby doing that *after* taking the lease can outlast the lease's
    TTL before its first renewal and lose it again."""
    sequencer = Sequencer(Engine())
    commands = command_array(2)
    commands["kind"] = (CommandKind.CREATE_ACCOUNT, CommandKind.DEPOSIT)
    commands["amount_units"][1] = 1
    sequencer.sequence(commands)
    full_root(sequencer.engine.state)


def _renewed(renewal: concurrent.futures.Future[bool]) -> bool:
    try:
        return renewal.result()
    except Exception:  # a renewal that failed in any way is not a renewal
        return False


def roots_subject(domain: str) -> str:
    return f"dx.{domain}.roots"


@dataclass(frozen=True)
class RootReport:
    """A node's state root after the frame at stream seq ``position`` (command ``seq``)."""

    domain: str
    position: int
    seq: int
    root: str
    node: str
    leader: bool

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes) -> RootReport:
        return RootReport(**json.loads(data))


def _publish_root(log: JetStreamLog, report: RootReport) -> None:
    """Core NATS publish (fire and forget: roots are checks, not state)."""
    log.loop.call(log.nc.publish(roots_subject(log.domain), report.encode()), 5.0)


class Leader:
    """Sequences batches for ``log``'s domain while ``lease`` is held. ``engine`` must be
    at the log's end (``seq`` = ``log.last_seq``: a standby's engine after catching up).
    ``check_lease=False`` leaves the stream's fence as the only guard (tests show it is
    enough). Not thread-safe."""

    def __init__(
        self,
        log: JetStreamLog,
        lease: Lease,
        engine: Engine,
        *,
        seq: int,
        ts_ns: int = 0,
        every: int = 16,
        node: str = "leader",
        clock: Callable[[], int] = time.time_ns,
        check_lease: bool = True,
    ) -> None:
        self.log = log
        self.lease = lease
        self.every = every
        self.node = node
        self.check_lease = check_lease
        self.fenced: BaseException | None = None
        self.sequencer = Sequencer(
            engine, clock=clock, seq=seq, before=self._append, after=self._published
        )
        self.sequencer.ts_ns = ts_ns
        self._renewed = time.monotonic()
        #: set by :meth:`pipeline` (a serving leader): frames are published behind the engine
        self.pipelined: FramePipeline | None = None
        self._renewal: concurrent.futures.Future[bool] | None = None
        self._position = 0  # stream seq the last pushed frame will have (pipelined)
        self._roots: dict[int, RootReport] = {}
        self._roots_lock = threading.Lock()

    @property
    def position(self) -> int:
        """Stream seq of the last frame appended (or read)."""
        return self.log.stream_last

    def sequence(self, commands: np.ndarray) -> np.ndarray:
        """Stamp, publish (fenced), process; returns the events once the frame is
        quorum-durable. Raises Fenced (no publish made, or the server refused it),
        ``LogError`` when the cluster did not answer within the log's ``retry_for``."""
        return self.sequencer.sequence(commands)

    def pipeline(self, outage_s: float = 0.5) -> FramePipeline:
        """From now on publish frames behind the engine (``cluster.pipeline``): the
        before-hook queues each frame and returns; ``pipelined.acked_seq`` says what is
        quorum-durable, and the caller holds its replies until then (the gateway's gate).
        The lease is renewed without blocking too (:meth:`keep_lease`)."""
        if self.pipelined is None:
            self._position = self.log.stream_last
            self.pipelined = FramePipeline(self.log, outage_s=outage_s, after_ack=self._acked)
        return self.pipelined

    def close(self) -> None:
        """Stop the pipeline's writer (frames still queued are not published)."""
        if self.pipelined is not None:
            self.pipelined.close()

    def keep_lease(self) -> None:
        """Renew the lease when a third of its TTL has passed; a failed renewal fences
        this leader (with ``check_lease``). Call it between batches and when idle.
        Pipelined, the renewal runs on the log's loop and its outcome is looked at on the
        next call (the caller never waits for the cluster); a pipeline that failed fences
        the leader too."""
        pipe = self.pipelined
        if pipe is not None and pipe.failed is not None and self.fenced is None:
            self.fenced = pipe.failed
            _log.error("%s: append failed, stopping: %r", self.node, pipe.failed)
        renewal = self._renewal
        if renewal is not None:
            if not renewal.done():
                return
            self._renewal = None
            if not _renewed(renewal):
                self._lease_lost()
        if time.monotonic() - self._renewed < self.lease.ttl_s / 3:
            return
        self._renewed = time.monotonic()
        if pipe is not None:
            self._renewal = asyncio.run_coroutine_threadsafe(
                self.lease.renew_async(), self.log.loop.loop
            )
        elif not self.lease.renew():
            self._lease_lost()

    def _lease_lost(self) -> None:
        if self.check_lease and self.fenced is None:
            self.fenced = LeaseLost(self.sequencer.seq, None, " (lease lost)")
            _log.error("%s: lease lost at seq %d, stopping", self.node, self.sequencer.seq)

    def _append(self, commands: np.ndarray) -> None:
        if self.fenced is not None:
            raise Fenced(self.sequencer.seq, None, f" (stopped: {self.fenced})")
        if self.check_lease and not self.lease.valid:
            self.fenced = LeaseLost(self.sequencer.seq, None, " (lease expired)")
            raise self.fenced
        pipe = self.pipelined
        if pipe is not None:
            pipe.check(commands)  # the failure, or WriteOutage: nothing applied
            pipe.push(commands)
            return
        try:
            self.log.append(commands, int(commands["seq"][0]) - 1)
        except WrongLastSequence as error:
            self.fenced = error
            _log.error("%s: fenced at seq %d: %s", self.node, self.sequencer.seq, error)
            raise
        except BaseException as error:
            # the outcome is unknown (the retries ran out, or worse): the frame may still
            # land, leaving this engine behind the log. Stop; a takeover (which reads the
            # log first) resolves it.
            self.fenced = error
            _log.error("%s: append outcome unknown, stopping: %r", self.node, error)
            raise

    def _published(self, commands: np.ndarray, events: np.ndarray) -> None:
        if self.pipelined is not None:
            self._position += 1
            position = self._position
        else:
            position = self.log.stream_last
        if position % self.every == 0:
            root = full_root(self.sequencer.engine.state).hex()
            report = RootReport(
                self.log.domain, position, self.sequencer.seq, root, self.node, True
            )
            if self.pipelined is None:
                _publish_root(self.log, report)
                return
            # pipelined: the root goes out once its frame is in the stream (a root of a
            # frame that never lands would read as a divergence to the followers)
            with self._roots_lock:
                if self.pipelined.acked_position < position:
                    self._roots[position] = report
                    return
            _publish_root(self.log, report)

    async def _acked(self, position: int, last_seq: int) -> None:
        """After each PubAck (the log's loop thread): publish the roots now landed."""
        with self._roots_lock:
            ready = [p for p in self._roots if p <= position]
            reports = [self._roots.pop(p) for p in sorted(ready)]
        for report in reports:
            await self.log.nc.publish(roots_subject(self.log.domain), report.encode())


class Follower:
    """Applies ``log``'s frames after stream seq ``position`` (command seq ``seq``) to
    ``engine``; checks its roots against the leader's (see the module docstring)."""

    def __init__(
        self,
        log: JetStreamLog,
        engine: Engine | None = None,
        *,
        seq: int = 0,
        position: int = 0,
        every: int = 16,
        node: str = "replica",
    ) -> None:
        self.log = log
        self.sequencer = Sequencer(engine or Engine(), seq=seq)
        self.position = position
        self.every = every
        self.node = node
        self.diverged: str | None = None
        #: called with each applied frame's commands and events (``VenueRecords``)
        self.on_applied: Callable[[np.ndarray, np.ndarray], None] | None = None
        self._lock = threading.Lock()
        self._leader_roots: dict[int, str] = {}
        self._own_roots: dict[int, str] = {}
        self._subscription = log.loop.call(
            log.nc.subscribe(roots_subject(log.domain), cb=self._on_root), 5.0
        )

    def roots(self) -> tuple[dict[int, str], dict[int, str]]:
        """Copies of (own roots, leader roots) by stream seq, as hex strings."""
        with self._lock:
            return dict(self._own_roots), dict(self._leader_roots)

    async def _on_root(self, message) -> None:  # type: ignore[no-untyped-def]
        report = RootReport.decode(message.data)
        if report.leader:
            with self._lock:
                self._leader_roots[report.position] = report.root
                self._compare(report.position)

    def _compare(self, position: int) -> None:
        """Called with the lock held."""
        own, leader = self._own_roots.get(position), self._leader_roots.get(position)
        if own is not None and leader is not None and own != leader and self.diverged is None:
            self.diverged = (
                f"{self.node}: state root at stream seq {position} is {own[:16]}…, "
                f"the leader's is {leader[:16]}…"
            )
            _log.error("replica diverged, out of service: %s", self.diverged)

    def apply_frame(self, frame: LogBatch) -> np.ndarray:
        """Run one frame through the sequencer (``SequenceGap`` if it does not continue);
        at every K-th stream seq compute, publish and compare the state root. Returns the
        frame's events. Cost: one engine call; every K frames a full root (O(state))."""
        if self.diverged is not None:
            raise RuntimeError(f"out of service: {self.diverged}")
        events = self.sequencer.apply(frame.commands)
        if self.on_applied is not None:
            self.on_applied(frame.commands, events)
        assert frame.position is not None
        self.position = frame.position
        if self.position % self.every == 0:
            root = full_root(self.sequencer.engine.state).hex()
            with self._lock:
                self._own_roots[self.position] = root
                self._compare(self.position)
            _publish_root(
                self.log,
                RootReport(
                    self.log.domain, self.position, self.sequencer.seq, root, self.node, False
                ),
            )
        return events

    def poll(
        self, idle: float = 0.5, until: int | None = None, limit_s: float | None = None
    ) -> int:
        """Apply the frames after ``position`` until none came for ``idle`` seconds (or
        stream seq ``until`` is applied, or ``limit_s`` seconds passed: a caller that
        must look up now and then while a leader writes steadily); returns how many were
        applied."""
        applied = 0
        if until is not None and until <= self.position:
            return 0
        deadline = None if limit_s is None else time.monotonic() + limit_s
        for frame in self.log.follow(self.position + 1, until=until, idle=idle):
            if self.diverged is not None:  # (found by the roots listener meanwhile)
                break
            self.apply_frame(frame)
            applied += 1
            if self.diverged is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
        return applied

    def take_over(
        self, lease: Lease, *, timeout: float = 30.0, check_lease: bool = True, attempts: int = 5
    ) -> Leader:
        """Become the leader: acquire ``lease`` (waiting out the old holder's TTL), catch
        up to the stream's end, and append a NOOP frame as the fence. If the old leader
        slipped one more frame in, catch up again and retry (``attempts`` times). Raises
        TimeoutError when the lease stays taken, Fenced when the retries run out."""
        if not lease.held and not lease.acquire(timeout):
            raise TimeoutError(f"lease of {self.log.domain} still held after {timeout} s")
        self.log.writer = str(lease.epoch)  # our Msg-Ids can never match an old leader's
        for _ in range(attempts):
            self.log.refresh()
            self.poll(idle=0.5, until=self.log.stream_last)
            # the catch-up may have taken a good part of the TTL
            if check_lease and not lease.renew():
                raise LeaseLost(self.sequencer.seq, None, " (lease lost during the takeover)")
            leader = Leader(
                self.log,
                lease,
                self.sequencer.engine,
                seq=self.sequencer.seq,
                ts_ns=self.sequencer.ts_ns,
                every=self.every,
                node=self.node,
                check_lease=check_lease,
            )
            noop = command_array(1)
            noop["kind"] = CommandKind.NOOP
            try:
                leader.sequence(noop)
            except LeaseLost:
                raise
            except WrongLastSequence:  # the old leader slipped a frame in: catch up again
                continue
            self.close()
            return leader
        raise Fenced(self.sequencer.seq, None, " (takeover: the stream kept moving)")

    def close(self) -> None:
        """Stop listening to the leader's roots."""
        with contextlib.suppress(Exception):  # the connection may already be closed
            self.log.loop.call(self._subscription.unsubscribe(), 5.0)
