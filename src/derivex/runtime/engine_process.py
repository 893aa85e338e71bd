"""The sequencer/engine process: takes command batches from the workers' rings, stamps
them (seq, sequencer time), runs them through one ``Engine``, and hands the results on,
all through the venue's one sequencer (``derivex.sequencer``; stages in
docs/architecture.md).

Per batch, in this order: the sequencer stamps it and the engine processes it; the frame
(commands + events) goes onto the bus for the journal and market data (blocking: a full
bus means a slow journal or market-data consumer, and the engine must not run ahead of its
journal); the events go to the submitting worker's response ring (never blocking: a
worker that does not read its responses only stops its own input); the book snapshots are
republished once per round.

The engine takes at most ``batch`` records from a worker at a time, round-robin, and never
splits a multi-record command (mass quote, index, risk array) across batches: a trailing
incomplete one waits for its legs. Workers are independent streams; commands of one worker
are sequenced in the order it pushed them.

A run on a journal that already holds commands (``START_SEQ`` > 0, set by the supervisor)
resumes: the engine recovers the state from the journal directory (latest snapshot +
replay, :func:`derivex.journal.recover`) and continues the seq numbering; the setup
commands are not sequenced again.
"""

from __future__ import annotations

import os
import time

import numpy as np

from derivex import sequencer as sequencing
from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE
from derivex.ipc import BookWriter, BroadcastRing, SpscRing
from derivex.journal import recover
from derivex.runtime.config import RuntimeConfig
from derivex.runtime.control import (
    ENGINE_READY,
    PROCESSED_SEQ,
    START_SEQ,
    STOPPING,
    WK_ALIVE,
    WK_SEEN_GENERATION,
    WK_SEQUENCED,
    Control,
    SegmentNames,
)
from derivex.runtime.doorbell import BellIdle, Doorbell, Doorbells
from derivex.runtime.frames import (
    FRAME_DTYPE,
    FRAME_TAG,
    MAX_LEGS,
    RESPONSE_TAG,
    complete_prefix,
    frame,
)
from derivex.runtime.rings import Pauses, child_setup, offer, take

__all__ = ["Sequencer", "run_engine"]


class _Inbox:
    """What the engine keeps per worker: records taken but not yet processed (a
    multi-record command waiting for its legs), the generation of the worker instance
    that is writing, and responses the worker's ring had no room for yet."""

    def __init__(self, ring: SpscRing, responses: SpscRing, batch: int) -> None:
        self.ring = ring
        self.responses = responses
        self.buf = np.zeros(batch + MAX_LEGS + 1, dtype=COMMAND_DTYPE)
        self.raw = self.buf.view(np.uint8)
        self.n = 0
        self.generation = -1
        self.finished = False
        self.out = np.zeros(1024, dtype=FRAME_DTYPE)  # response frames are built here
        self.pending: np.ndarray | None = None  # response frame records not yet pushed
        self.pending_at = 0
        self.commands = 0
        self.dropped = 0  # records of incomplete commands left by a crashed instance
        self.restarts_seen = 0


class Sequencer(sequencing.Sequencer):
    """The venue's one sequencer (:class:`derivex.sequencer.Sequencer`) as the engine
    process runs it: no before-hook (the journal writer is a bus consumer and workers hold
    their replies until it is durable), the engine's events as views, and the frame
    (header, commands, events) onto the bus as the after-hook. ``header`` describes the
    last batch (``_respond`` reuses it)."""

    def __init__(self, engine: Engine, bus: BroadcastRing, clock=time.time_ns) -> None:
        super().__init__(engine, clock=clock, views=True, after=self._publish)
        self.bus = bus
        self._frame = np.zeros(4096, dtype=FRAME_DTYPE)
        self.header = np.zeros(8, dtype=np.int64)  # of the last batch
        self._origin = (-1, 0)  # worker and generation of the batch being sequenced

    def sequence(self, commands: np.ndarray, worker: int = -1, generation: int = 0) -> np.ndarray:
        """Stamp ``commands`` in place (seq, ts_ns), process them, put the frame on the bus;
        returns the events (a view, valid until the next call). Blocks while the bus is
        full. ``worker`` (-1: the runtime's own setup) and ``generation`` name the
        submitter in the frame header."""
        self._origin = (worker, generation)
        return super().sequence(commands)

    def _publish(self, commands: np.ndarray, events: np.ndarray) -> None:
        """After-hook: the frame of this batch onto the bus (blocking while it is full: the
        engine must not run ahead of its journal)."""
        n = len(commands)
        worker, generation = self._origin
        header = self.header
        header[:] = (
            FRAME_TAG,
            self.seq - n + 1,
            n,
            len(events),
            worker,
            generation,
            self.ts_ns,
            self.batches,
        )
        if len(self._frame) < 1 + n + len(events):
            self._frame = np.zeros(2 * (1 + n + len(events)), dtype=FRAME_DTYPE)
        self.bus.push(frame(self._frame, header, commands, events))


def _respond(inbox: _Inbox, header: np.ndarray, events: np.ndarray) -> None:
    header[0] = RESPONSE_TAG
    header[5] = inbox.generation
    if len(inbox.out) < 1 + len(events):
        inbox.out = np.zeros(2 * (1 + len(events)), dtype=FRAME_DTYPE)
    inbox.pending, inbox.pending_at = frame(inbox.out, header, events), 0
    _flush(inbox)


def _flush(inbox: _Inbox) -> None:
    records = inbox.pending
    assert records is not None
    ring = inbox.responses
    inbox.pending_at += offer(
        ring.ctrl, ring.local, ring.raw, records.view(np.uint8), inbox.pending_at, len(records)
    )
    if inbox.pending_at == len(records):
        inbox.pending = None


def _drain(seqr: Sequencer, inbox: _Inbox, worker: int) -> int:
    """Process what the inbox holds; returns the number of commands sequenced."""
    done = 0
    while inbox.n:
        ready, marker = complete_prefix(inbox.buf, inbox.n)
        if ready:
            events = seqr.sequence(inbox.buf[:ready], worker, inbox.generation)
            _respond(inbox, seqr.header, events)
            inbox.commands += ready
            done += ready
        if marker < 0:
            cut = ready
        else:  # a new instance of the worker starts here; what precedes it is all there is
            inbox.dropped += marker - ready
            inbox.generation = int(inbox.buf[marker]["order_id"])
            inbox.restarts_seen += 1
            cut = marker + 1
        rest = inbox.n - cut
        inbox.raw[: rest * 64] = inbox.raw[cut * 64 : inbox.n * 64].copy()
        inbox.n = rest
        if marker < 0 or inbox.pending is not None:
            break
    return done


def run_engine(config: RuntimeConfig, names: SegmentNames, reports, parent_pid: int) -> None:
    """Body of the engine process (see the module docstring)."""
    child_setup(parent_pid)
    ctl = Control.attach(names.control)
    inboxes = [
        _Inbox(
            SpscRing.attach(c, COMMAND_DTYPE),
            SpscRing.attach(r, FRAME_DTYPE),
            config.batch,
        )
        for c, r in zip(names.commands, names.responses, strict=True)
    ]
    bus = BroadcastRing.attach(names.bus, FRAME_DTYPE)
    book = BookWriter.attach(names.book)
    start_seq = ctl.get(START_SEQ)
    recovered = None
    if start_seq:
        assert config.journal_dir is not None
        recovered = recover(config.journal_dir, config=config.engine, roots=False)
        if recovered.seq != start_seq:
            raise RuntimeError(f"recovered seq {recovered.seq}, the journal ends at {start_seq}")
        engine = recovered.engine
    else:
        engine = Engine(config.engine)
    seqr = Sequencer(engine, bus)
    seqr.seq = start_seq
    if not start_seq and config.setup is not None and len(config.setup):
        seqr.sequence(config.setup.copy(), -1, 0)
    book.publish(engine, seqr.seq)
    ctl.set(PROCESSED_SEQ, seqr.seq)
    ctl.set(ENGINE_READY, os.getpid())
    # woken by a worker that pushed commands (``doorbell``); rings the workers once it
    # has published their frames
    bells = Doorbells(config.name, config.workers)
    bell = Doorbell(bells.engine)
    # (and the bus consumers, the journal writer and market data, which block on theirs)
    frames_rung = [Doorbell(path) for path in (*bells.frames, *bells.bus)]
    idle, pause = (
        BellIdle(bell),
        Pauses(config.pause_probability, config.max_pause_s, f"engine:{config.pause_seed}"),
    )
    started = time.monotonic()
    busy_s = 0.0
    turn = 0
    while True:
        stopping = ctl.phase == STOPPING
        worked = 0
        t0 = time.perf_counter()
        for k in range(len(inboxes)):
            w = (turn + k) % len(inboxes)
            inbox = inboxes[w]
            if inbox.pending is not None:
                _flush(inbox)
                if inbox.pending is not None:
                    if ctl.worker(w, WK_ALIVE) == 0 and (stopping or inbox.ring.finished):
                        inbox.pending = None  # nobody will ever read them
                    continue
            if inbox.finished:
                continue
            room = min(config.batch, len(inbox.buf) - inbox.n)
            ring = inbox.ring
            got = take(ring.ctrl, ring.local, ring.raw, inbox.raw, inbox.n, room)
            if got < 0:
                inbox.finished = True
                inbox.dropped += inbox.n  # an incomplete command at the end of the stream
                inbox.n = 0
                continue
            inbox.n += got
            if got or inbox.n:
                sequenced = _drain(seqr, inbox, w)
                if sequenced or got:
                    ctl.set_worker(w, WK_SEQUENCED, inbox.commands)
                    ctl.set_worker(w, WK_SEEN_GENERATION, inbox.generation)
                worked += sequenced
        turn += 1
        if worked:
            for waiter in frames_rung:
                waiter.ring()
            book.publish(engine, seqr.seq)
            ctl.set(PROCESSED_SEQ, seqr.seq)
            busy_s += time.perf_counter() - t0
            idle.reset()
            pause()
            continue
        if stopping and all(_quiet(ctl, w, inbox) for w, inbox in enumerate(inboxes)):
            break
        idle()
    bus.finish()
    for waiter in frames_rung:
        waiter.ring()
        waiter.close()
    bell.close()
    book.publish(engine, seqr.seq)
    report = {
        "role": "engine",
        "pid": os.getpid(),
        "start_seq": start_seq,
        "snapshot_seq": recovered.snapshot_seq if recovered is not None else None,
        "seq": seqr.seq,
        "batches": seqr.batches,
        "commands": [inbox.commands for inbox in inboxes],
        "dropped": [inbox.dropped for inbox in inboxes],
        "generations": [inbox.generation for inbox in inboxes],
        "seconds": time.monotonic() - started,
        "busy_seconds": busy_s,
        "state_hash": engine.state_hash() if config.state_hash else None,
    }
    reports.put(report)
    for inbox in inboxes:
        inbox.ring.close()
        inbox.responses.close()
    bus.close()
    book.close()
    ctl.close()


def _quiet(ctl: Control, w: int, inbox: _Inbox) -> bool:
    """Nothing more will come from worker ``w``: its stream ended, or its process is gone
    and its ring is empty (checked by the take that preceded this call)."""
    if inbox.pending is not None:
        return False
    return inbox.finished or (ctl.worker(w, WK_ALIVE) == 0 and len(inbox.ring) == 0)
