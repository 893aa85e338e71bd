"""Shared book snapshots: content against the engine, the seqlock across processes, and the
segment's lifetime."""

from __future__ import annotations

import doctest
import multiprocessing as mp
import os
import signal
from pathlib import Path

import book_workers as bw
import ipc_workers as w
import numpy as np
import pytest

from derivex import Exchange
from derivex.ipc import BookReader, BookWriter, SpscRing
from derivex.ipc import book as book_module
from derivex.ipc.atomics import atomic_load, atomic_store
from derivex.ipc.book import G_INSTRUMENTS, G_PUBLISHED_SEQ, W_VERSION
from derivex.ipc.segment import LayoutError, RingTimeout

SHM = Path("/dev/shm")
INDEX = 10_000_000
CALL_MARK = 200_500


def _venue():
    ex = Exchange(clock=lambda: 1_798_761_600_000_000_000)
    perp = ex.add_perpetual("BTC", tick_size_ticks=50)
    call = ex.add_option(
        "BTC", 1_798_790_400_000_000_000, 10_000_000, "call", tick_size_ticks=5, min_trade_lots=1
    )
    accounts = [ex.create_account() for _ in range(3)]
    for account in accounts:
        ex.deposit(account, 10**13)
    # index and marks, so that the risk checks accept orders and the snapshots carry them
    assert ex.set_index("BTC", [(1, 1_798_761_600_000_000_000, INDEX)]).accepted
    scenarios = len(ex.engine.config.scenarios)
    assert ex.set_risk(call, CALL_MARK, [0] * scenarios).accepted
    return ex, perp, call, accounts


def _levels(snapshot_side) -> list[tuple[int, int, int]]:
    return [tuple(int(x) for x in level) for level in snapshot_side.tolist()]


def test_snapshot_matches_engine_depth(shm_name):
    ex, perp, call, (a, b, c) = _venue()
    rng = np.random.default_rng(3)
    for k in range(60):  # more levels than the published depth on both sides
        side = "buy" if k % 2 else "sell"
        away = int(rng.integers(1, 30)) * 50
        price = 10_000_000 - away if side == "buy" else 10_000_000 + away
        ex.place((a, b)[k % 2], perp, side, int(rng.integers(1, 9)), price_ticks=price)
    ex.place(c, call, "sell", 4, price_ticks=200_000)
    ex.place(c, call, "sell", 6, price_ticks=200_000)
    with BookWriter.create(shm_name, instruments=3, depth=5) as writer:
        assert writer.capacity == 4
        assert writer.publish(ex.engine, seq=77) == 2
        with BookReader(shm_name) as reader:
            assert reader.depth == 5 and reader.instruments == 2 and reader.published_seq == 77
            for instrument in (perp, call):
                depth = ex.depth(instrument)
                seq, bids, asks, mark, index = reader.snapshot(instrument)
                assert seq == 77
                assert _levels(bids) == depth.bids[:5]
                assert _levels(asks) == depth.asks[:5]
                assert bids.dtype.names == ("price_ticks", "qty_lots", "orders")
                # marks and the index come from the engine state
                assert mark == ex.mark(instrument) and mark > 0
                assert index == ex.index("BTC").price_ticks == INDEX
            assert reader.snapshot(call).mark == CALL_MARK
            assert _levels(reader.snapshot(call).asks) == [(200_000, 10, 2)]
            assert len(reader.snapshot(perp).bids) == 5 and len(reader.snapshot(perp).asks) == 5
            # an unchanged book is not rewritten: its version and seq stay
            version = int(reader.flat[perp * reader.words + W_VERSION])
            assert version > 0 and version % 2 == 0
            assert writer.publish(ex.engine, seq=78) == 0
            assert int(reader.flat[perp * reader.words + W_VERSION]) == version
            assert reader.snapshot(perp).seq == 77 and reader.published_seq == 78
            # a trade changes only the perpetual's block
            best_price, best_qty, _ = ex.depth(perp).asks[0]
            assert ex.place(c, perp, "buy", best_qty, price_ticks=best_price).status == "filled"
            assert writer.publish(ex.engine, seq=90) == 1
            seq, _, asks, _, _ = reader.snapshot(perp)
            assert seq == 90 and _levels(asks) == ex.depth(perp).asks[:5]
            assert reader.snapshot(call).seq == 77
            # explicit marks (per instrument) and index (per underlying) take precedence
            writer.publish(ex.engine, seq=91, marks=[5, 6], index=[0, 7])
            assert reader.snapshot(perp)[3:] == (5, 7) and reader.snapshot(call)[3:] == (6, 7)


def test_docstring_examples():
    result = doctest.testmod(book_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_unpublished_and_out_of_range(shm_name):
    with BookWriter.create(shm_name, instruments=2, depth=3) as writer:
        reader = BookReader(shm_name)
        seq, bids, asks, mark, index = reader.snapshot(1)
        assert (seq, len(bids), len(asks), mark, index) == (0, 0, 0, 0, 0)
        with pytest.raises(IndexError):
            reader.snapshot(2)
        ex, *_ = _venue()
        writer.publish(ex.engine, seq=1)  # empty books are published too
        assert int(reader.flat[W_VERSION]) == 2 and reader.snapshot(0).seq == 1
        reader.close()


def test_write_in_progress_is_never_returned(shm_name):
    """A block whose version is odd (writer inside it) is not read; with a writer that
    never finishes, the reader gives up at its timeout and says so."""
    with BookWriter.create(shm_name, instruments=2, depth=3) as writer:
        ex, *_ = _venue()
        writer.publish(ex.engine, seq=5)
        reader = BookReader(shm_name, wait="backoff")
        atomic_store(writer.flat, W_VERSION, atomic_load(writer.flat, W_VERSION) + 1)
        with pytest.raises(RingTimeout, match="no stable snapshot of instrument 0"):
            reader.snapshot(0, timeout=0.05)
        assert reader.snapshot(1).seq == 5  # other blocks are unaffected
        atomic_store(writer.flat, W_VERSION, atomic_load(writer.flat, W_VERSION) + 1)
        assert reader.snapshot(0).seq == 5
        reader.close()


def test_layout_is_validated(shm_name, shm_names):
    ring = SpscRing.create(shm_name, w.REC, 8)
    with pytest.raises(LayoutError, match="spsc ring, expected book snapshot"):
        BookReader(shm_name)
    ring.close()
    with pytest.raises(FileNotFoundError):
        BookReader(shm_names())
    with pytest.raises(ValueError, match="depth"):
        BookWriter.create(shm_names(), instruments=2, depth=0)


def test_blocks_do_not_share_cache_lines(shm_name):
    for depth in (1, 5, 10, 13):
        with BookWriter.create(f"{shm_name}_{depth}", instruments=4, depth=depth) as book:
            assert (book.words * 8) % 64 == 0 and book.flat.ctypes.data % 64 == 0
            assert book.words >= 8 + 6 * depth


def test_readers_in_other_processes_never_see_a_torn_snapshot(shm_name):
    """A writer process republishes every block as fast as it can (each generation
    changes every word); an njit reader and a Python reader in two more processes check
    each snapshot against the generation its seq names."""
    generations = 150_000
    reports = w.run(
        [
            # the writer starts once both readers are attached: reads race the writes
            (bw.writer, ("writer", shm_name, generations), {"wait_readers": 2}),
            (bw.njit_reader, ("njit", shm_name, generations), {}),
            (bw.python_reader, ("python", shm_name, generations), {}),
        ],
        timeout=60.0,
    )
    for tag in ("writer", "njit", "python"):
        assert reports[tag]["ok"], reports[tag].get("error")
    assert reports["writer"]["changed"] == generations * bw.INSTRUMENTS
    for tag in ("njit", "python"):
        rep = reports[tag]
        assert rep["bad"] == 0, rep
        assert rep["top"] == generations  # read the final state after the last publish
        assert rep["changes"] > bw.INSTRUMENTS  # saw books change while reading
        assert rep.get("timeouts", 0) == 0
    assert reports["njit"]["reads"] > 1000


def test_checker_rejects_mixed_generations():
    """The invariant the readers use can fail: a block mixing two generations is caught."""
    book = BookWriter.create(f"dxtest_{os.getpid()}_mixed", bw.INSTRUMENTS, depth=8)
    try:
        arrays = bw.books()
        scratch = np.zeros(book.words, np.int64)
        bw.write_loop(book.flat, book.ctrl, book.words, 9, arrays, scratch, 0)
        block = book.flat[: book.words].copy()
        assert bw.check_block(block, 0, 8, bw.LADDER)
        bw.write_loop(book.flat, book.ctrl, book.words, 10, arrays, scratch, 0)
        newer = book.flat[: book.words]
        torn = block.copy()
        torn[len(torn) // 2 :] = newer[len(torn) // 2 :]
        assert bw.check_block(newer.copy(), 0, 8, bw.LADDER)
        assert not bw.check_block(torn, 0, 8, bw.LADDER)
        assert atomic_load(book.ctrl, G_PUBLISHED_SEQ) == 10
        assert atomic_load(book.ctrl, G_INSTRUMENTS) == bw.INSTRUMENTS
    finally:
        book.close()
        book.unlink()


def test_stale_segment_of_a_killed_writer(shm_name):
    """The creator is recorded in the header: after it is killed the segment is stale and
    a new writer replaces it."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=bw.writer, args=(q, "writer", shm_name, 10**9, 1000))
    proc.start()
    try:
        rep = q.get(timeout=30)
        assert rep["tag"] == "writer:stalled" and rep["pid"] == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    assert (SHM / shm_name).exists()
    reader = BookReader(shm_name)
    assert reader.is_stale()
    reader.close()
    with pytest.raises(FileExistsError):
        BookWriter.create(shm_name, instruments=2)
    with BookWriter.create(shm_name, instruments=2, replace_stale=True) as writer:
        assert not writer.is_stale() and writer.published_seq == 0
    assert not (SHM / shm_name).exists()
