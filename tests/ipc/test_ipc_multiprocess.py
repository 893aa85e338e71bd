"""Real multi-process runs (spawn): every record arrives exactly once, in order.

Producers and consumers pause at seeded random points and use random batch
sizes, partial publishes and partial releases, so the ring is driven through
full, empty and wrap-around states many times.  Each run is bounded: ring
operations time out after 10 s and the harness kills workers after 20 s.
"""

from __future__ import annotations

import os
import signal
import time

import ipc_workers as w
import pytest

from derivex.ipc import BroadcastRing, SpscRing
from derivex.ipc.atomics import atomic_load
from derivex.ipc.broadcast import B_HEAD
from derivex.ipc.ring import S_HEAD, S_TAIL


def _assert_ok(reports):
    final = [rep for tag, rep in reports.items() if not tag.endswith(":stalled")]
    for rep in final:
        assert rep["ok"], f"{rep['tag']}: {rep.get('error')}"
    pids = {rep["pid"] for rep in final}
    assert len(pids) == len(final) and os.getpid() not in pids  # separate processes


@pytest.mark.parametrize(
    ("pmode", "cmode", "n", "batch_max", "seed"),
    [
        ("push", "pop", 60_000, 48, 1),
        ("claim", "peek", 60_000, 48, 2),
        ("push", "pop", 30_000, 200, 3),  # batches larger than the ring
        ("njit", "njit", 1_000_000, 48, 4),
        ("njit", "peek", 100_000, 48, 5),
        ("push", "njit", 100_000, 48, 6),
    ],
)
def test_spsc_exactly_once_in_order(shm_name, pmode, cmode, n, batch_max, seed):
    ring = SpscRing.create(shm_name, w.REC, 64)
    kw = {"batch_max": batch_max}
    reports = w.run(
        [
            (w.producer, ("p", "spsc", shm_name, n, seed, pmode), kw),
            (w.consumer, ("c", "spsc", shm_name, seed + 100, cmode), kw),
        ]
    )
    _assert_ok(reports)
    assert reports["p"]["count"] == n
    assert reports["c"]["count"] == n
    assert atomic_load(ring.ctrl, S_HEAD) == n == atomic_load(ring.ctrl, S_TAIL)
    assert ring.finished
    ring.close()


@pytest.mark.parametrize(
    ("pmode", "cmodes", "n", "seed"),
    [
        ("push", ("pop", "peek", "njit"), 40_000, 11),
        ("njit", ("njit", "njit", "pop"), 300_000, 12),
    ],
)
def test_broadcast_block_every_consumer_gets_everything(shm_name, pmode, cmodes, n, seed):
    ring = BroadcastRing.create(shm_name, w.REC, 64, consumers=len(cmodes), policy="block")
    workers = [(w.producer, ("p", "broadcast", shm_name, n, seed, pmode), {})]
    workers += [
        (w.consumer, (f"c{k}", "broadcast", shm_name, seed + 100 + k, mode), {"k": k})
        for k, mode in enumerate(cmodes)
    ]
    reports = w.run(workers)
    _assert_ok(reports)
    assert reports["p"]["count"] == n
    for k in range(len(cmodes)):
        assert reports[f"c{k}"]["count"] == n
        assert not reports[f"c{k}"].get("dropped")
        assert ring.consumer_state(k)["state"] == "active"
        assert ring.consumer_state(k)["cursor"] == n
    assert atomic_load(ring.ctrl, B_HEAD) == n
    ring.close()


@pytest.mark.parametrize("slow_mode", ["pop", "peek"])
def test_broadcast_drop_policy_drops_stalled_consumer(shm_name, slow_mode):
    """Consumer 2 stalls; after the grace period the producer drops it and carries
    on; the fast consumers still receive every record; consumer 2 then gets
    ConsumerDropped on its next read."""
    # the grace must outlast a fast consumer's start-up (spawn, imports, loading its
    # compiled loop): at 0.5 s, a suite run at load 7-11 saw consumer 1 dropped before it
    # had read anything, twice; the stalled consumer waits for the producer's end anyway
    n, grace = 20_000, 2.0
    ring = BroadcastRing.create(shm_name, w.REC, 64, consumers=3, policy="drop", drop_grace=grace)
    (resume,) = w.events(1)

    def on_report(rep):
        if rep["tag"] == "p":  # producer done: let the stalled consumer continue
            resume.set()

    workers = [
        (w.producer, ("p", "broadcast", shm_name, n, 21, "push"), {}),
        (w.consumer, ("c0", "broadcast", shm_name, 22, "pop"), {"k": 0}),
        (w.consumer, ("c1", "broadcast", shm_name, 23, "njit"), {"k": 1}),
        (
            w.consumer,
            ("c2", "broadcast", shm_name, 24, slow_mode),
            {"k": 2, "stall_event": resume},
        ),
    ]
    reports = w.run(workers, on_report=on_report)
    _assert_ok(reports)
    assert reports["p"]["count"] == n
    for tag in ("c0", "c1"):
        assert reports[tag]["count"] == n and not reports[tag].get("dropped")
    stalled_at = reports["c2:stalled"]["count"]
    slow = reports["c2"]
    assert slow["dropped"] is True
    assert 0 < slow["count"] == stalled_at < n  # everything it did accept was intact
    assert "dropped" in slow["message"] and "consumer 2" in slow["message"]
    assert ring.consumer_state(2)["state"] == "dropped"
    assert ring.consumer_state(0)["state"] == ring.consumer_state(1)["state"] == "active"
    ring.close()


def test_blocking_wait_is_interruptible(shm_name):
    """timeout=None waits in 100 ms njit slices, so SIGINT (Ctrl-C) still gets through."""
    ring = SpscRing.create(shm_name, w.REC, 8)

    def on_report(rep):
        if rep["tag"].endswith(":stalled"):
            time.sleep(0.3)  # let it settle into the blocking wait
            os.kill(rep["pid"], signal.SIGINT)

    reports = w.run([(w.wait_for_interrupt, ("w", shm_name), {})], on_report=on_report)
    rep = reports["w"]
    assert rep["ok"], rep.get("error")
    assert rep["interrupted"] is True
    assert 0.2 < rep["waited"] < 5.0
    ring.close()
