"""Child-process bodies for the book snapshot tests (spawn-safe, module level).

The writer publishes synthetic books in which every number is a function of the
generation ``g`` (the publish seq), the instrument, the side and the level rank; readers
in other processes recompute each snapshot from its ``seq`` and count any mismatch. A
torn snapshot (words from two generations) cannot pass: its seq would not explain all of
its levels, counts, mark and index.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import ipc_workers as w
import numpy as np
from numba import njit

from derivex.core import layout as L
from derivex.core.layout import Ins4, Level4, Level8
from derivex.ipc import BookReader
from derivex.ipc.atomics import load_acquire, sleep_ns
from derivex.ipc.book import (
    G_PUBLISHED_SEQ,
    W_INDEX,
    W_LEVELS,
    W_MARK,
    W_NASKS,
    W_NBIDS,
    W_SEQ,
    W_UNDERLYING,
    BookWriter,
    book_publish,
    book_read,
)
from derivex.ipc.wait import SPIN_YIELD

INSTRUMENTS = 4
LADDER = 12  # levels per ladder row; more than the published depth
UNDERLYINGS = 3


def books(instruments: int = INSTRUMENTS, ladder: int = LADDER):
    """Empty synthetic state arrays shaped like the engine's."""
    rows = 2 * instruments
    return (
        np.zeros((rows, ladder), np.int64),  # ladder_price
        np.full((rows, ladder), L.NIL, np.int32),  # ladder_level
        np.zeros(rows, np.int32),  # ladder_len
        np.zeros((rows * ladder, L.LEVEL_I8_FIELDS), np.int64),  # lvl_i8
        np.zeros((rows * ladder, L.LEVEL_I4_FIELDS), np.int32),  # lvl_i4
        np.zeros((instruments, L.INSTRUMENT_I4_FIELDS), np.int32),  # ins_i4
        np.zeros(instruments, np.int64),  # marks
        np.zeros(UNDERLYINGS, np.int64),  # index per underlying
    )


@njit(cache=True)
def expected_len(g, i, side, ladder):
    return (g * 3 + i + side * 5) % (ladder + 1)


@njit(cache=True)
def price(g, i, side, rank):
    return g * 1_000_000 + i * 10_000 + side * 1_000 + rank


@njit(cache=True)
def qty(g, i, side, rank):
    return (g * 7 + i * 13 + side * 17 + rank) % 1_000 + 1


@njit(cache=True)
def count(g, i, side, rank):
    return (g + i + side + rank) % 50 + 1


@njit(cache=True)
def set_generation(g, ladder_price, ladder_level, ladder_len, lvl_i8, lvl_i4, ins_i4, marks, index):
    """Overwrite the whole synthetic state with generation ``g`` (best level last)."""
    ladder = ladder_price.shape[1]
    for i in range(ins_i4.shape[0]):
        ins_i4[i, Ins4.UNDERLYING] = i % UNDERLYINGS
        marks[i] = g * 7 + i
        for side in range(2):
            row = 2 * i + side
            n = expected_len(g, i, side, ladder)
            ladder_len[row] = n
            for k in range(n):
                rank = n - 1 - k
                level = row * ladder + k
                ladder_level[row, k] = level
                ladder_price[row, k] = price(g, i, side, rank)
                lvl_i8[level, Level8.QTY_LOTS] = qty(g, i, side, rank)
                lvl_i4[level, Level4.COUNT] = count(g, i, side, rank)
    for u in range(index.shape[0]):
        index[u] = g * 11 + u


@njit(cache=True)
def check_block(out, instrument, depth, ladder):
    """True if the copied block is exactly what generation ``out[W_SEQ]`` published."""
    g = out[W_SEQ]
    if g == 0:
        return out[W_NBIDS] == 0 and out[W_NASKS] == 0
    if out[W_MARK] != g * 7 + instrument:
        return False
    if out[W_UNDERLYING] != instrument % UNDERLYINGS:
        return False
    if out[W_INDEX] != g * 11 + instrument % UNDERLYINGS:
        return False
    for side in range(2):
        n = min(expected_len(g, instrument, side, ladder), depth)
        if out[W_NBIDS + side] != n:
            return False
        at = W_LEVELS + side * 3 * depth
        for rank in range(depth):
            p, q, c = out[at + 3 * rank], out[at + 3 * rank + 1], out[at + 3 * rank + 2]
            if rank < n:
                if (
                    p != price(g, instrument, side, rank)
                    or q != qty(g, instrument, side, rank)
                    or c != count(g, instrument, side, rank)
                ):
                    return False
            elif p != 0 or q != 0 or c != 0:
                return False
    return True


@njit(cache=True)
def write_loop(flat, ctrl, words, generations, arrays, scratch, pause_every):
    ladder_price, ladder_level, ladder_len, lvl_i8, lvl_i4, ins_i4, marks, index = arrays
    changed = 0
    for g in range(1, generations + 1):
        set_generation(
            g, ladder_price, ladder_level, ladder_len, lvl_i8, lvl_i4, ins_i4, marks, index
        )
        changed += book_publish(
            flat,
            ctrl,
            words,
            g,
            ins_i4.shape[0],
            ladder_price,
            ladder_level,
            ladder_len,
            lvl_i8,
            lvl_i4,
            ins_i4,
            marks.reshape(-1, 1),
            0,
            index.reshape(-1, 1),
            0,
            scratch,
        )
        if pause_every and g % pause_every == 0:
            sleep_ns(20_000)
    return changed


@njit(cache=True)
def read_loop(flat, ctrl, words, depth, ladder, instruments, last, wparams, deadline):
    """Read random instruments until the writer published ``last``; returns
    (reads, bad, seq changes seen, max seq, timeouts)."""
    out = np.zeros(words, np.int64)
    seen = np.zeros(instruments, np.int64)
    reads = bad = changes = timeouts = 0
    top = 0
    state = 12345
    while True:
        done = load_acquire(ctrl, G_PUBLISHED_SEQ) >= last
        state = (state * 6364136223846793005 + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
        i = (state >> 33) % instruments
        if book_read(flat, words, i, out, wparams, deadline) < 0:
            timeouts += 1
            break
        reads += 1
        if not check_block(out, i, depth, ladder):
            bad += 1
        if out[W_SEQ] != seen[i]:
            changes += 1
            seen[i] = out[W_SEQ]
        top = max(top, out[W_SEQ])
        if done:
            break
    return reads, bad, changes, top, timeouts


# ------------------------------------------------------------------ process bodies
def _attach(name: str) -> BookReader:
    """Attach once the writer process has created the segment."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return BookReader(name, timeout=10.0)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _ready_flag(name, tag):
    return Path("/dev/shm") / f"{name}.ready.{tag}"


def mark_ready(name, tag):
    """A reader has attached (the writer may start: see ``writer``'s ``wait_readers``)."""
    _ready_flag(name, tag).touch()


def await_readers(name, count, timeout_s=60.0):
    """Until ``count`` readers marked themselves ready (bounded); removes their flags."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        flags = list(Path("/dev/shm").glob(f"{name}.ready.*"))
        if len(flags) >= count:
            for flag in flags:
                flag.unlink(missing_ok=True)
            return
        time.sleep(0.001)


def writer(q, tag, name, generations, pause_every=0, wait_readers=0):
    """Republish every block ``generations`` times; with ``wait_readers``, only once that
    many readers have attached (a reader that starts late would see the final state only,
    and the test would not show reads racing writes)."""

    def body():
        book = BookWriter.create(name, INSTRUMENTS, depth=8)
        q.put({"tag": tag + ":stalled", "pid": os.getpid()})  # segment exists
        await_readers(name, wait_readers)
        arrays = books()
        t0 = time.monotonic()
        changed = write_loop(
            book.flat,
            book.ctrl,
            book.words,
            generations,
            arrays,
            np.zeros(book.words, np.int64),
            pause_every,
        )
        elapsed = time.monotonic() - t0
        book.close()  # the test process unlinks it
        return {"count": generations, "changed": int(changed), "seconds": elapsed}

    w._report(q, tag, body)


def njit_reader(q, tag, name, last):
    def body():
        reader = _attach(name)
        # compiled (or loaded) before it counts as ready: one read (``last`` 0 is reached)
        args = (reader.flat, reader.ctrl, reader.words, reader.depth, LADDER, INSTRUMENTS)
        read_loop(*args, 0, SPIN_YIELD.params(), time.monotonic_ns() + 30 * 10**9)
        mark_ready(name, tag)
        reads, bad, changes, top, timeouts = read_loop(
            *args,
            last,
            SPIN_YIELD.params(),
            time.monotonic_ns() + 30 * 10**9,
        )
        reader.close()
        return {
            "reads": int(reads),
            "bad": int(bad),
            "changes": int(changes),
            "top": int(top),
            "timeouts": int(timeouts),
        }

    w._report(q, tag, body)


def python_reader(q, tag, name, last):
    """The public API: ``snapshot(i)`` rebuilt into words and checked the same way."""

    def body():
        reader = _attach(name)
        mark_ready(name, tag)
        words = np.zeros(reader.words, np.int64)
        depth = reader.depth
        reads = bad = changes = top = 0
        seen = [0] * INSTRUMENTS
        rng = np.random.default_rng(5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = reader.published_seq >= last
            i = int(rng.integers(0, INSTRUMENTS))
            seq, bids, asks, mark, index = reader.snapshot(i, timeout=10.0)
            words[:] = 0
            words[W_SEQ], words[W_MARK], words[W_INDEX] = seq, mark, index
            words[W_UNDERLYING] = i % UNDERLYINGS if seq else 0
            words[W_NBIDS], words[W_NASKS] = len(bids), len(asks)
            for side, levels in enumerate((bids, asks)):
                at = W_LEVELS + side * 3 * depth
                flat = levels.view(np.int64).reshape(-1)
                words[at : at + len(flat)] = flat
            reads += 1
            bad += not check_block(words, i, depth, LADDER)
            if seq != seen[i]:
                changes += 1
                seen[i] = seq
            top = max(top, seq)
            if done:
                break
        reader.close()
        return {"reads": reads, "bad": int(bad), "changes": changes, "top": top}

    w._report(q, tag, body)
