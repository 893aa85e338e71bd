"""Checks shared by the runtime tests: replay a journal into one in-process Engine, and
read back the order in which each synthetic worker instance's commands were sequenced."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np

from derivex.core.engine import Engine
from derivex.core.records import CommandKind
from derivex.journal import read
from derivex.runtime.config import RuntimeConfig

SHM = Path("/dev/shm")


def unique_name(tag: str) -> str:
    return f"t{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def segments(name: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"dx.{name}.*"))


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
