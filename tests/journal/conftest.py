"""Fixtures for the journal tests: a small realistic flow, a deterministic clock, and
helpers that journal a flow through an ``Exchange`` and replay a journal naively."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE
from derivex.exchange import Exchange
from derivex.journal import Journal, read
from derivex.sim.flow import FlowSpec, generate

START_NS = 1_798_761_600_000_000_000
FLOW_SPEC = FlowSpec(commands=6_000, options=3, accounts=40, seed=5, chunk=500)


class StepClock:
    """Advances 1 µs per reading: deterministic sequencer time."""

    def __init__(self) -> None:
        self.now_ns = START_NS

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns


@pytest.fixture(scope="session")
def flow() -> tuple[np.ndarray, np.ndarray]:
    """``(setup, flow)`` of a perpetual + 3 options, 40 accounts, 6000 commands."""
    setup, commands = generate(FLOW_SPEC)
    assert len(commands) == FLOW_SPEC.commands  # the seeded flow has its full length
    return setup, commands


def batches_of(commands: np.ndarray, seed: int, largest: int = 300) -> list[np.ndarray]:
    """``commands`` cut into copies of random sizes in [1, largest] (seeded)."""
    rng = np.random.default_rng(seed)
    parts, start = [], 0
    while start < len(commands):
        size = int(rng.integers(1, largest + 1))
        parts.append(commands[start : start + size].copy())
        start += size
    return parts


def journal_flow(
    directory: Path,
    setup: np.ndarray,
    flow: np.ndarray,
    *,
    seed: int = 0,
    fsync: str = "none",
    roll_bytes: int = 1 << 16,
) -> Exchange:
    """An exchange journaling into ``directory`` that has submitted ``setup`` then ``flow``
    in random batch sizes. The journal is left open (the caller closes it)."""
    exchange = Exchange(
        EngineConfig(risk_checks=False),
        clock=StepClock(),
        journal=Journal(directory, fsync=fsync, roll_bytes=roll_bytes),
    )
    exchange.submit(setup.copy())
    for part in batches_of(flow, seed):
        exchange.submit(part)
    return exchange


def naive_replay(directory: Path) -> tuple[Engine, np.ndarray]:
    """Replay exactly the journaled batches one engine call each (no staging, no snapshot):
    the reference the optimised paths are compared with. Returns the engine and every
    journaled command."""
    config = EngineConfig.from_dict(json.loads((directory / "config.json").read_text()))
    engine = Engine(config)
    commands = []
    for batch in read(directory):
        engine.process(batch.commands)
        commands.append(batch.commands.view(np.uint8).reshape(-1, 64))
    if not commands:
        return engine, np.zeros(0, dtype=COMMAND_DTYPE)
    return engine, np.concatenate(commands).reshape(-1).view(COMMAND_DTYPE)


def as_if_killed(directory: Path, acknowledged_bytes: int) -> None:
    """Rewrite the segment manifest as a writer killed mid-run leaves it: not closed, with
    ``acknowledged_bytes`` of the newest file recorded (what a crash test simulates after a
    clean close)."""
    from derivex.journal import segments

    manifest = segments.load(directory)
    assert manifest is not None
    manifest.closed = False
    manifest.segments[-1].bytes = acknowledged_bytes
    segments.save(directory, manifest)
