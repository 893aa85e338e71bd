"""Crash recovery: a child process journaling under load is killed with SIGKILL at a seeded
random moment; a fresh process recovers. Every acknowledged command is in the journal, the
journal holds exactly the commands that were submitted, and the recovered state (snapshot +
tail) has the root and state hash of a plain replay of the journaled commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from derivex.core.records import CommandKind
from derivex.journal import full_root, list_snapshots
from derivex.sim.flow import FlowSpec, generate

from .conftest import naive_replay

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
RECOVER = """
import json, sys
from derivex.exchange import open_exchange
from derivex.journal import full_root
exchange, recovered = open_exchange(sys.argv[1])
print(json.dumps({"seq": recovered.seq, "snapshot_seq": recovered.snapshot_seq,
                  "torn": str(recovered.torn) if recovered.torn else None,
                  "root": full_root(exchange.engine.state).hex(),
                  "state_hash": exchange.state_hash()}))
exchange.journal.close()
"""


def acknowledged(path: Path) -> list[int]:
    lines = path.read_bytes().split(b"\n")[:-1]  # a line cut by the kill has no newline
    assert b"ready" in lines
    return [int(line) for line in lines if line != b"ready"]


@pytest.fixture(scope="module")
def crash_flow() -> tuple[np.ndarray, np.ndarray]:
    """Long enough that the child is still in the flow when it is killed."""
    return generate(FlowSpec(commands=50_000, options=2, accounts=200, seed=21, chunk=2_000))


@pytest.fixture(scope="module")
def commands_file(crash_flow, tmp_path_factory) -> Path:
    setup, commands = crash_flow
    path = tmp_path_factory.mktemp("flow") / "commands.bin"
    path.write_bytes(setup.tobytes() + commands.tobytes())
    return path


@pytest.mark.parametrize(
    "seed, fsync", [(1, "batch"), (2, "batch"), (3, "interval"), (4, "batch"), (5, "interval")]
)
def test_kill_9_under_load_loses_no_acknowledged_command(
    tmp_path, commands_file, crash_flow, seed, fsync
) -> None:
    directory, ack_file = tmp_path / "journal", tmp_path / "acks"
    child = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            str(directory),
            str(commands_file),
            str(ack_file),
            str(seed),
            fsync,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (ack_file.exists() and b"ready\n" in ack_file.read_bytes()):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "child never got ready"
            time.sleep(0.01)
        delay = np.random.default_rng(seed).uniform(0.05, 0.8)
        time.sleep(delay)
        assert child.poll() is None, f"child ended early: {child.stderr.read().decode()}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    acks = acknowledged(ack_file)
    assert len(acks) > 5, f"seed {seed}: too little load before the kill"
    result = subprocess.run(
        [sys.executable, "-c", RECOVER, str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    recovered = json.loads(result.stdout.splitlines()[-1])
    # no acknowledged command lost
    assert max(acks) <= recovered["seq"], f"seed {seed}: acknowledged {max(acks)}"
    # the journal holds exactly what was submitted, seq 1..n without a gap
    engine, journaled = naive_replay(directory)
    assert len(journaled) == recovered["seq"]
    assert np.array_equal(journaled["seq"], np.arange(1, len(journaled) + 1))
    setup, commands = crash_flow
    expected = np.concatenate(
        [setup.view(np.uint8).reshape(-1, 64), commands.view(np.uint8).reshape(-1, 64)]
    )
    rows = journaled.view(np.uint8).reshape(-1, 64)
    head = min(len(rows), len(expected))
    assert np.array_equal(rows[:head, 16:], expected[:head, 16:])
    assert np.all(journaled["kind"][head:] == CommandKind.TIME)
    # snapshot + tail in a fresh process = plain replay of the journaled commands
    assert recovered["root"] == full_root(engine.state).hex()
    assert recovered["state_hash"] == engine.state_hash()
    engine.check_invariants()
    print(
        f"seed {seed} {fsync}: killed after {delay:.2f}s, {len(acks)} acks, last ack "
        f"{max(acks)} ({head} flow commands), recovered seq {recovered['seq']}, snapshot "
        f"{recovered['snapshot_seq']}, {len(list_snapshots(directory))} snapshots, "
        f"torn: {recovered['torn']}"
    )
