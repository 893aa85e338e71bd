"""Determinism: one command stream in two fresh processes gives the same state hash and the
same events; pool growth (tiny initial pools vs roomy ones, different batch splits) changes
nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.sim.flow import FlowSpec, generate

# also run as plain Python by the no-JIT pass of scripts/test.sh (about a minute for all
# of tests/core): the kernels' Python semantics must match the compiled ones
pytestmark = pytest.mark.nojit

ROOT = Path(__file__).resolve().parents[2]
SPEC = FlowSpec(commands=6_000, options=3, accounts=40, seed=11, chunk=500)

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from derivex.core.engine import Engine
    from derivex.core.config import EngineConfig
    from derivex.sim.flow import FlowSpec, generate
    setup, flow = generate(FlowSpec(commands=6_000, options=3, accounts=40, seed=11, chunk=500))
    engine = Engine(EngineConfig(risk_checks=False))
    events = [engine.process(setup)]
    for start in range(0, len(flow), 777):
        events.append(engine.process(flow[start:start + 777]))
    engine.check_invariants()
    digest = hashlib.sha256(np.concatenate(events).tobytes()).hexdigest()
    print(engine.state_hash(), digest)
    """
)


def run_in_fresh_process() -> tuple[str, str]:
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    ).stdout.split()
    return output[-2], output[-1]


def run_here() -> tuple[str, str]:
    """What ``SCRIPT`` prints, computed in this process."""
    setup, flow = generate(SPEC)
    engine = Engine(EngineConfig(risk_checks=False))
    events = [engine.process(setup)]
    for start in range(0, len(flow), 777):
        events.append(engine.process(flow[start : start + 777]))
    return engine.state_hash(), hashlib.sha256(np.concatenate(events).tobytes()).hexdigest()


def test_same_stream_same_hash_in_two_processes() -> None:
    first = run_in_fresh_process()
    second = run_in_fresh_process()
    assert first == second == run_here()


def test_pool_growth_and_batch_split_change_nothing() -> None:
    setup, flow = generate(SPEC)
    assert len(flow) == SPEC.commands  # the whole seeded flow runs through each engine
    tiny = EngineConfig(
        risk_checks=False,
        initial_orders=1,
        initial_levels=1,
        initial_accounts=4,
        initial_instruments=1,
        initial_positions=1,
        initial_levels_per_side=1,
    )
    roomy = EngineConfig(
        risk_checks=False,
        initial_orders=1 << 16,
        initial_levels=1 << 12,
        initial_accounts=256,
        initial_instruments=16,
        initial_positions=1 << 12,
        initial_levels_per_side=1 << 10,
    )
    results = []
    for config, step in ((tiny, 1), (tiny, 313), (roomy, len(flow))):
        engine = Engine(config)
        events = [engine.process(setup)]
        for start in range(0, len(flow), step):
            events.append(engine.process(flow[start : start + step]))
        engine.check_invariants()
        results.append(
            (
                engine.state_hash(),
                hashlib.sha256(np.concatenate(events).tobytes()).hexdigest(),
                engine.state.ord_label.shape[0],
            )
        )
    assert results[0][:2] == results[1][:2] == results[2][:2]
    assert results[0][2] != results[2][2]  # the pools really were of different sizes


def test_different_streams_differ() -> None:
    setup, flow = generate(FlowSpec(commands=500, accounts=10, seed=1, chunk=100))
    a, b = Engine(EngineConfig(risk_checks=False)), Engine(EngineConfig(risk_checks=False))
    a.process(setup), b.process(setup)
    a.process(flow)
    b.process(flow[:-1])
    assert a.state_hash() != b.state_hash()
