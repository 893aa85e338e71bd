"""Doorbells (``derivex.runtime.doorbell``): a waiter blocked on one is woken by a ring from
another process, rings are never lost (a ring before the wait makes it return at once),
many rings make one wake-up, a full pipe drops rings without error, and a runtime removes
its doorbells when it stops."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import time
from pathlib import Path

import pytest

from derivex.runtime.doorbell import BellIdle, Doorbell, Doorbells


@pytest.fixture
def bell_path(tmp_path: Path) -> str:
    path = str(tmp_path / "bell")
    Doorbell.create(path)
    return path


def test_a_ring_before_the_wait_is_not_lost(bell_path: str) -> None:
    bell = Doorbell(bell_path)
    assert bell.wait(0) is False  # nothing rung yet
    Doorbell(bell_path).ring()
    assert bell.wait(5.0) is True
    assert bell.wait(0) is False  # the ring was taken


def test_many_rings_make_one_wake_up_and_a_full_pipe_drops_rings(bell_path: str) -> None:
    ringer, waiter = Doorbell(bell_path), Doorbell(bell_path)
    for _ in range(100_000):  # more than a pipe holds: the surplus is dropped silently
        ringer.ring()
    assert waiter.wait(1.0) is True
    assert waiter.wait(0) is False


def _ring_later(path: str, delay_s: float) -> None:
    time.sleep(delay_s)
    Doorbell(path).ring()


def test_a_ring_from_another_process_wakes_a_blocked_waiter(bell_path: str) -> None:
    waiter = Doorbell(bell_path)
    child = mp.get_context("spawn").Process(target=_ring_later, args=(bell_path, 0.3))
    child.start()
    try:
        # blocked in poll(2) until the child rings (the timeout is only a backstop)
        assert waiter.wait(60.0) is True
    finally:
        child.join(30)
    assert child.exitcode == 0


def test_create_replaces_a_stale_pipe_and_remove_spares_other_files(tmp_path: Path) -> None:
    path = tmp_path / "bell"
    Doorbell.create(path)
    Doorbell(path).ring()  # a byte left by a killed run
    Doorbell.create(path)
    assert Doorbell(path).wait(0) is False
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    Doorbell.remove(path)
    assert not path.exists()
    plain = tmp_path / "plain"
    plain.write_text("not a bell")
    Doorbell.remove(plain)
    assert plain.exists()


def test_bell_idle_spins_then_blocks_until_rung(bell_path: str) -> None:
    idle = BellIdle(Doorbell(bell_path), spins=3, max_wait_s=60.0)
    for _ in range(3):
        idle()  # the spin phase never blocks
    Doorbell(bell_path).ring()
    idle()  # would block for 60 s without the ring
    idle.reset()
    assert idle.i == 0


def test_doorbell_paths_are_per_runtime_and_worker() -> None:
    bells = Doorbells("test-x", 2)
    assert len(set(bells.all())) == 7  # the engine, 2 x (frames, durable), the 2 bus consumers
    assert all(path.startswith("/dev/shm/dxbell.test-x.") for path in bells.all())
    assert Doorbells("test-y", 2).engine != bells.engine
