"""Group commit (``fsync="group"``, the default): a flush starts as soon as anything is
pending, every batch it covers becomes durable when it returns, and an ``Exchange`` returns
a batch's events (its acknowledgement) only then. ``"interval"`` (acknowledge before the
flush) stays available as an explicit option."""

from __future__ import annotations

import os
import threading

from derivex.exchange import Exchange
from derivex.journal import Journal, scan
from derivex.journal.writer import DEFAULT_FSYNC

from .test_wal import stamped


def test_group_is_the_default_and_flushes_without_a_timer(tmp_path) -> None:
    assert DEFAULT_FSYNC == "group"
    seen: list[int] = []
    # a 10-minute interval: if anything waited for a timer, this test would hang
    with Journal(tmp_path, interval_ms=600_000, on_durable=seen.append) as journal:
        assert journal.fsync == "group"
        for first in range(1, 301, 10):
            journal.append(stamped(first, 10))
            assert journal.wait_durable(first + 9, timeout=30)
            assert journal.durable_seq >= first + 9
        assert seen and seen[-1] == 300 and seen == sorted(seen)
    assert scan(tmp_path).last_seq == 300


def test_one_flush_covers_every_batch_pending_when_it_starts(tmp_path, monkeypatch) -> None:
    calls: list[int] = []
    gate = threading.Event()
    real = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        calls.append(fd)
        gate.wait(10)  # the first flush is held while more batches are written
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    with Journal(tmp_path) as journal:
        journal.append(stamped(1, 1))
        for first in range(2, 12):
            journal.append(stamped(first, 1))
        assert journal.durable_seq == 0  # nothing acknowledged before a flush returns
        gate.set()
        assert journal.wait_durable(11, timeout=30)
        # the held flush covered seq 1 (at least); one more covered everything after it
        assert len(calls) <= 3
    monkeypatch.setattr(os, "fdatasync", real)


def test_exchange_returns_events_only_once_durable(tmp_path) -> None:
    with Journal(tmp_path) as journal:
        exchange = Exchange(journal=journal)
        for _ in range(50):
            account = exchange.create_account()
            exchange.deposit(account, 1_000)
            assert journal.durable_seq == journal.last_seq  # acknowledged => flushed


def test_interval_acknowledges_before_the_flush_only_when_asked(tmp_path) -> None:
    with Journal(tmp_path, fsync="interval", interval_ms=600_000) as journal:
        exchange = Exchange(journal=journal)
        exchange.create_account()
        # acknowledged while the flush is still due: the documented window of "interval"
        assert journal.last_seq == 1 and journal.durable_seq == 0
    assert scan(tmp_path).last_seq == 1  # close flushed it
