"""``Replica`` in one process, against hand-driven segments: an engine sequences batches
onto a real bus, a real journal lags behind on purpose, and replicas come and go on the
same consumer slot as a crashing worker's would. Covers catching up from the journal to
the slot's bus seq (waiting for the journal writer), skipping frames the journal already
had, filling a gap from the journal, the per-frame event check, and the read-only
``Exchange`` view."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import runtime_checks as rc

from derivex import EngineConfig, Exchange
from derivex.core.records import CommandKind, OrderType, TimeInForce, command_array
from derivex.ipc import BroadcastRing
from derivex.journal import Journal
from derivex.runtime import RuntimeConfig
from derivex.runtime.control import WK_APPLIED, WK_BUS_SEQ, Control, SegmentNames
from derivex.runtime.engine_process import Sequencer
from derivex.runtime.frames import FRAME_DTYPE, FRAME_TAG, frame
from derivex.runtime.frontends import setup
from derivex.runtime.replica import Replica, ReplicaDiverged, ReplicaError

ENGINE = EngineConfig(risk_checks=False)
ACCOUNTS = 8


def _orders(rng: np.random.Generator, n: int) -> np.ndarray:
    batch = command_array(n)
    side = rng.integers(0, 2, n)
    crossing = rng.random(n) < 0.5
    sign = np.where(side == 0, -1, 1) * np.where(crossing, -1, 1)
    batch["kind"] = CommandKind.PLACE_ORDER
    batch["order_type"] = OrderType.LIMIT
    batch["tif"] = np.where(crossing, TimeInForce.IOC, TimeInForce.GTC)
    batch["side"] = side
    batch["account"] = rng.integers(3, 3 + ACCOUNTS, n)
    batch["price_ticks"] = 10_000_000 + sign * rng.integers(1, 20, n) * 50
    batch["qty_lots"] = rng.integers(1, 11, n)
    return batch


class _Venue:
    """Engine + bus (4 slots: journal, market data, replicas of workers 0 and 1, nobody
    reading the first two: the bus is large enough) + a journal the test appends to."""

    def __init__(self, tmp_path, seed: int = 1, bus: int = 1 << 14) -> None:
        name = rc.unique_name("replica")
        self.names = SegmentNames(name, 2)
        self.config = RuntimeConfig(
            engine=ENGINE,
            name=name,
            workers=2,
            journal_dir=str(tmp_path / "journal"),
            catch_up_timeout=10.0,
        )
        self.ctl = Control.create(self.names.control, 2)
        self.bus = BroadcastRing.create(self.names.bus, FRAME_DTYPE, bus, consumers=4)
        self.journal = Journal(self.config.journal_dir, fsync="none")
        self.journal.attach(ENGINE)
        self.exchange = Exchange(ENGINE)  # a view of the venue's engine, for comparisons
        self.sequencer = Sequencer(self.exchange.engine, self.bus, clock=lambda: 1_700_000_000)
        self.rng = np.random.default_rng(seed)
        self.batches: list[np.ndarray] = []  # sequenced, in order
        self.journaled = 0

    def sequence(self, batches: int, worker: int = 0, size: int | None = None) -> None:
        for _ in range(batches):
            n = size or 1 + len(self.batches)
            commands = setup(ACCOUNTS) if not self.batches else _orders(self.rng, n)
            self.sequencer.sequence(commands, worker, 0)
            self.batches.append(commands)

    def journal_to(self, batches: int) -> None:
        for commands in self.batches[self.journaled : batches]:
            self.journal.append(commands)
        self.journaled = max(self.journaled, batches)

    def seq_of(self, batches: int) -> int:
        return sum(len(b) for b in self.batches[:batches])

    def replica(self, worker: int = 0, generation: int = 0) -> Replica:
        return Replica(self.config, self.names, self.ctl, worker, generation)

    def close(self) -> None:
        self.journal.close()
        for segment in (self.bus, self.ctl):
            segment.close()
            segment.unlink()


@pytest.fixture
def venue(tmp_path):
    v = _Venue(tmp_path)
    yield v
    v.close()


def _later(seconds: float, action) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_replica_catches_up_from_the_journal_then_follows_the_bus(venue):
    venue.sequence(6)
    venue.journal_to(4)  # the journal writer lags two batches behind the bus
    first = venue.replica()
    assert first.recovered_seq == venue.seq_of(4) and first.frames_verified == 0
    applied = first.poll()
    # batches 0..3 come from the journal and are skipped on the bus; 4 and 5 are replayed
    assert first.frames_skipped == 4 and first.frames_verified == 2
    assert [(a.first_seq, a.last_seq) for a in applied] == [
        (venue.seq_of(4) + 1, venue.seq_of(5)),
        (venue.seq_of(5) + 1, venue.seq_of(6)),
    ]
    assert all(a.own and a.worker == 0 and len(a.events) >= len(a.commands) for a in applied)
    assert first.applied_seq == venue.seq_of(6) == venue.ctl.worker(0, WK_APPLIED)
    assert first.state_hash() == venue.exchange.state_hash()

    # the worker reads two more frames off its slot and dies before applying them
    venue.sequence(2)
    assert first.pump() == 2 and venue.ctl.worker(0, WK_BUS_SEQ) == venue.seq_of(8)
    first.close()
    venue.sequence(1)
    # its successor must reach seq_of(8) from the journal, which gets there only later
    writer = _later(0.3, lambda: venue.journal_to(9))
    second = venue.replica(generation=1)
    writer.join()
    assert second.applied_seq == venue.seq_of(8)
    assert second.journal_commands == venue.seq_of(8) - second.recovered_seq > 0
    applied = second.poll()
    assert [a.first_seq for a in applied] == [venue.seq_of(8) + 1]
    assert not applied[0].own  # generation 0 submitted it
    assert second.frames_verified == 1 and second.frames_skipped == 0
    assert second.state_hash() == venue.exchange.state_hash()
    second.close()


def test_a_gap_between_the_state_and_the_bus_is_filled_from_the_journal(venue):
    venue.sequence(3)
    venue.journal_to(3)
    first = venue.replica()
    first.poll()
    venue.sequence(2)
    first.pump()
    first.close()
    # as if the predecessor's bus seq had not been written: the successor starts from the
    # journal (seq_of(3)) and finds frames after seq_of(5) on the bus
    venue.ctl.set_worker(0, WK_BUS_SEQ, 0)
    venue.sequence(1)
    second = venue.replica(generation=1)
    assert second.applied_seq == venue.seq_of(3)
    writer = _later(0.3, lambda: venue.journal_to(6))
    applied = second.poll()
    writer.join()
    assert [a.first_seq for a in applied] == [venue.seq_of(5) + 1]
    assert second.journal_commands == venue.seq_of(5) - venue.seq_of(3)
    assert second.state_hash() == venue.exchange.state_hash()
    second.close()


def test_events_that_differ_from_the_engines_are_a_hard_error(venue):
    venue.sequence(2)
    venue.journal_to(2)
    replica = venue.replica(worker=1)
    assert replica.poll() == []  # both batches come from the journal
    commands = _orders(venue.rng, 4)
    commands["seq"] = np.arange(venue.seq_of(2) + 1, venue.seq_of(2) + 5)
    events = Exchange(ENGINE).engine.process(setup(ACCOUNTS))  # someone else's events
    header = np.array([FRAME_TAG, commands["seq"][0], 4, len(events), 0, 0, 0, 3], np.int64)
    out = np.zeros(1 + 4 + len(events), FRAME_DTYPE)
    venue.bus.push(frame(out, header, commands, events))
    with pytest.raises(ReplicaDiverged, match="replaying bus frame"):
        replica.poll()
    replica.close()


def test_the_exchange_view_answers_queries_and_refuses_commands(venue):
    venue.sequence(12)
    venue.journal_to(12)
    replica = venue.replica()
    replica.poll()
    view, truth = replica.exchange, venue.exchange
    assert view.engine is replica.engine
    for account in range(3, 3 + ACCOUNTS):
        assert view.open_orders(account) == truth.open_orders(account)
        assert view.positions(account) == truth.positions(account)
        assert view.account_summary(account) == truth.account_summary(account)
    assert view.depth(0) == truth.depth(0) and view.depth(0).bids
    assert view.mark(0) == truth.mark(0)
    with pytest.raises(ReplicaError, match="read-only"):
        view.place(3, 0, "buy", 1, price_ticks=10_000_000)
    assert replica.state_hash() == truth.state_hash()
    replica.close()


def test_a_frame_larger_than_the_bus_is_released_in_pieces_and_a_successor_skips_its_rest(
    tmp_path,
):
    """A 64-record bus and a batch of 80 orders: the engine publishes the frame piecewise,
    so the replica must release records before the frame is complete. Its successor,
    taking the slot over in the middle of that frame, drops the rest of it and takes it
    from the journal."""
    venue = _Venue(tmp_path, bus=64)
    try:
        for slot in (0, 1, 3):  # only worker 0's replica reads this bus
            venue.bus.drop_consumer(slot)
        venue.sequence(1)
        venue.journal_to(1)
        first = venue.replica()
        assert first.poll() == []
        pusher = threading.Thread(target=venue.sequence, args=(1, 0, 80))
        pusher.start()
        assert rc.wait_for(lambda: first.pump() == 0 and first._bus._assembler.pending, 10)
        first.close()  # dies in the middle of the large frame
        assert venue.ctl.worker(0, WK_BUS_SEQ) == venue.seq_of(1) + 80

        def journal_when_sequenced() -> None:
            pusher.join()
            venue.journal_to(2)

        writer = _later(0.0, journal_when_sequenced)
        second = venue.replica(generation=1)
        writer.join()
        assert second.applied_seq == venue.seq_of(2)
        assert second.journal_commands == 80
        venue.sequence(1, size=5)
        applied = second.poll()
        assert [a.first_seq for a in applied] == [venue.seq_of(2) + 1]
        assert second.frames_verified == 1
        assert second.state_hash() == venue.exchange.state_hash()
        second.close()
    finally:
        venue.close()
