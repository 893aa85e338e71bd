"""Records on the runtime's rings: frames of commands and events, and the restart marker.

Every ring record is 64 bytes (``FRAME_DTYPE``, the size of a command and of an event). The
engine writes, per processed batch::

    bus (broadcast: journal, market data):  header, n_commands commands, n_events events
    responses of the submitting worker:     header, n_events events   (n_commands still set)

The header names the batch's first seq; its commands carry ``first_seq .. first_seq +
n_commands - 1`` in the order the worker submitted them, so a worker maps events back to its
requests by ``event.seq - first_seq``. Frames may wrap around a ring's end and may be larger
than what one read returns: readers assemble them (:class:`FrameAssembler`).

A worker (re)starting pushes one :data:`MARKER_KIND` command (``order_id`` = its
generation) before anything else. The engine consumes it without sequencing it: it tells
the engine that an incomplete multi-record command left behind by a crashed predecessor
will never be completed, and which generation later responses belong to.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from derivex.core.codec import COMMAND_KIND, HEADERS, LEGS, command_span
from derivex.core.records import COMMAND_DTYPE, EVENT_DTYPE
from derivex.ipc.atomics import copy_bytes

__all__ = [
    "FRAME_DTYPE",
    "FRAME_TAG",
    "MARKER_KIND",
    "RESPONSE_TAG",
    "CorruptFrame",
    "FrameAssembler",
    "complete_prefix",
    "frame",
    "frame_size",
]

FRAME_DTYPE = np.dtype(
    [
        ("tag", "<i8"),  # FRAME_TAG / RESPONSE_TAG: catches a reader that lost its place
        ("first_seq", "<i8"),
        ("n_commands", "<i8"),
        ("n_events", "<i8"),
        ("worker", "<i8"),  # submitting worker; -1 for commands of the runtime itself
        ("generation", "<i8"),  # worker generation that submitted the commands
        ("ts_ns", "<i8"),  # sequencer timestamp of the batch
        ("batch", "<i8"),  # batch number, from 1
    ]
)
assert FRAME_DTYPE.itemsize == COMMAND_DTYPE.itemsize == EVENT_DTYPE.itemsize == 64
FRAME_TAG = int.from_bytes(b"DXFRAME1", "little")  # bus frame: commands and events
RESPONSE_TAG = int.from_bytes(b"DXRESP01", "little")  # response frame: events only
MARKER_KIND = 255  # never a CommandKind: the engine consumes it, it is never sequenced

# multi-record commands (``codec.MULTI_RECORD``: a header's ``count`` legs follow it and
# must be processed in the same batch) and where a record's kind sits in its int64 words
_KIND_WORD, _KIND_SHIFT, _KIND_MASK = COMMAND_KIND
MAX_LEGS = 1024  # longer multi-record commands are not held back (the engine rejects them)


@njit(cache=True, nogil=True)
def _prefix(words, n, headers, legs, max_legs):
    """(records ready, marker index or -1) for ``n`` command records viewed as int64[n, 8].

    Ready stops before the first marker and before a trailing multi-record command whose
    legs have not all arrived yet."""
    marker = -1
    for i in range(n):
        if ((words[i, _KIND_WORD] >> _KIND_SHIFT) & _KIND_MASK) == MARKER_KIND:
            marker = i
            n = i
            break
    i = n - 1
    # the last header, if any, is the only one that can be incomplete
    while i >= 0 and legs[(words[i, _KIND_WORD] >> _KIND_SHIFT) & _KIND_MASK]:
        i -= 1
    if i >= 0:
        span = command_span(words, i, headers)
        if 1 < span <= max_legs + 1 and i + span > n:
            return i, marker
    return n, marker


def complete_prefix(commands: np.ndarray, n: int) -> tuple[int, int]:
    """``(ready, marker)``: how many of ``commands[:n]`` can be processed now, and the index
    of the first restart marker (-1 if none). O(n)."""
    words = commands.view(np.int64).reshape(-1, 8)
    ready, marker = _prefix(words, n, HEADERS, LEGS, MAX_LEGS)
    return int(ready), int(marker)


@njit(cache=True, nogil=True)
def _pack(out, header, first, second):
    """Header words, then the bytes of ``first`` and ``second``, into ``out`` (bytes)."""
    words = out[:64].view(np.int64)
    for k in range(8):
        words[k] = header[k]
    copy_bytes(out, 64, first, 0, first.shape[0])
    copy_bytes(out, 64 + first.shape[0], second, 0, second.shape[0])


def frame_size(*parts: np.ndarray) -> int:
    return 1 + sum(len(part) for part in parts)


def frame(
    out: np.ndarray, header: np.ndarray, first: np.ndarray, second: np.ndarray | None = None
) -> np.ndarray:
    """Write a frame into the front of ``out`` (FRAME_DTYPE, at least ``frame_size``
    records) and return it: the header record (``header``: int64[8], tag first), then
    ``first`` and ``second`` (command or event arrays) as raw records. One compiled copy."""
    n = 1 + len(first) + (0 if second is None else len(second))
    out = out[:n]
    _pack(
        out.view(np.uint8),
        header,
        first.view(np.uint8),
        _EMPTY if second is None else second.view(np.uint8),
    )
    return out


_EMPTY = np.zeros(0, dtype=np.uint8)


class CorruptFrame(RuntimeError):
    """A ring reader found something that is not a frame header where one must be."""


class FrameAssembler:
    """Reassembles frames from the pieces ring reads return.

    Read into ``space()``, then ``commit(n)``; ``frames()`` yields each complete frame as
    ``(header, commands, events)``: a header record and views of the frame's records
    (``commands`` is empty for response frames), valid until the next ``space()``.
    Frames larger than the buffer grow it.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._buf = np.zeros(capacity, dtype=FRAME_DTYPE)
        self._start = 0
        self._end = 0

    def space(self) -> np.ndarray:
        """The free tail of the buffer (compacted first; doubled if full)."""
        if self._start:
            left = self._end - self._start
            self._buf[:left] = self._buf[self._start : self._end]
            self._start, self._end = 0, left
        if self._end == len(self._buf):
            bigger = np.zeros(2 * len(self._buf), dtype=FRAME_DTYPE)
            bigger[: self._end] = self._buf[: self._end]
            self._buf = bigger
        return self._buf[self._end :]

    def commit(self, n: int) -> None:
        self._end += n

    @property
    def pending(self) -> int:
        """Records of an incomplete frame held back."""
        return self._end - self._start

    def partial(self) -> tuple[int, int] | None:
        """``(records, last seq)`` of the incomplete frame held back (bus frames: its
        header is its first record, so both are known once anything of it arrived), or
        None when nothing is held back."""
        if self._end == self._start:
            return None
        head = self._buf[self._start]
        if int(head["tag"]) != FRAME_TAG:
            raise CorruptFrame(f"record {self._start} of the read buffer is not a bus frame")
        n_commands = int(head["n_commands"])
        size = 1 + n_commands + int(head["n_events"])
        return size, int(head["first_seq"]) + n_commands - 1

    def frames(self):
        buf = self._buf
        while self._end > self._start:
            head = buf[self._start]
            tag = int(head["tag"])
            if tag != FRAME_TAG and tag != RESPONSE_TAG:
                raise CorruptFrame(f"record {self._start} of the read buffer is not a header")
            n_commands = int(head["n_commands"]) if tag == FRAME_TAG else 0
            n_events = int(head["n_events"])
            begin = self._start + 1
            if self._end - begin < n_commands + n_events:
                return
            middle = begin + n_commands
            self._start = middle + n_events
            yield (
                head,
                buf[begin:middle].view(COMMAND_DTYPE),
                buf[middle : self._start].view(EVENT_DTYPE),
            )
