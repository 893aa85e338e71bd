"""The runtime's shared control block, segment names, and crash leftovers.

Segments of a runtime named ``NAME`` (all created by the supervisor, so a segment is stale
exactly when the supervisor that created it is gone)::

    dx.NAME.ctl        control words (this module)
    dx.NAME.cmd.W      gateway worker W -> engine: command records (SPSC)
    dx.NAME.rsp.W      engine -> worker W: response frames (SPSC)
    dx.NAME.bus        engine -> journal (consumer 0), market data (consumer 1), the
                       replica of worker W (consumer 2 + W, when replicas are on): frames
    dx.NAME.book       book snapshots (derivex.ipc.BookWriter / BookReader)

Control words live one per 128-byte line; each has one writer:

* phase (supervisor): STARTING, RUNNING, STOPPING;
* processed_seq (engine), durable_seq (journal), ready flags of engine / journal / market
  data (each its own), md_events (market data: events seen);
* start_seq (supervisor): the last seq of the journal the run resumes from (0: empty);
* per worker: generation and alive (supervisor); commands sequenced and the generation
  of the instance that sent them (engine); the replica's applied seq, bus seq and bus
  position (the worker instance; the supervisor sets the bus seq to start_seq at start).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from derivex.ipc.atomics import load_acquire, store_release
from derivex.ipc.endpoint import create_segment
from derivex.ipc.segment import KIND_NAMES, LINE_WORDS, Segment, is_stale, unlink_name

__all__ = ["Control", "SegmentNames", "remove_leftovers"]

KIND_CONTROL = 4
KIND_NAMES.setdefault(KIND_CONTROL, "runtime control block")
SHM = Path("/dev/shm")

STARTING, RUNNING, STOPPING = 0, 1, 2
# global lines
(
    PHASE,
    PROCESSED_SEQ,
    DURABLE_SEQ,
    ENGINE_READY,
    JOURNAL_READY,
    MD_READY,
    MD_EVENTS,
    START_SEQ,
) = range(8)
GLOBAL_LINES = 8
# per-worker words (in the worker's line): generation and alive are the supervisor's;
# the engine's: commands sequenced from the worker, and the generation they came from;
# the worker's replica: the last seq it applied; the bus position of the next frame
# boundary at or after its consumer slot's cursor, and the last seq of the frames before
# that boundary (a restarted instance skips to the boundary and catches up to the seq
# from the journal); the front end's: 1 + the generation that serves its clients
(
    WK_GENERATION,
    WK_ALIVE,
    WK_SEQUENCED,
    WK_SEEN_GENERATION,
    WK_APPLIED,
    WK_BUS_SEQ,
    WK_BUS_POSITION,
    WK_SERVING,
) = range(8)


@njit(cache=True, nogil=True)
def _load(words, index):
    return load_acquire(words, index)


@njit(cache=True, nogil=True)
def _store(words, index, value):
    store_release(words, index, value)


# (the checked Python wrappers of derivex.ipc.atomics cost microseconds; these words are
# always in range, and the engine sets some after every batch)
_LINE = np.dtype([("w", "<i8", (LINE_WORDS,))])


class SegmentNames:
    """Names of the segments of runtime ``name`` with ``workers`` gateway workers."""

    def __init__(self, name: str, workers: int) -> None:
        self.prefix = f"dx.{name}."
        self.control = self.prefix + "ctl"
        self.bus = self.prefix + "bus"
        self.book = self.prefix + "book"
        self.commands = [f"{self.prefix}cmd.{w}" for w in range(workers)]
        self.responses = [f"{self.prefix}rsp.{w}" for w in range(workers)]

    def all(self) -> list[str]:
        return [self.control, self.bus, self.book, *self.commands, *self.responses]

    def existing(self) -> list[str]:
        """Segments with this runtime's prefix present in /dev/shm (any worker count)."""
        return sorted(p.name for p in SHM.glob(self.prefix + "*"))


def remove_leftovers(names: SegmentNames) -> list[str]:
    """Remove the stale segments of an earlier run of this runtime; return their names.

    Raises RuntimeError if a segment belongs to a runtime that is still alive."""
    removed = []
    for name in names.existing():
        try:
            stale = is_stale(name)
        except FileNotFoundError:
            continue
        if not stale:
            raise RuntimeError(
                f"shared-memory segment {name!r} belongs to a running derivex runtime; "
                "stop it first or choose another name"
            )
        if unlink_name(name):
            removed.append(name)
    return removed


class Control:
    """The control block: ``get(word)`` / ``set(word, value)`` with acquire/release."""

    def __init__(self, seg: Segment) -> None:
        self._seg = seg
        self.words = seg.raw.view(np.int64)
        self.workers = seg.capacity - GLOBAL_LINES

    @classmethod
    def create(cls, name: str, workers: int) -> Control:
        lines = 1 << max(1, (GLOBAL_LINES + workers - 1).bit_length())
        return cls(create_segment(name, KIND_CONTROL, _LINE, lines, 1, False))

    @classmethod
    def attach(cls, name: str) -> Control:
        return cls(Segment.attach(name, KIND_CONTROL, _LINE, timeout=5.0))

    def get(self, line: int) -> int:
        return int(_load(self.words, line * LINE_WORDS))

    def set(self, line: int, value: int) -> None:
        _store(self.words, line * LINE_WORDS, value)

    def worker(self, w: int, word: int) -> int:
        return int(_load(self.words, (GLOBAL_LINES + w) * LINE_WORDS + word))

    def set_worker(self, w: int, word: int, value: int) -> None:
        _store(self.words, (GLOBAL_LINES + w) * LINE_WORDS + word, value)

    @property
    def phase(self) -> int:
        return self.get(PHASE)

    def close(self) -> None:
        self.__dict__.pop("words", None)
        self._seg.close()

    def unlink(self) -> bool:
        return self._seg.unlink()
