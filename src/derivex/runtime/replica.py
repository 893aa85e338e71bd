"""Worker replicas: an exact, read-only copy of the engine state in each gateway worker,
kept current from the bus.

Determinism makes it cheap to be exact: the bus carries every batch the engine processed,
stamped, with its events; processing the same commands in the same batches gives the same
state and the same events. A replica does exactly that, one ``Engine.process_into`` per
bus frame, and compares the events it gets with the events the frame carries (a mismatch
raises :class:`ReplicaDiverged`: the worker dies and is restarted, and catches up again).

Catching up. Worker ``W`` owns bus consumer slot ``2 + W``; the slot outlives the worker
instance. Before each release of records the replica writes into the worker's control
line the bus position of the next frame boundary at or after its new cursor
(``WK_BUS_POSITION``) and the last seq of the frames before that boundary
(``WK_BUS_SEQ``). A (re)starting instance therefore knows where the next whole frame
starts in the ring and that every frame before it is, or will be, in the journal. It
drops the records up to that boundary, recovers from the journal (latest snapshot +
replay, as :func:`derivex.journal.recover`), replays the journal further up to
``WK_BUS_SEQ`` (waiting for the journal writer if it lags), and then applies bus frames,
skipping those the journal already covered. A frame that does not follow the state is
preceded by the missing journal batches. Journal batches are the engine's batches, so
every step lands on a frame boundary.

Reading. ``pump()`` copies every complete frame available on the bus into memory and
releases it (it never waits), so the engine never waits for a worker that keeps calling
``pump``, ``poll`` or anything of :class:`derivex.runtime.WorkerContext` that does;
``poll()`` applies what was read. A front end that calls none of them for a whole bus
ring of frames stalls the engine (the bus is blocking).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from derivex.core import query
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE, EVENT_DTYPE, CommandKind
from derivex.exchange import Exchange
from derivex.ipc import BroadcastConsumer
from derivex.ipc.atomics import atomic_load, atomic_store
from derivex.ipc.bcast_kernels import B_DONE, C_CURSOR, Q_CURSOR, bcast_try_peek, consumer_base
from derivex.journal import JournalReader, recover
from derivex.runtime.config import RuntimeConfig
from derivex.runtime.control import (
    WK_APPLIED,
    WK_BUS_POSITION,
    WK_BUS_SEQ,
    Control,
    SegmentNames,
)
from derivex.runtime.frames import FRAME_DTYPE, FrameAssembler

__all__ = [
    "AppliedFrame",
    "Replica",
    "ReplicaDiverged",
    "ReplicaError",
    "ReplicaExchange",
    "replica_slot",
]

_TIME = int(CommandKind.TIME)


def replica_slot(worker: int) -> int:
    """Bus consumer slot of worker ``worker``'s replica (0: journal, 1: market data)."""
    return 2 + worker


class ReplicaError(RuntimeError):
    """The replica cannot follow the engine: misaligned frames, a lost consumer slot, or a
    journal that does not reach the bus cursor in time."""


class ReplicaDiverged(ReplicaError):
    """Replaying a bus frame gave other events than the engine's."""


@dataclass(frozen=True)
class AppliedFrame:
    """One engine batch, applied to the replica: who submitted it (``worker`` -1: the
    runtime's own setup commands), the stamped ``commands`` (seqs ``first_seq ..
    last_seq``) and their ``events`` (equal to the engine's; checked). ``own``: submitted
    by this worker instance, so ``events`` answer its requests in submission order
    (``event.seq - first_seq`` = position). Arrays are the replica's copies; keep them."""

    worker: int
    generation: int
    first_seq: int
    ts_ns: int
    commands: np.ndarray
    events: np.ndarray
    own: bool

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.commands) - 1


class _Frame(NamedTuple):
    worker: int
    generation: int
    first_seq: int
    ts_ns: int
    commands: np.ndarray
    events: np.ndarray


class ReplicaExchange(Exchange):
    """An ``Exchange`` over a replica's engine: every query (open orders, positions, account
    summaries, depth, marks, index) reads the replica state; ``submit`` (and so every
    command method) raises. Instrument names are not known (shell metadata, not
    journaled): refer to instruments by id."""

    def __init__(self, engine: Engine) -> None:
        # Exchange builds an engine of its own: a default-sized one (about 1 MB) rather
        # than a second copy of the venue's pools, replaced at once
        super().__init__(EngineConfig())
        self.engine = engine

    def submit(self, commands: np.ndarray) -> np.ndarray:
        raise ReplicaError("a replica is read-only: submit commands through the worker")


class _BusReader:
    """Whole frames from one consumer slot of the bus.

    Records are released as soon as they are copied: a frame larger than the free part of
    the ring is published piecewise, so holding the cursor at its start would stop the
    engine for good. So that a successor taking the slot over can find its place, the
    reader writes, before each release, the bus position of the next frame boundary at or
    after the new cursor (``WK_BUS_POSITION``) and the last seq of the frames before that
    boundary (``WK_BUS_SEQ``), in this order: a successor drops the records up to the
    boundary and takes their frames from the journal (``start_seq``). Cost of ``read``:
    O(records) copying, a few control-word stores."""

    def __init__(self, consumer: BroadcastConsumer, ctl: Control, worker: int) -> None:
        self.consumer = consumer
        self._ctl = ctl
        self._worker = worker
        self._local = consumer.local.copy()  # its Q_CURSOR is this reader's read position
        self._cursor_word = consumer_base(consumer.k) + C_CURSOR
        self._raw = consumer.records.view(np.uint8)
        self._assembler = FrameAssembler()
        cursor = int(self._local[Q_CURSOR])
        boundary = ctl.worker(worker, WK_BUS_POSITION)
        if boundary < cursor:
            raise ReplicaError(f"bus slot cursor {cursor} is past its frame boundary {boundary}")
        self._skip = boundary - cursor  # the rest of a frame a predecessor had begun
        #: every frame before the boundary has seqs up to this; the journal has them
        self.start_seq = self._seq = ctl.worker(worker, WK_BUS_SEQ)
        self.ended = False
        self.records = 0

    def read(self, out: deque[_Frame]) -> int:
        """Append every complete frame available to ``out`` (copies), release what was
        read; never waits. Returns the number of frames read."""
        if self.ended:
            return 0
        ctrl, local, assembler = self.consumer.ctrl, self._local, self._assembler
        done = atomic_load(ctrl, B_DONE) != 0  # before the reads: nothing after it is lost
        frames = moved = 0
        while True:
            space = assembler.space()
            slot, n = bcast_try_peek(ctrl, local, self._skip or len(space))
            if n < 0:
                raise ReplicaError(f"bus consumer slot {self.consumer.k} is no longer active")
            if n == 0:
                break
            local[Q_CURSOR] += n
            moved += n
            if self._skip:
                self._skip -= n
                continue
            space.view(np.uint8)[: n * 64] = self._raw[slot * 64 : (slot + n) * 64]
            self.records += n
            assembler.commit(n)
            for head, commands, events in assembler.frames():
                out.append(
                    _Frame(
                        int(head["worker"]),
                        int(head["generation"]),
                        int(head["first_seq"]),
                        int(head["ts_ns"]),
                        commands.view(np.uint8).copy().view(COMMAND_DTYPE),
                        events.view(np.uint8).copy().view(EVENT_DTYPE),
                    )
                )
                self._seq = out[-1].first_seq + len(commands) - 1
                frames += 1
        if moved:
            position = int(local[Q_CURSOR])
            if not self._skip:  # else the boundary and seq written before still hold
                partial = assembler.partial()
                boundary, seq = position, self._seq
                if partial is not None:
                    boundary, seq = position - assembler.pending + partial[0], partial[1]
                self._ctl.set_worker(self._worker, WK_BUS_SEQ, seq)
                self._ctl.set_worker(self._worker, WK_BUS_POSITION, boundary)
            atomic_store(ctrl, self._cursor_word, position)
        if done:  # and the loop above found nothing more
            if assembler.pending or self._skip:
                raise ReplicaError("the bus ended inside a frame")
            self.ended = True
        return frames

    def close(self) -> None:
        self.consumer.close()


class Replica:
    """A read-only replica of the engine state in a gateway worker (see the module
    docstring). ``WorkerContext.replica`` of each worker when replicas are on.

    - ``poll(max_frames=None) -> list[AppliedFrame]``: read the bus, apply the frames read
      (up to ``max_frames``), return them in seq order;
    - ``exchange``: a :class:`ReplicaExchange` over the state; ``engine``: the engine;
    - ``applied_seq``: the last seq applied; ``state_hash()``;
    - counters: ``frames_verified`` (bus frames replayed with identical events),
      ``frames_skipped`` (already in the state from the journal), ``journal_commands``
      (replayed from the journal after recovery), ``recovered_seq``, ``catch_up_seconds``.

    Not thread-safe: the front end's thread uses it.
    """

    def __init__(
        self,
        config: RuntimeConfig,
        names: SegmentNames,
        ctl: Control,
        index: int,
        generation: int,
    ) -> None:
        if config.journal_dir is None:
            raise ReplicaError("replicas need a journal_dir")
        started = time.monotonic()
        self.index, self.generation = index, generation
        self._ctl = ctl
        self._directory = config.journal_dir
        self._timeout = config.catch_up_timeout
        self._backlog: deque[_Frame] = deque()
        self.frames_verified = self.frames_skipped = self.journal_commands = 0
        consumer = BroadcastConsumer.attach(names.bus, replica_slot(index), FRAME_DTYPE)
        self._bus = _BusReader(consumer, ctl, index)
        # the frames up to this seq have left our slot (or will be dropped from it); the
        # frames after it are still there
        target = self._bus.start_seq
        self.pump()
        recovered = recover(self._directory, config=config.engine, roots=False)
        self.engine = recovered.engine
        self.applied_seq = self.recovered_seq = recovered.seq
        self.snapshot_seq = recovered.snapshot_seq
        self._journal_to(target)
        self.exchange = ReplicaExchange(self.engine)
        self._publish()
        self.catch_up_seconds = time.monotonic() - started

    # ---- reading and applying ----
    def pump(self) -> int:
        """Read every complete frame available on the bus into memory and release it
        (never waits); returns the frames read. Cheap when there is nothing."""
        return self._bus.read(self._backlog)

    def poll(self, max_frames: int | None = None) -> list[AppliedFrame]:
        """Read the bus and apply the frames read, oldest first (at most ``max_frames``;
        the rest wait in memory for the next call). Raises :class:`ReplicaDiverged` if a
        frame's replayed events differ from the engine's, :class:`ReplicaError` if frames
        do not line up with the state. Cost: the engine's own cost per frame plus ~10 us."""
        self.pump()
        out: list[AppliedFrame] = []
        backlog = self._backlog
        while backlog and (max_frames is None or len(out) < max_frames):
            applied = self._apply(backlog.popleft())
            if applied is not None:
                out.append(applied)
        if out:
            self._publish()
        return out

    @property
    def backlog(self) -> int:
        """Frames read from the bus, not applied yet."""
        return len(self._backlog)

    @property
    def ended(self) -> bool:
        """The bus has ended and every frame on it is applied."""
        return self._bus.ended and not self._backlog

    def run_to_end(self, on_idle=None, timeout: float | None = None) -> bool:
        """Apply frames until the bus ends (the runtime stopped); ``on_idle()`` is called
        between polls. Returns False on ``timeout``."""
        from derivex.runtime.rings import Idle

        idle = Idle()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended:
            if self.poll():
                idle.reset()
                continue
            if on_idle is not None:
                on_idle()
            if deadline is not None and time.monotonic() > deadline:
                return False
            idle()
        return True

    def _apply(self, frame: _Frame) -> AppliedFrame | None:
        first, commands = frame.first_seq, frame.commands
        last = first + len(commands) - 1
        if first > self.applied_seq + 1:
            # released by a predecessor before the journal had it when we recovered
            self._journal_to(first - 1)
        if last <= self.applied_seq:
            self.frames_skipped += 1
            return None
        if first != self.applied_seq + 1:
            raise ReplicaError(
                f"bus frame {first}..{last} does not start after the replica's seq "
                f"{self.applied_seq}"
            )
        got = self.engine.process_into(commands)
        if len(got) != len(frame.events) or not np.array_equal(
            got.view(np.uint8), frame.events.view(np.uint8)
        ):
            raise ReplicaDiverged(
                f"worker {self.index}: replaying bus frame {first}..{last} gave "
                f"{len(got)} events, the engine's frame carries {len(frame.events)}"
                + ("" if len(got) != len(frame.events) else " that differ")
            )
        self.frames_verified += 1
        self.applied_seq = last
        events = frame.events
        if np.any(commands["kind"] == _TIME):
            # what Exchange.submit records for funding_history (events of a TIME batch)
            self.exchange._record_funding(events)
        return AppliedFrame(
            frame.worker,
            frame.generation,
            first,
            frame.ts_ns,
            commands,
            events,
            frame.worker == self.index and frame.generation == self.generation,
        )

    def _journal_to(self, target: int) -> None:
        """Replay journal batches after ``applied_seq`` until it reaches ``target``,
        waiting (up to ``catch_up_timeout``) for the journal writer."""
        deadline = time.monotonic() + self._timeout
        while self.applied_seq < target:
            for batch in JournalReader(self._directory, self.applied_seq + 1):
                self.engine.process_into(batch.commands)
                self.journal_commands += len(batch.commands)
                self.applied_seq = batch.last_seq
                if self.applied_seq >= target:
                    break
            else:
                if time.monotonic() > deadline:
                    raise ReplicaError(
                        f"the journal did not reach seq {target} within {self._timeout} s "
                        f"(it is at {self.applied_seq})"
                    )
                self.pump()  # the engine may be waiting for this slot meanwhile
                time.sleep(0.002)

    @property
    def journal_dir(self) -> str:
        """The journal directory the replica recovers and catches up from."""
        return str(self._directory)

    def _publish(self) -> None:
        self._ctl.set_worker(self.index, WK_APPLIED, self.applied_seq)

    # ---- state ----
    def state_hash(self) -> str:
        return self.engine.state_hash()

    def clock_ns(self) -> int:
        """Sequencer time of the last command applied."""
        return query.clock_ns(self.engine.state)

    def report(self, state_hash: bool = True) -> dict[str, Any]:
        return {
            "applied_seq": self.applied_seq,
            "recovered_seq": self.recovered_seq,
            "snapshot_seq": self.snapshot_seq,
            "frames_verified": self.frames_verified,
            "frames_skipped": self.frames_skipped,
            "journal_commands": self.journal_commands,
            "bus_records": self._bus.records,
            "catch_up_seconds": self.catch_up_seconds,
            "state_hash": self.state_hash() if state_hash else None,
        }

    def close(self) -> None:
        self._bus.close()
