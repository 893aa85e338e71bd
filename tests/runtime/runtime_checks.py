"""Checks shared by the runtime tests: the usual configuration, the checks of a clean run
and of the workers' replicas, replay a journal into one in-process Engine, and read back
the order in which each synthetic worker instance's commands were sequenced."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, OrderType, TimeInForce, command_array
from derivex.journal import read
from derivex.runtime.config import RuntimeConfig
from derivex.runtime.frontends import setup

SHM = Path("/dev/shm")

# matching only: the synthetic flow has no index or marks for the risk checks
ENGINE = EngineConfig(risk_checks=False)


def runtime_config(name, journal, **kw) -> RuntimeConfig:
    options = kw.pop("front_end_options", {})
    return RuntimeConfig(
        engine=ENGINE,
        name=name,
        setup=setup(8),
        journal_dir=str(journal),
        front_end_options={"accounts": 8, **options},
        **kw,
    )


def assert_replicas(report, journal=None, workers: int = 2):
    """Every final worker instance's replica applied the whole bus and ended in the
    engine's state. With ``journal`` (a fresh run's): every bus frame the replica did not
    already have from the journal it recovered from was replayed and its events compared
    with the engine's."""
    assert sorted(w["index"] for w in report.workers) == list(range(workers))
    for worker in report.workers:
        replica = worker["replica"]
        assert replica["applied_seq"] == report.engine["seq"]
        assert replica["state_hash"] == report.engine["state_hash"]
        if journal is not None:
            assert replica["journal_commands"] == 0
            recovered = sum(b.last_seq <= replica["recovered_seq"] for b in read(journal))
            assert replica["frames_skipped"] == recovered
            assert replica["frames_verified"] == report.engine["batches"] - recovered > 0


def assert_clean(report):
    assert report.failure is None, report.failure
    assert report.engine is not None and report.journal is not None
    assert report.market_data is not None
    assert report.journal["gaps"] == 0 and report.market_data["gaps"] == 0
    assert report.journal["last_seq"] == report.engine["seq"]
    assert report.market_data["last_seq"] == report.engine["seq"]
    # a resumed run continues the journal after start_seq
    assert report.market_data["commands"] == report.engine["seq"] - report.engine["start_seq"]


def unique_name(tag: str) -> str:
    return f"t{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def segments(name: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"dx.{name}.*"))


def bells(name: str) -> list[str]:
    """The doorbells (named pipes, ``runtime.doorbell``) of runtime ``name``."""
    return sorted(p.name for p in SHM.glob(f"dxbell.{name}.*"))


def journal_commands(directory) -> np.ndarray:
    batches = [batch.commands.copy() for batch in read(directory)]
    return np.concatenate([b.view(np.uint8) for b in batches]).view(batches[0].dtype)


def replay_hash(directory, config: RuntimeConfig) -> tuple[str, int]:
    """State hash of a single-process Engine fed the journal batch by batch, and the
    last seq. The journal holds the engine's own batches, stamped."""
    engine = Engine(config.engine)
    last = 0
    for batch in read(directory):
        assert batch.first_seq == last + 1, "journal batches must be contiguous"
        engine.process(np.ascontiguousarray(batch.commands))
        last = batch.last_seq
    return engine.state_hash(), last


def instance_sequences(commands: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """``(worker, generation) -> k`` of that instance's orders, in sequenced order."""
    orders = commands[commands["kind"] == CommandKind.PLACE_ORDER]
    labels = orders["label"].astype(np.int64)
    out = {}
    keys = (labels >> 40).astype(np.int64)
    for key in np.unique(keys):
        ks = labels[keys == key] & ((1 << 40) - 1)
        out[(int(key >> 8), int(key & 0xFF))] = ks
    return out


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return True
    return state in (b"Z", b"X")


def flood(ctx, commands: int, batch: int = 64) -> dict:
    """Front end that only ever calls ``ctx.submit``: never ``responses`` nor
    ``replica.poll``. With a tiny bus the engine soon waits for this worker's bus slot
    while the worker waits for room in its command ring; ``submit`` must keep reading
    the bus (and its responses) for either to get on."""
    rng = np.random.default_rng([ctx.index, ctx.generation])
    sent = 0
    while sent < commands:
        n = min(batch, commands - sent)
        orders = command_array(n)
        side = rng.integers(0, 2, n)
        orders["kind"] = CommandKind.PLACE_ORDER
        orders["order_type"] = OrderType.LIMIT
        orders["tif"] = TimeInForce.GTC
        orders["side"] = side
        orders["account"] = rng.integers(3, 11, n)
        orders["price_ticks"] = (
            10_000_000 + np.where(side == 0, -1, 1) * rng.integers(1, 40, n) * 50
        )
        orders["qty_lots"] = rng.integers(1, 5, n)
        sent += ctx.submit(orders, timeout=60.0)
    return {"sent": sent, "nice": os.getpriority(os.PRIO_PROCESS, 0)}
