"""Shared book snapshots: top-N levels of every instrument, its mark and its index, in a
named shared-memory segment that any process can read without talking to the engine.

One *block* per instrument (``block_words`` int64 words, a multiple of 64 bytes, so two
instruments never share a cache line)::

    [0] version     seqlock word: odd while the writer is inside the block
    [1] seq         engine seq of the publish that last changed the block
    [2] n_bids      levels filled in ``bids`` (<= depth)
    [3] n_asks
    [4] mark        mark price of the instrument (ticks; 0 until the engine has one)
    [5] index       index price of the instrument's underlying (ticks; 0 if none)
    [6] underlying  underlying id of the instrument
    [7] instrument  the block's own instrument id
    [8 ...]         bids: depth x (price_ticks, qty_lots, orders), best first;
                    then asks the same way; then padding

Segment control words: the engine seq of the last publish, the number of instruments
published, the number of publishes. The segment header is the one of the rings
(:mod:`.segment`): creator pid (so stale segments are detected), record layout, magic.

**Seqlock** (one writer, any number of readers, per block). The writer stores
``version + 1`` (odd), issues a release fence, writes the block, then stores
``version + 2`` with release ordering. A reader load-acquires ``version``; if even, it
copies the block, issues an acquire fence and loads ``version`` again: equal means the copy
is a snapshot the writer published as a whole; otherwise it retries (spinning, then
yielding, then sleeping: see :mod:`.wait`). The writer skips a block whose content did not
change, so readers of a quiet book never retry. Blocks are independent: two instruments
read one after the other may come from different engine batches (compare their ``seq``).

The writer (:func:`book_publish`, :func:`publish_arena`) is njit code the engine calls after
each batch; it only reads the engine state. Readers use :class:`BookReader` from Python or
:func:`book_read` from njit code.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from derivex.core import query
from derivex.core.arena import unpack
from derivex.core.query import instrument_underlying, level_totals, listed_instruments

from .atomics import atomic_load, fence_acquire, fence_release, load_acquire, store_release
from .endpoint import create_segment
from .segment import KIND_NAMES, LINE_WORDS, RingTimeout, Segment
from .wait import DEFAULT_WAIT, WaitStrategy, deadline_after, resolve, wait_step

__all__ = [
    "LEVEL_DTYPE",
    "BookReader",
    "BookSnapshot",
    "BookWriter",
    "block_dtype",
    "book_publish",
    "book_read",
    "publish_arena",
]

KIND_BOOK = 3
KIND_NAMES.setdefault(KIND_BOOK, "book snapshot")

# block words
W_VERSION, W_SEQ, W_NBIDS, W_NASKS, W_MARK, W_INDEX, W_UNDERLYING, W_INSTRUMENT = range(8)
W_LEVELS = 8
# control words of the segment
G_PUBLISHED_SEQ = 0
G_INSTRUMENTS = LINE_WORDS
G_PUBLISHES = 2 * LINE_WORDS
BOOK_CTRL_LINES = 3

#: One level of a snapshot side, best first.
LEVEL_DTYPE = np.dtype([("price_ticks", "<i8"), ("qty_lots", "<i8"), ("orders", "<i8")])


def block_dtype(depth: int) -> np.dtype:
    """Record layout of one instrument block for ``depth`` levels per side."""
    if not 1 <= depth <= 4096:
        raise ValueError(f"depth must be in 1..4096, got {depth}")
    words = W_LEVELS + 6 * depth
    pad = -words % 8
    fields: list[tuple[str, str] | tuple[str, str, tuple[int, ...]]] = [
        ("version", "<i8"),
        ("seq", "<i8"),
        ("n_bids", "<i8"),
        ("n_asks", "<i8"),
        ("mark_ticks", "<i8"),
        ("index_ticks", "<i8"),
        ("underlying", "<i8"),
        ("instrument", "<i8"),
        ("bids", "<i8", (depth, 3)),
        ("asks", "<i8", (depth, 3)),
    ]
    if pad:
        fields.append(("pad", "<i8", (pad,)))
    return np.dtype(fields)


# ------------------------------------------------------------------ writer kernels
@njit(cache=True, nogil=True)
def _fill_side(scratch, at, depth, ladder_price, ladder_level, ladder_len, lvl_i8, lvl_i4, row):
    """Top ``depth`` levels of ladder ``row`` (best is last there) into ``scratch[at:]``."""
    n = min(np.int64(ladder_len[row]), depth)
    top = np.int64(ladder_len[row]) - 1
    for k in range(n):
        level = ladder_level[row, top - k]
        scratch[at + 3 * k] = ladder_price[row, top - k]
        qty, count = level_totals(lvl_i8, lvl_i4, level)
        scratch[at + 3 * k + 1] = qty
        scratch[at + 3 * k + 2] = count
    for k in range(3 * n, 3 * depth):
        scratch[at + k] = 0
    return n


@njit(cache=True, nogil=True)
def _commit(flat, base, words, scratch):
    """Write ``scratch[1:]`` into the block at ``flat[base:]`` under the seqlock if it
    differs from what is there; True if written."""
    same = flat[base + W_VERSION] != 0  # a block is written at least once
    for k in range(W_NBIDS, words):
        if not same:
            break
        same = flat[base + k] == scratch[k]
    if same:
        return False
    version = flat[base + W_VERSION]  # only this writer ever stores it
    store_release(flat, base + W_VERSION, version + 1)
    fence_release()  # the odd version is visible before any word of the block changes
    for k in range(W_SEQ, words):
        flat[base + k] = scratch[k]
    store_release(flat, base + W_VERSION, version + 2)
    return True


@njit(cache=True, nogil=True)
def book_publish(
    flat,
    ctrl,
    words,
    seq,
    n_instruments,
    ladder_price,
    ladder_level,
    ladder_len,
    lvl_i8,
    lvl_i4,
    ins_i4,
    mark_src,
    mark_col,
    index_src,
    index_col,
    scratch,
):
    """Publish the top levels of instruments ``0 .. n_instruments-1`` (clipped to the
    segment's capacity); returns how many blocks changed.

    ``flat`` is the segment's data as one int64 vector (``words`` per block), ``ctrl`` its
    control words, ``scratch`` an int64[words] buffer. Marks are ``mark_src[i, mark_col]``
    and the index of underlying ``u`` is ``index_src[u, index_col]`` (column < 0: zero).
    Cost: O(n_instruments x depth) reads; a block is written only if it changed.
    """
    depth = (words - W_LEVELS) // 6
    n = min(n_instruments, flat.shape[0] // words)
    changed = 0
    for i in range(n):
        underlying = instrument_underlying(ins_i4, i)
        scratch[W_VERSION] = 0
        scratch[W_SEQ] = seq
        scratch[W_NBIDS] = _fill_side(
            scratch, W_LEVELS, depth, ladder_price, ladder_level, ladder_len, lvl_i8, lvl_i4, 2 * i
        )
        scratch[W_NASKS] = _fill_side(
            scratch,
            W_LEVELS + 3 * depth,
            depth,
            ladder_price,
            ladder_level,
            ladder_len,
            lvl_i8,
            lvl_i4,
            2 * i + 1,
        )
        mark = 0
        if mark_col >= 0 and i < mark_src.shape[0]:
            mark = mark_src[i, mark_col]
        index = 0
        if index_col >= 0 and 0 <= underlying < index_src.shape[0]:
            index = index_src[underlying, index_col]
        scratch[W_MARK] = mark
        scratch[W_INDEX] = index
        scratch[W_UNDERLYING] = underlying
        scratch[W_INSTRUMENT] = i
        for k in range(W_LEVELS + 6 * depth, words):
            scratch[k] = 0
        if _commit(flat, i * words, words, scratch):
            changed += 1
    if n > load_acquire(ctrl, G_INSTRUMENTS):
        store_release(ctrl, G_INSTRUMENTS, n)
    store_release(ctrl, G_PUBLISHED_SEQ, seq)
    store_release(ctrl, G_PUBLISHES, ctrl[G_PUBLISHES] + 1)
    return changed


@njit(cache=True, nogil=True)
def publish_arena(
    flat, ctrl, words, seq, arena, layout, mark_src, mark_col, index_src, index_col, scratch
):
    """:func:`book_publish` straight from an engine arena (``Engine.arena``/``.layout``):
    two arrays to unbox instead of seven."""
    st = unpack(arena, layout)
    return book_publish(
        flat,
        ctrl,
        words,
        seq,
        listed_instruments(st),
        st.ladder_price,
        st.ladder_level,
        st.ladder_len,
        st.lvl_i8,
        st.lvl_i4,
        st.ins_i4,
        mark_src,
        mark_col,
        index_src,
        index_col,
        scratch,
    )


# ------------------------------------------------------------------ reader kernel
@njit(cache=True, nogil=True)
def book_read(flat, words, instrument, out, wparams, deadline_ns):
    """Copy block ``instrument`` into ``out`` (int64[words]) under the seqlock.

    Returns the block's (even) version, 0 if it was never written, or -1 if no stable
    copy could be taken before ``deadline_ns`` (monotonic ns; < 0: wait forever). The
    copy's fields are at the ``W_*`` offsets of this module. Cost: O(words) per attempt.
    """
    base = instrument * words
    i = 0
    while True:
        v1 = load_acquire(flat, base + W_VERSION)
        if v1 & 1 == 0:
            for k in range(W_SEQ, words):
                out[k] = flat[base + k]
            fence_acquire()  # the copy is complete before the version is checked again
            if load_acquire(flat, base + W_VERSION) == v1:
                out[W_VERSION] = v1
                return v1
        if not wait_step(wparams, i, deadline_ns):
            return -1
        i += 1


# ------------------------------------------------------------------ Python API
class BookSnapshot(NamedTuple):
    """One instrument's book as published: unpacks as ``(seq, bids, asks, mark, index)``.

    ``bids``/``asks`` are arrays of :data:`LEVEL_DTYPE`, best first."""

    seq: int
    bids: np.ndarray
    asks: np.ndarray
    mark: int
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the public name


class _BookSegment:
    def __init__(self, seg: Segment) -> None:
        self._seg = seg
        self.name = seg.name
        self.dtype = seg.dtype
        self.capacity = seg.capacity
        self.words = seg.record_size // 8
        self.depth = int(seg.dtype["bids"].shape[0])
        self.flat = seg.raw.view(np.int64)
        self.ctrl = seg.ctrl

    @property
    def published_seq(self) -> int:
        """Engine seq of the latest publish (0 before the first)."""
        return atomic_load(self.ctrl, G_PUBLISHED_SEQ)

    @property
    def instruments(self) -> int:
        """Number of instrument blocks published so far."""
        return atomic_load(self.ctrl, G_INSTRUMENTS)

    @property
    def publishes(self) -> int:
        return atomic_load(self.ctrl, G_PUBLISHES)

    def is_stale(self) -> bool:
        return self._seg.is_stale()

    def close(self) -> None:
        for attr in ("flat", "ctrl"):
            self.__dict__.pop(attr, None)
        self._seg.close()

    def unlink(self) -> bool:
        return self._seg.unlink()


class BookWriter(_BookSegment):
    """Creator and only writer of a book snapshot segment (the engine process).

    >>> import os
    >>> from derivex import EngineConfig, Exchange
    >>> ex = Exchange(EngineConfig(risk_checks=False), clock=lambda: 1)  # matching only
    >>> btc = ex.add_perpetual("BTC", tick_size_ticks=50)
    >>> a = ex.create_account(); _ = ex.deposit(a, 10**12)
    >>> _ = ex.place(a, btc, "buy", 3, price_ticks=1000)
    >>> name = f"dxdoc_{os.getpid()}"
    >>> with BookWriter.create(name, instruments=4, depth=5) as writer:
    ...     writer.publish(ex.engine, seq=5)
    ...     with BookReader(name) as reader:
    ...         seq, bids, asks, mark, index = reader.snapshot(btc)
    1
    >>> seq, bids.tolist(), len(asks)
    (5, [(1000, 3, 1)], 0)
    """

    @classmethod
    def create(
        cls, name: str, instruments: int, depth: int = 10, *, replace_stale: bool = False
    ) -> BookWriter:
        """Create segment ``name`` for ``instruments`` blocks (rounded up to a power of
        two) of ``depth`` levels per side. Raises FileExistsError if it exists, unless
        ``replace_stale`` and its creator is gone."""
        capacity = 1 << max(1, (int(instruments) - 1).bit_length())
        seg = create_segment(
            name, KIND_BOOK, block_dtype(depth), capacity, BOOK_CTRL_LINES, replace_stale
        )
        return cls(seg)

    @classmethod
    def attach(cls, name: str, *, timeout: float = 1.0) -> BookWriter:
        """Take over writing a segment another process created (e.g. a supervisor that
        owns the segments). There must be one writer at a time."""
        return cls(Segment.attach(name, KIND_BOOK, timeout=timeout))

    def __init__(self, seg: Segment) -> None:
        super().__init__(seg)
        self._scratch = np.zeros(self.words, dtype=np.int64)
        self._no_source = np.zeros((1, 1), dtype=np.int64)

    def publish(
        self, engine, seq: int, marks: np.ndarray | None = None, index: np.ndarray | None = None
    ) -> int:
        """Publish every instrument of ``engine`` (a ``derivex.Engine``) as of command
        ``seq``; returns the number of blocks that changed.

        Marks and index prices come from the engine state when it has them
        (``query.mark_source`` and ``query.index_source``), else from ``marks``
        (int64 per instrument) and ``index`` (int64 per underlying), else zero.
        Cost: one compiled call, O(instruments x depth).
        """
        state = engine.state
        mark_src, mark_col = self._no_source, -1
        if hasattr(state, "ins_i8"):  # the risk engine's marks
            mark_src, column = query.mark_source(state)
            mark_col = int(column)  # a plain int: numba types an enum member per call
        if marks is not None:
            mark_src, mark_col = _column(marks), 0
        index_src, index_col = self._no_source, -1
        if hasattr(state, "und_i8"):
            index_src, column = query.index_source(state)
            index_col = int(column)
        if index is not None:
            index_src, index_col = _column(index), 0
        return int(
            publish_arena(
                self.flat,
                self.ctrl,
                self.words,
                int(seq),
                engine.arena,
                engine.layout,
                mark_src,
                mark_col,
                index_src,
                index_col,
                self._scratch,
            )
        )

    def __enter__(self) -> BookWriter:
        return self

    def __exit__(self, *exc) -> None:
        owner = self._seg.owner
        self.close()
        if owner:
            self.unlink()


class BookReader(_BookSegment):
    """Read-only view of a book snapshot segment, from any process.

    ``snapshot(i)`` costs one compiled call: O(depth) per attempt, retried while the
    writer is inside that block (spin, then yield, then sleep per ``wait``).
    """

    def __init__(
        self, name: str, *, wait: WaitStrategy | str | None = None, timeout: float = 1.0
    ) -> None:
        """Attach to segment ``name``; waits up to ``timeout`` s for its creator to finish
        initialising it. Raises FileNotFoundError / LayoutError."""
        super().__init__(Segment.attach(name, KIND_BOOK, timeout=timeout))
        self._wparams = resolve(wait or DEFAULT_WAIT).params()
        self._buffer = np.zeros(self.words, dtype=np.int64)

    def read_block(
        self, instrument: int, out: np.ndarray | None = None, timeout: float | None = 1.0
    ) -> np.ndarray:
        """Stable copy of block ``instrument`` as int64 words (offsets ``W_*``)."""
        instrument = int(instrument)
        if not 0 <= instrument < self.capacity:
            raise IndexError(f"instrument {instrument} out of range 0..{self.capacity - 1}")
        out = np.zeros(self.words, dtype=np.int64) if out is None else out
        if (
            book_read(
                self.flat, self.words, instrument, out, self._wparams, deadline_after(timeout)
            )
            < 0
        ):
            detail = " (its writer is gone)" if self.is_stale() else ""
            raise RingTimeout(
                f"book {self.name!r}: no stable snapshot of instrument "
                f"{instrument} within {timeout} s{detail}"
            )
        return out

    def snapshot(self, instrument: int, timeout: float | None = 1.0) -> BookSnapshot:
        """``(seq, bids, asks, mark, index)`` of ``instrument``; an empty book with seq 0
        if nothing was published for it yet. Raises IndexError beyond the segment's
        capacity and :class:`RingTimeout` if the writer holds the block past ``timeout``."""
        words = self.read_block(instrument, self._buffer, timeout)
        depth = self.depth
        levels = words[W_LEVELS : W_LEVELS + 6 * depth].reshape(2, depth, 3)
        n_bids = min(int(words[W_NBIDS]), depth)
        n_asks = min(int(words[W_NASKS]), depth)
        return BookSnapshot(
            int(words[W_SEQ]),
            levels[0, :n_bids].copy().view(LEVEL_DTYPE).reshape(n_bids),
            levels[1, :n_asks].copy().view(LEVEL_DTYPE).reshape(n_asks),
            int(words[W_MARK]),
            int(words[W_INDEX]),
        )

    def __enter__(self) -> BookReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _column(values) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError("marks / index must be 1-D")
    return array.reshape(-1, 1)
