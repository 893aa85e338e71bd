"""Built-in front ends for gateway workers: a seeded synthetic order generator (tests,
soak runs) and a replayer of a recorded command file (benchmarks).

Both consume their responses as they go (a worker that does not read its responses stalls
its own input) and check that results come back in submission order. With replicas on
they also apply the bus to the worker's replica as they go (``ctx.replica.poll()``) and
count the frames of their own commands among them.
"""

from __future__ import annotations

import os
import time

import numpy as np

from derivex.core.records import (
    COMMAND_DTYPE,
    CommandKind,
    EventKind,
    OrderType,
    TimeInForce,
    command_array,
)
from derivex.sim.flow import FlowSpec, setup_commands

__all__ = ["replay", "setup", "synthetic", "synthetic_label"]

_FIRST = (int(EventKind.ACCEPTED), int(EventKind.REJECTED))
_TOP = 3  # accounts 0..2 are the system accounts; setup() creates accounts from 3 on


def setup(accounts: int = 16) -> np.ndarray:
    """Bootstrap commands for the built-in front ends: one perpetual (instrument 0) and
    ``accounts`` funded accounts (ids 3, 4, ...)."""
    return setup_commands(FlowSpec(accounts=accounts))


def synthetic_label(worker: int, generation: int, k: int) -> int:
    """Label of the ``k``-th command of a synthetic worker instance."""
    return (worker << 48) | (generation << 40) | k


class _Acks:
    """Consumes responses and checks they name this instance's commands in order."""

    def __init__(self, ctx, first_label: int, labels: bool) -> None:
        self.ctx = ctx
        self.expected = first_label
        self.labels = labels
        self.commands = 0
        self.out_of_order = 0
        self.fills = 0
        self.replica_frames = 0
        self.replica_own_commands = 0

    def poll(self) -> None:
        replica = self.ctx.replica
        if replica is not None:
            for applied in replica.poll():
                self.replica_frames += 1
                if applied.own:
                    self.replica_own_commands += len(applied.commands)
        for response in self.ctx.responses():
            events = response.events
            kinds = events["kind"]
            first = events[(kinds == _FIRST[0]) | (kinds == _FIRST[1])]
            seqs = first["seq"].astype(np.int64)
            want = np.arange(response.first_seq, response.first_seq + response.n_commands)
            if not np.array_equal(seqs, want):
                self.out_of_order += 1
            if self.labels:
                got = first["label"].astype(np.int64)
                if not np.array_equal(got, self.expected + np.arange(len(got))):
                    self.out_of_order += 1
                self.expected += len(got)
            self.commands += response.n_commands
            self.fills += int(np.count_nonzero(kinds == EventKind.FILLED))

    def drain(self, submitted: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.commands < submitted and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.0005)

    def report(self) -> dict:
        out = {"acked": self.commands, "out_of_order": self.out_of_order}
        if self.ctx.replica is not None:
            out["replica_frames"] = self.replica_frames
            out["replica_own_commands"] = self.replica_own_commands
        return out


def synthetic(
    ctx,
    commands: int | None = None,
    seed: int = 0,
    batch_max: int = 32,
    pause_probability: float = 0.0,
    max_pause_s: float = 0.002,
    accounts: int = 16,
    mid_ticks: int = 10_000_000,
    tick: int = 50,
    drain_s: float = 5.0,
    crash_after: int | None = None,
    crash_worker: int = 0,
) -> dict:
    """Random limit orders on instrument 0 from accounts ``3 .. 3+accounts-1``, labelled
    :func:`synthetic_label` (so the journal shows each instance's order), in batches of
    1..``batch_max`` with seeded random pauses; runs until ``commands`` are sent or the
    runtime stops. About half the orders cross the spread (IOC), the rest rest (GTC).
    ``crash_after``: generation 0 of worker ``crash_worker`` exits abruptly (status 17)
    after that many commands (tests)."""
    rng = np.random.default_rng([seed, ctx.index, ctx.generation])
    acks = _Acks(ctx, synthetic_label(ctx.index, ctx.generation, 0), labels=True)
    buf = command_array(batch_max)
    k = 0
    while not ctx.stopping and (commands is None or k < commands):
        n = int(rng.integers(1, batch_max + 1))
        if commands is not None:
            n = min(n, commands - k)
        batch = buf[:n]
        batch[:] = 0
        side = rng.integers(0, 2, n)
        crossing = rng.random(n) < 0.5
        away = rng.integers(1, 20, n) * tick
        # passive: below the mid for buys, above for sells; crossing: the other way
        sign = np.where(side == 0, -1, 1) * np.where(crossing, -1, 1)
        batch["kind"] = CommandKind.PLACE_ORDER
        batch["order_type"] = OrderType.LIMIT
        batch["tif"] = np.where(crossing, TimeInForce.IOC, TimeInForce.GTC)
        batch["side"] = side
        batch["account"] = rng.integers(_TOP, _TOP + accounts, n)
        batch["instrument"] = 0
        batch["price_ticks"] = mid_ticks + sign * away
        batch["qty_lots"] = rng.integers(1, 11, n)
        batch["label"] = synthetic_label(ctx.index, ctx.generation, k) + np.arange(n)
        ctx.submit(batch)
        k += n
        if (
            crash_after is not None
            and ctx.index == crash_worker
            and ctx.generation == 0
            and k >= crash_after
        ):
            os._exit(17)
        acks.poll()
        if pause_probability and rng.random() < pause_probability:
            time.sleep(rng.random() * max_pause_s)
    acks.drain(k, drain_s)
    return {"sent": k, "fills_seen": acks.fills, **acks.report()}


def replay(
    ctx,
    path: str,
    batch: int = 256,
    rate: float | None = None,
    stamp_labels: bool = True,
    drain_s: float = 30.0,
) -> dict:
    """Send the commands of ``path`` (raw ``COMMAND_DTYPE`` records) in batches of
    ``batch``; ``label`` is overwritten with ``monotonic_ns()`` at submission (for the
    market-data latency sample) when ``stamp_labels``. ``rate``: commands per second
    (None: as fast as the rings take them)."""
    commands = np.fromfile(path, dtype=np.uint8).view(COMMAND_DTYPE)
    acks = _Acks(ctx, 0, labels=False)
    words = commands.view(np.int64).reshape(-1, 8)
    start = time.monotonic_ns()
    sent = 0
    while sent < len(commands) and not ctx.stopping:
        n = min(batch, len(commands) - sent)
        if rate:
            due = start + int(sent / rate * 1e9)
            while (left := due - time.monotonic_ns()) > 0:
                acks.poll()
                if left > 200_000:  # sleep rather than take a core from the pipeline
                    time.sleep((left - 100_000) / 1e9)
        if stamp_labels:
            words[sent : sent + n, 7] = time.monotonic_ns()
        ctx.submit(commands[sent : sent + n])
        sent += n
        acks.poll()
    elapsed = (time.monotonic_ns() - start) / 1e9
    acks.drain(sent, drain_s)
    return {"sent": sent, "send_seconds": elapsed, **acks.report()}
