"""The multi-process runtime with real processes: ordering, equivalence with one in-process
Engine, worker replicas equal to the engine (also after worker crashes), worker crashes,
SIGTERM, and leftovers of a killed runtime.

Every run is small (a few thousand commands) and bounded by timeouts; the spawned
processes load the kernels the test process compiled (``warm_kernels``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import runtime_checks as rc

from derivex.runtime import Runtime, RuntimeConfig
from derivex.runtime.control import PROCESSED_SEQ, Control
from derivex.runtime.frontends import setup

ENGINE = rc.ENGINE
_config = rc.runtime_config
_assert_clean = rc.assert_clean
_assert_replicas = rc.assert_replicas


def test_every_command_once_in_order_and_same_state_as_one_engine(tmp_path):
    """Two workers push seeded random batches with random pauses into tiny rings while the
    engine, journal and market data pause at random too: each worker's commands are
    sequenced exactly once, in the order it pushed them; every worker gets all its
    responses in order; replaying the journal in one in-process Engine gives the
    runtime engine's state hash; and so does each worker's replica, which replayed every
    bus frame (a 128-record bus: the engine keeps waiting for the replicas' slots while
    the workers wait to submit)."""
    n = 3000
    cfg = _config(
        rc.unique_name("order"),
        tmp_path / "journal",
        workers=2,
        batch=16,
        command_ring=64,
        response_ring=64,
        bus_ring=128,
        pause_probability=0.05,
        max_pause_s=0.001,
        front_end_options={"commands": n, "batch_max": 40, "pause_probability": 0.05, "seed": 11},
    )
    with Runtime(cfg) as rt:
        assert rt.wait_until(lambda s: s["processed_seq"] >= 2 * n + len(cfg.setup), 60)
    report = rt.report
    _assert_clean(report)
    assert report.exit_codes == {
        "worker0.0": 0,
        "worker1.0": 0,
        "engine": 0,
        "journal": 0,
        "market_data": 0,
    }
    assert report.engine["commands"] == [n, n] and report.engine["dropped"] == [0, 0]
    assert report.engine["seq"] == 2 * n + len(cfg.setup)
    for worker in report.workers:
        assert worker["sent"] == worker["acked"] == n
        assert worker["out_of_order"] == 0 and worker["stale_frames"] == 0
    sequences = rc.instance_sequences(rc.journal_commands(cfg.journal_dir))
    assert sorted(sequences) == [(0, 0), (1, 0)]
    for ks in sequences.values():
        assert np.array_equal(ks, np.arange(n))
    state_hash, last = rc.replay_hash(cfg.journal_dir, cfg)
    assert last == report.engine["seq"]
    assert state_hash == report.engine["state_hash"]
    assert report.market_data["fills"] > 0  # the flow trades, so the hash covers matching
    _assert_replicas(report, cfg.journal_dir)
    for worker in report.workers:
        assert 0 < worker["replica_own_commands"] <= n
    assert rc.segments(cfg.name) == []


def test_crashed_workers_are_restarted_and_the_engine_keeps_running(tmp_path):
    """Worker 1 exits abruptly mid-stream (its front end calls os._exit) and worker 0 is
    SIGKILLed from outside; both come back as generation 1 while the engine process runs
    on. Each instance's commands are sequenced in order, the dead instances' stream is a
    prefix of what they pushed, and the state still equals a replay of the journal. The
    restarted instances' replicas catch up from the journal and end equal to the engine;
    the bus is small, so the engine runs a bus ahead of a dead worker's slot and waits
    until the successor has taken the slot over."""
    cfg = _config(
        rc.unique_name("crash"),
        tmp_path / "journal",
        workers=2,
        batch=32,
        bus_ring=512,
        front_end_options={
            "batch_max": 16,
            "pause_probability": 0.05,
            "seed": 5,
            "crash_after": 1500,
            "crash_worker": 1,
        },
    )
    with Runtime(cfg) as rt:
        engine_pid = rt.status()["pids"]["engine"]

        def sending(w: int, generation: int, more: int):
            """True once the engine sequenced ``more`` commands of that instance."""
            start = rt.status()["sequenced"][w]
            return rt.wait_until(
                lambda s: (
                    s["seen_generations"][w] == generation and s["sequenced"][w] >= start + more
                ),
                60,
            )

        assert sending(1, 1, 500)  # worker 1 crashed by itself and is back
        assert sending(0, 0, 500)
        os.kill(rt.status()["pids"]["worker0"], signal.SIGKILL)
        assert sending(0, 1, 500)
        assert sending(1, 1, 500)
        status = rt.status()
        assert status["pids"]["engine"] == engine_pid and status["restarts"] == [1, 1]
    report = rt.report
    _assert_clean(report)
    assert report.exit_codes["worker1.0"] == 17
    assert report.exit_codes["worker0.0"] == -signal.SIGKILL
    assert report.exit_codes["worker0.1"] == report.exit_codes["worker1.1"] == 0
    assert report.exit_codes["engine"] == 0 and report.engine["pid"] == engine_pid
    assert report.engine["generations"] == [1, 1]
    sequences = rc.instance_sequences(rc.journal_commands(cfg.journal_dir))
    assert sorted(sequences) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for ks in sequences.values():
        assert np.array_equal(ks, np.arange(len(ks)))  # no gap, no duplicate, in order
    assert len(sequences[(1, 0)]) >= 1500  # everything pushed before the crash
    survivors = {w["index"]: w for w in report.workers}
    for w in (0, 1):
        assert survivors[w]["generation"] == 1 and survivors[w]["out_of_order"] == 0
        assert len(sequences[(w, 1)]) == survivors[w]["sent"]
    state_hash, _ = rc.replay_hash(cfg.journal_dir, cfg)
    assert state_hash == report.engine["state_hash"]
    _assert_replicas(report)
    for w in (0, 1):  # the successor started from the journal, past its predecessor
        assert survivors[w]["replica"]["recovered_seq"] > len(cfg.setup)
    assert rc.segments(cfg.name) == []


def _launch(name, tmp_path, *extra):
    ready = tmp_path / f"{name}.ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "derivex.runtime",
            "--name",
            name,
            "--workers",
            "2",
            "--accounts",
            "8",
            "--ready-file",
            str(ready),
            "--report-file",
            str(tmp_path / f"{name}.report"),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if not rc.wait_for(lambda: ready.exists() or proc.poll() is not None, 120):
        proc.kill()
        pytest.fail("runtime did not come up")
    assert proc.poll() is None, proc.stderr.read().decode()
    return proc, json.loads(ready.read_text())


def test_sigterm_stops_cleanly_and_removes_every_segment(tmp_path):
    name = rc.unique_name("term")
    journal = tmp_path / "journal"
    proc, status = _launch(name, tmp_path, "--journal", str(journal))
    try:
        assert len(rc.segments(name)) == 7  # control, bus, book, 2 command, 2 response
        assert len(rc.bells(name)) == 7  # the engine's, 2 x (frames, durable), 2 bus consumers'
        with pytest.raises(RuntimeError, match="belongs to a running derivex runtime"):
            Runtime(RuntimeConfig(name=name)).start()
        ctl = Control.attach(f"dx.{name}.ctl")
        assert rc.wait_for(lambda: ctl.get(PROCESSED_SEQ) > 1000, 60)
        ctl.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc.segments(name) == [] and rc.bells(name) == []
    for pid in status["pids"].values():
        assert rc.pid_gone(pid)
    report = json.loads((tmp_path / f"{name}.report").read_text())
    assert report["clean"] and report["failure"] is None
    assert all(code == 0 for code in report["exit_codes"].values())
    cfg = RuntimeConfig(setup=setup(8), engine=ENGINE)  # what python -m derivex.runtime runs
    state_hash, last = rc.replay_hash(journal, cfg)
    assert last == report["engine"]["seq"] and state_hash == report["engine"]["state_hash"]


def test_stale_segments_of_a_killed_runtime_are_removed_at_the_next_start(tmp_path):
    name = rc.unique_name("stale")
    proc, status = _launch(name, tmp_path)
    proc.kill()  # SIGKILL: the supervisor cannot clean up
    proc.wait(30)
    # its children follow it (parent-death signal) and leave the segments behind
    assert rc.wait_for(lambda: all(rc.pid_gone(p) for p in status["pids"].values()), 30)
    left = rc.segments(name)
    assert len(left) == 7
    assert len(rc.bells(name)) == 7  # replaced at the next start, removed at its stop
    cfg = _config(name, tmp_path / "journal", workers=2, front_end_options={"commands": 200})
    with Runtime(cfg) as rt:
        assert sorted(rt.report.removed_stale) == left
        assert rt.wait_until(lambda s: s["processed_seq"] >= 400 + len(cfg.setup), 60)
    _assert_clean(rt.report)
    assert rc.segments(name) == [] and rc.bells(name) == []


def test_worker_nice_is_checked():
    with pytest.raises(ValueError, match="worker_nice"):
        RuntimeConfig(worker_nice=20)


def test_a_worker_that_never_reads_does_not_deadlock_the_engine(tmp_path):
    """A front end that only submits, into a 32-record command ring, with a 64-record bus
    and response ring: the engine waits for the worker's bus slot, the worker waits for
    room in its command ring, and ``submit`` keeps reading the bus and the responses
    meanwhile. Every command is sequenced and the replica ends equal to the engine."""
    n = 4000
    cfg = _config(
        rc.unique_name("flood"),
        tmp_path / "journal",
        workers=1,
        batch=16,
        command_ring=32,
        response_ring=64,
        bus_ring=64,
        front_end="runtime_checks:flood",
        front_end_options={"commands": n},
        worker_nice=3,  # (RuntimeConfig.worker_nice: the engine wins the CPU on few cores)
    )
    cfg = dataclasses.replace(cfg, front_end_options={"commands": n})  # no synthetic options
    with Runtime(cfg) as rt:
        assert rt.wait_until(lambda s: s["processed_seq"] >= n + len(cfg.setup), 60)
    report = rt.report
    _assert_clean(report)
    assert report.engine["commands"] == [n] and report.workers[0]["sent"] == n
    # the worker ran at the supervisor's niceness + worker_nice; the engine did not
    assert report.workers[0]["nice"] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)
    _assert_replicas(report, cfg.journal_dir, workers=1)
