"""Gateway worker processes: a generic host that runs a pluggable *front end*.

The supervisor starts worker ``index`` (and restarts it after a crash with the next
*generation*); the host attaches the worker's two rings, announces itself to the engine
with a restart marker, and calls ``front_end(ctx, **options)``. The front end owns the
process from then on (an HTTP/WebSocket server, a FIX acceptor, a synthetic load): it
submits command records with :meth:`WorkerContext.submit`, collects results with
:meth:`WorkerContext.responses`, and returns once :attr:`WorkerContext.stopping` turns
true (or when it has nothing more to send). Its return value (a dict) goes into the run's
report. A front end that raises, or a worker process that dies, is restarted; the engine is
not disturbed.

Responses are released only once the journal has made the commands durable
(``durable_seq``): a client is acknowledged after its command is on disk.

With replicas on, the host first builds the worker's :class:`~derivex.runtime.replica.Replica`
(catching up from the journal), hands it to the front end as ``ctx.replica``, and once the
front end has returned and the command stream is ended, applies the bus to its end (so a
worker process lives until the runtime stops) and reports the replica's final state.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import NamedTuple

import numpy as np

from derivex.core.records import COMMAND_DTYPE, EVENT_DTYPE
from derivex.ipc import BookReader, RingTimeout, SpscRing
from derivex.runtime.config import RuntimeConfig, load_callable
from derivex.runtime.control import (
    DURABLE_SEQ,
    PROCESSED_SEQ,
    START_SEQ,
    STOPPING,
    WK_SERVING,
    Control,
    SegmentNames,
)
from derivex.runtime.doorbell import BellIdle, Doorbell, Doorbells
from derivex.runtime.frames import FRAME_DTYPE, MARKER_KIND, FrameAssembler
from derivex.runtime.replica import Replica
from derivex.runtime.rings import Idle, child_setup, offer, take

__all__ = ["Response", "WorkerContext", "run_worker"]


class Response(NamedTuple):
    """Results of ``n_commands`` consecutive commands of this worker, sequenced from
    ``first_seq`` on in submission order; ``events`` is their event records."""

    first_seq: int
    n_commands: int
    events: np.ndarray


class WorkerContext:
    """What a front end gets: its index and generation, submission, responses, book
    snapshots, the runtime's state and, with replicas on, ``replica`` (a
    :class:`~derivex.runtime.replica.Replica`: the engine state, current to the bus; None
    otherwise). One thread uses it (not thread-safe). ``submit`` and ``responses`` also
    read the bus into the replica's memory (``Replica.pump``): a front end must call one of
    them, or ``replica.poll()``, regularly, or the engine waits once the bus is full."""

    def __init__(
        self,
        index: int,
        generation: int,
        commands: SpscRing,
        responses: SpscRing,
        ctl: Control,
        names: SegmentNames,
        replica: Replica | None = None,
        bells: Doorbells | None = None,
    ) -> None:
        self.index = index
        self.generation = generation
        self._commands = commands
        self._responses = responses
        self._ctl = ctl
        self._names = names
        self._assembler = FrameAssembler()
        self._held: deque[Response] = deque()
        self._book: BookReader | None = None
        self.replica = replica
        self.submitted = 0
        self.stale_frames = 0
        # (``doorbell``) rung after each push: the engine blocks while it has no work;
        # ``frames_bell``: rung by the engine after it published frames (a front end waiting
        # for its frames blocks on it: ``frames_idle``); ``durable_bell``: rung by the
        # journal writer when ``durable_seq`` moves
        self._engine_bell: Doorbell | None = None
        self.frames_bell: Doorbell | None = None
        self.durable_bell: Doorbell | None = None
        if bells is not None:
            self._engine_bell = Doorbell(bells.engine)
            self.frames_bell = Doorbell(bells.frames[index])
            self.durable_bell = Doorbell(bells.durable[index])

    def frames_idle(self) -> Idle | BellIdle:
        """The back-off of a wait for frames of the bus: blocks on ``frames_bell``."""
        return BellIdle(self.frames_bell) if self.frames_bell is not None else Idle()

    # ---- commands ----
    def submit(self, commands: np.ndarray, timeout: float | None = None) -> int:
        """Push command records (``COMMAND_DTYPE``; ``seq``/``ts_ns`` are assigned by the
        sequencer). While the ring is full it keeps collecting responses (the engine
        stops taking commands from a worker whose responses it cannot deliver) and reading
        the bus into the replica (the engine waits for the replica's bus slot when the
        bus is full), so a front end cannot deadlock with the engine. Raises ``RingTimeout`` after
        ``timeout`` seconds (its ``count``: records pushed). A multi-record command must
        be pushed in one call."""
        if commands.dtype != COMMAND_DTYPE:
            raise TypeError("commands must have dtype COMMAND_DTYPE")
        if np.any(commands["kind"] == MARKER_KIND):
            raise ValueError(f"command kind {MARKER_KIND} is reserved for the runtime")
        ring = self._commands
        raw = np.ascontiguousarray(commands).view(np.uint8)
        total = len(commands)
        done = offer(ring.ctrl, ring.local, ring.raw, raw, 0, total)
        if self._engine_bell is not None:
            self._engine_bell.ring()
        if done < total:
            deadline = None if timeout is None else time.monotonic() + timeout
            idle = Idle()
            while done < total:
                self._receive()
                if self.replica is not None:
                    self.replica.pump()
                idle()
                moved = offer(ring.ctrl, ring.local, ring.raw, raw, done, total)
                if moved:
                    done += moved
                    idle.reset()
                    if self._engine_bell is not None:
                        self._engine_bell.ring()
                elif deadline is not None and time.monotonic() > deadline:
                    self.submitted += done
                    exc = RingTimeout(f"submit: {done} of {total} records in {timeout} s")
                    exc.count = done
                    raise exc
        self.submitted += done
        return done

    # ---- responses ----
    def _receive(self) -> None:
        """Move response frames from the ring into this process (never waits)."""
        ring = self._responses
        while True:
            space = self._assembler.space()
            got = take(ring.ctrl, ring.local, ring.raw, space.view(np.uint8), 0, len(space))
            if got <= 0:
                break
            self._assembler.commit(got)
            if got < len(space):
                break
        for head, _, events in self._assembler.frames():
            if int(head["generation"]) != self.generation:
                self.stale_frames += 1  # results for a crashed predecessor
                continue
            self._held.append(
                Response(
                    int(head["first_seq"]),
                    int(head["n_commands"]),
                    events.view(np.uint8).copy().view(EVENT_DTYPE),
                )
            )

    def responses(self) -> list[Response]:
        """Responses of earlier submissions whose commands are durable, oldest first
        (never waits). Also reads the bus into the replica (without applying it). Cost: one
        ring read plus O(events) copying."""
        self._receive()
        if self.replica is not None:
            self.replica.pump()
        durable = self.durable_seq
        out = []
        while self._held and self._held[0].first_seq + self._held[0].n_commands - 1 <= durable:
            out.append(self._held.popleft())
        return out

    @property
    def held(self) -> int:
        """Responses received but waiting for the journal."""
        return len(self._held)

    # ---- runtime state ----
    @property
    def stopping(self) -> bool:
        """True once the runtime is shutting down: finish up and return."""
        return self._ctl.phase == STOPPING

    @property
    def durable_seq(self) -> int:
        return self._ctl.get(DURABLE_SEQ)

    @property
    def start_seq(self) -> int:
        """The last seq before this run (of the journal it resumed; 0 for a new one)."""
        return self._ctl.get(START_SEQ)

    @property
    def processed_seq(self) -> int:
        return self._ctl.get(PROCESSED_SEQ)

    def book(self) -> BookReader:
        """The shared book snapshots (attached on first use)."""
        if self._book is None:
            self._book = BookReader(self._names.book)
        return self._book

    def mark_serving(self) -> None:
        """Tell the supervisor that this instance's front end now serves its clients (its
        port accepts): the control word ``WK_SERVING`` becomes 1 + its generation."""
        self._ctl.set_worker(self.index, WK_SERVING, self.generation + 1)

    def discard_responses(self) -> None:
        """Take responses off the ring and drop them (after the front end has returned)."""
        self._receive()
        self._held.clear()

    def close(self) -> None:
        for bell in (self._engine_bell, self.frames_bell, self.durable_bell):
            if bell is not None:
                bell.close()
        if self._book is not None:
            self._book.close()
        if self.replica is not None:
            self.replica.close()


def run_worker(
    config: RuntimeConfig,
    names: SegmentNames,
    index: int,
    generation: int,
    reports,
    parent_pid: int,
) -> None:
    """Body of gateway worker ``index`` (see the module docstring)."""
    child_setup(parent_pid)
    if config.worker_nice:
        os.nice(config.worker_nice)
    ctl = Control.attach(names.control)
    commands = SpscRing.attach(names.commands[index], COMMAND_DTYPE)
    responses = SpscRing.attach(names.responses[index], FRAME_DTYPE)
    marker = np.zeros(1, dtype=COMMAND_DTYPE)
    marker["kind"] = MARKER_KIND
    marker["order_id"] = generation
    commands.push(marker)
    replica = Replica(config, names, ctl, index, generation) if config.with_replicas else None
    bells = Doorbells(config.name, config.workers)
    ctx = WorkerContext(index, generation, commands, responses, ctl, names, replica, bells)
    front_end = load_callable(config.front_end)
    started = time.monotonic()
    result = front_end(ctx, **config.front_end_options) or {}
    commands.finish()  # the engine sees the end of this worker's stream
    seconds = time.monotonic() - started
    if replica is not None:
        # the engine may still wait to deliver responses to us: keep taking them
        replica.run_to_end(on_idle=ctx.discard_responses)
        result = {**result, "replica": replica.report(config.state_hash)}
    reports.put(
        {
            "role": "worker",
            "index": index,
            "generation": generation,
            "pid": os.getpid(),
            "submitted": ctx.submitted,
            "stale_frames": ctx.stale_frames,
            "seconds": seconds,
            **result,
        }
    )
    ctx.close()
    commands.close()
    responses.close()
    ctl.close()
