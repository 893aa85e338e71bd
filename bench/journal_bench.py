"""Journal benchmark: journaled throughput (fsync per batch, group commit) against the
unjournaled exchange on the same flow in the same run; replay speed; snapshot write/load for
1M resting orders + 1M accounts; state-root cost (full build, per checkpoint) and proof size.

    python bench/journal_bench.py [--commands 200000] [--runs 3] [--quick]

Prints a table and writes bench/results/journal.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from derivex.core import query  # noqa: E402
from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.core.records import (  # noqa: E402
    COMMAND_DTYPE,
    CommandKind,
    EventKind,
    InstrumentKind,
    TimeInForce,
    command_array,
)
from derivex.exchange import Exchange  # noqa: E402
from derivex.journal import (  # noqa: E402
    Journal,
    StateRoots,
    load_snapshot,
    recover,
    restore_engine,
    scan,
    write_snapshot,
)
from derivex.journal.format import CHECKSUM_NAMES, DEFAULT_CHECKSUM  # noqa: E402
from derivex.journal.leaves import book_payload  # noqa: E402
from derivex.sim.flow import FlowSpec, generate  # noqa: E402
from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)

CACHE = ROOT / "bench" / ".cache"
START_NS = 1_798_761_600_000_000_000
FLOW_CONFIG = EngineConfig(
    risk_checks=False, max_orders_per_book=10_000_000, max_open_orders_per_account=1_000_000
)


def median_of(runs: int, measure: Callable[..., float], *args: object) -> tuple[float, list[float]]:
    values = [measure(*args) for _ in range(runs)]
    return statistics.median(values), values


def rate_of(total: int, function: Callable[..., object], *args: object, **kwargs: object) -> float:
    """``total`` divided by the seconds ``function(*args, **kwargs)`` takes."""
    started = time.perf_counter()
    function(*args, **kwargs)
    return total / (time.perf_counter() - started)


class StepClock:
    def __init__(self) -> None:
        self.now_ns = START_NS

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns


def load_flow(spec: FlowSpec) -> tuple[np.ndarray, np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"flow-{spec.commands}-{spec.options}-{spec.accounts}-{spec.seed}.npz"
    if path.exists():
        data = np.load(path)
        return data["setup"].view(COMMAND_DTYPE), data["flow"].view(COMMAND_DTYPE)
    setup, flow = generate(spec)
    np.savez(path, setup=setup.view(np.uint8), flow=flow.view(np.uint8))
    return setup, flow


# ---- journaled throughput ----


def submit_rate(
    setup: np.ndarray, flow: np.ndarray, batch: int, policy: str | None, scratch: Path
) -> float:
    """Commands/s of ``Exchange.submit`` over ``flow`` in batches of ``batch``; with a
    journal, the time includes the final flush (everything durable)."""
    shutil.rmtree(scratch, ignore_errors=True)
    journal = (
        None
        if policy is None
        else Journal(scratch, fsync=policy, interval_ms=5, roll_bytes=64 << 20)
    )
    exchange = Exchange(FLOW_CONFIG, clock=StepClock(), journal=journal)
    exchange.submit(setup.copy())
    parts = [flow[start : start + batch].copy() for start in range(0, len(flow), batch)]
    started = time.perf_counter()
    for part in parts:
        exchange.submit(part)
    if journal is not None:
        journal.sync()
    elapsed = time.perf_counter() - started
    if journal is not None:
        journal.close()
    return len(flow) / elapsed


def journaled_throughput(setup, flow, runs, scratch, table, results) -> None:
    for batch, count in ((100, len(flow)), (1, min(3_000, len(flow)))):
        prefix = flow[:count]
        base, base_runs = median_of(runs, submit_rate, setup, prefix, batch, None, scratch)
        entry = {
            "commands": count,
            "unjournaled_commands_per_s": base,
            "unjournaled_runs": base_runs,
        }
        table.add_row(f"submit, batches of {batch}", "unjournaled", f"{base:,.0f} /s", "1.00")
        for policy in ("batch", "interval", "none"):
            rate, rate_runs = median_of(runs, submit_rate, setup, prefix, batch, policy, scratch)
            entry[f"fsync_{policy}_commands_per_s"] = rate
            entry[f"fsync_{policy}_runs"] = rate_runs
            entry[f"fsync_{policy}_ratio"] = rate / base
            label = {
                "batch": "fsync per batch",
                "interval": "group commit 5 ms",
                "none": "write, no fsync",
            }[policy]
            table.add_row(
                f"submit, batches of {batch}", label, f"{rate:,.0f} /s", f"{rate / base:.2f}"
            )
        results[f"submit_batch_{batch}"] = entry


# ---- replay ----


def write_journal(setup, flow, batch, directory) -> int:
    shutil.rmtree(directory, ignore_errors=True)
    exchange = Exchange(FLOW_CONFIG, clock=StepClock(), journal=Journal(directory, fsync="none"))
    exchange.submit(setup.copy())
    for start in range(0, len(flow), batch):
        exchange.submit(flow[start : start + batch].copy())
    exchange.journal.close()
    return len(setup) + len(flow)


def replay_full(directory: Path, roots: bool) -> None:
    recover(directory, use_snapshot=False, roots=roots, checkpoint_every=100_000 if roots else None)


def engine_rate(setup, flow, batch) -> float:
    engine = Engine(FLOW_CONFIG)
    engine.process(setup)
    parts = [flow[start : start + batch] for start in range(0, len(flow), batch)]
    started = time.perf_counter()
    for part in parts:
        engine.process_into(part)
    return len(flow) / (time.perf_counter() - started)


def replay_speed(setup, flow, runs, scratch, table, results) -> None:
    for batch in (1, 100, 4096):
        directory = scratch / f"replay-{batch}"
        total = write_journal(setup, flow, batch, directory)
        engine, engine_runs = median_of(runs, engine_rate, setup, flow, batch)
        read, read_runs = median_of(runs, rate_of, total, scan, directory)
        plain, plain_runs = median_of(runs, rate_of, total, replay_full, directory, False)
        rooted, rooted_runs = median_of(runs, rate_of, total, replay_full, directory, True)
        results[f"replay_batches_of_{batch}"] = {
            "commands": total,
            "engine_only_commands_per_s": engine,
            "engine_runs": engine_runs,
            "read_and_verify_commands_per_s": read,
            "read_runs": read_runs,
            "read_path": "python reference reader (derivex.journal.scan)",
            "replay_commands_per_s": plain,
            "replay_runs": plain_runs,
            "replay_with_roots_commands_per_s": rooted,
            "replay_with_roots_runs": rooted_runs,
            "replay_vs_engine": plain / engine,
        }
        label = f"replay, journal batches of {batch}"
        table.add_row(label, "engine alone, same batches", f"{engine:,.0f} /s", "")
        table.add_row(label, "read + verify only (Python reader)", f"{read:,.0f} /s", "")
        table.add_row(label, "replay (full)", f"{plain:,.0f} /s", f"{plain / engine:.2f}")
        table.add_row(
            label, "replay + roots every 100k", f"{rooted:,.0f} /s", f"{rooted / engine:.2f}"
        )


# ---- a big state: 1M accounts, 1M resting orders ----


def big_state(accounts: int, books: int) -> tuple[Engine, np.ndarray]:
    """Engine with ``books`` perpetuals, ``accounts`` funded accounts, one passive order
    each (bids below, asks above the mid, 500 levels a side per book). Returns the engine
    and the resting orders as rows (order id, account, instrument)."""
    config = EngineConfig(
        risk_checks=False,
        max_orders_per_book=1 << 21,
        initial_accounts=1 << 20,
        initial_orders=1 << 20,
        initial_positions=1 << 20,
        initial_levels=1 << 15,
        initial_instruments=books,
        initial_levels_per_side=1 << 10,
    )
    engine = Engine(config)
    add = command_array(books)
    add["kind"] = CommandKind.ADD_INSTRUMENT
    add["instrument_kind"], add["underlying"] = InstrumentKind.PERPETUAL, 1
    add["tick_size_ticks"], add["min_trade_lots"], add["contract_value_units"] = 50, 1, 1
    add["maker_fee_ppm"], add["taker_fee_ppm"] = -100, 500
    create = command_array(accounts)
    create["kind"] = CommandKind.CREATE_ACCOUNT
    ids = np.arange(3, 3 + accounts)
    fund = command_array(accounts)
    fund["kind"], fund["account"], fund["amount_units"] = CommandKind.DEPOSIT, ids, 10**12
    place = command_array(accounts)
    place["kind"], place["account"] = CommandKind.PLACE_ORDER, ids
    place["instrument"] = ids % books
    side = (ids // books) % 2
    place["side"] = side
    away = (1 + (ids // (2 * books)) % 500) * 50
    place["price_ticks"] = np.where(side == 0, 10_000_000 - away, 10_000_000 + away)
    place["qty_lots"] = 1 + ids % 10
    seq = 0
    resting = []
    for part in (add, create, fund, place):
        for start in range(0, len(part), 1 << 18):
            chunk = part[start : start + (1 << 18)]
            chunk["seq"] = np.arange(seq + 1, seq + 1 + len(chunk))
            chunk["ts_ns"] = START_NS
            seq += len(chunk)
            events = engine.process_into(chunk)
            accepted = events[
                (events["kind"] == EventKind.ACCEPTED)
                & (events["command"] == CommandKind.PLACE_ORDER)
            ]
            resting.append(
                np.stack(
                    [
                        accepted["order_id"].astype(np.int64),
                        accepted["account"].astype(np.int64),
                        accepted["instrument"].astype(np.int64),
                    ],
                    axis=1,
                )
            )
    return engine, np.concatenate(resting)


def activity(rng, resting: np.ndarray, books: int, count: int, seq: int) -> np.ndarray:
    """A realistic batch on the big state: 50% passive places, 30% cancels, 20% IOCs
    crossing a few levels, from random accounts."""
    commands = command_array(count)
    action = rng.random(count)
    accounts = rng.integers(3, 3 + len(resting), count)
    books_of = rng.integers(0, books, count)
    sides = rng.integers(0, 2, count)
    commands["kind"] = CommandKind.PLACE_ORDER
    commands["account"], commands["instrument"], commands["side"] = accounts, books_of, sides
    away = rng.integers(1, 500, count) * 50
    commands["price_ticks"] = np.where(sides == 0, 10_000_000 - away, 10_000_000 + away)
    commands["qty_lots"] = rng.integers(1, 11, count)
    cancel = (action >= 0.5) & (action < 0.8)
    victims = resting[rng.integers(0, len(resting), int(cancel.sum()))]
    commands["kind"][cancel] = CommandKind.CANCEL_ORDER
    commands["order_id"][cancel] = victims[:, 0]
    commands["account"][cancel] = victims[:, 1]
    aggressive = action >= 0.8
    commands["tif"][aggressive] = TimeInForce.IOC
    reach = rng.integers(1, 4, int(aggressive.sum())) * 50
    commands["price_ticks"][aggressive] = np.where(
        sides[aggressive] == 0, 10_000_000 + reach, 10_000_000 - reach
    )
    commands["seq"] = np.arange(seq + 1, seq + 1 + count)
    commands["ts_ns"] = START_NS + 1_000_000_000
    return commands


def big_state_measures(accounts, books, runs, scratch, table, results, console) -> None:
    started = time.perf_counter()
    engine, resting = big_state(accounts, books)
    built = time.perf_counter() - started
    state = engine.state
    state_bytes = sum(array.nbytes for array in state)
    console.print(
        f"built {accounts:,} accounts / {len(resting):,} resting orders in "
        f"{built:.1f} s ({state_bytes / 1e6:,.0f} MB of state)"
    )
    entry: dict[str, object] = {
        "accounts": accounts,
        "resting_orders": len(resting),
        "books": books,
        "state_bytes": state_bytes,
        "build_s": built,
    }
    label = f"{accounts // 1000}k accounts, {len(resting) // 1000}k orders"

    def full_build() -> float:
        tic = time.perf_counter()
        StateRoots().rebuild(state)
        return time.perf_counter() - tic

    entry["full_root_s"], entry["full_root_runs"] = median_of(runs, full_build)
    table.add_row(label, "state root, full build", f"{entry['full_root_s']:.2f} s", "")
    seq = query.commands_processed(state)
    for compression in ("none", "zstd"):
        directory = scratch / f"snapshot-{compression}"
        shutil.rmtree(directory, ignore_errors=True)

        def write(directory=directory, compression=compression) -> float:
            tic = time.perf_counter()
            write_snapshot(directory, engine.state, engine.config, seq, compression=compression)
            return time.perf_counter() - tic

        write_s, write_runs = median_of(runs, write)
        path = next(directory.glob("snapshot-*.dxs"))

        def load(path=path, verify=True) -> float:
            tic = time.perf_counter()
            restored = restore_engine(load_snapshot(path, verify=verify))
            elapsed = time.perf_counter() - tic
            assert restored.state.counters.tobytes() == state.counters.tobytes()
            return elapsed

        load_s, load_runs = median_of(runs, load)
        sub = {
            "write_s": write_s,
            "write_runs": write_runs,
            "bytes": path.stat().st_size,
            "load_and_adopt_s": load_s,
            "load_runs": load_runs,
        }
        if compression == "none":
            sub["load_without_checksums_s"] = median_of(runs, lambda: load(verify=False))[0]
        restored = restore_engine(load_snapshot(path))
        assert all(np.array_equal(a, b) for a, b in zip(restored.state, state, strict=True))
        entry[f"snapshot_{compression}"] = sub
        table.add_row(
            label,
            f"snapshot write ({compression})",
            f"{write_s:.2f} s",
            f"{sub['bytes'] / 1e6:,.0f} MB",
        )
        table.add_row(
            label, f"snapshot load + adopt ({compression})", f"{load_s:.3f} s", "checksums verified"
        )
        if "load_without_checksums_s" in sub:
            table.add_row(
                label,
                "snapshot map + adopt, no checksum pass",
                f"{sub['load_without_checksums_s']:.4f} s",
                "zero-copy",
            )
    roots = StateRoots()
    roots.rebuild(engine.state)
    rng = np.random.default_rng(1)
    costs, dirty = [], []
    for batch_size in [10_000] * runs:
        commands = activity(rng, resting, books, batch_size, seq)
        seq += batch_size
        events = engine.process_into(commands)
        roots.mark(events)
        dirty.append(int(roots._dirty_accounts.sum()))
        tic = time.perf_counter()
        roots.update(engine.state)
        costs.append(time.perf_counter() - tic)
    book_s = median_of(runs, lambda: _timed(lambda: book_payload(engine.state, 0)))[0]
    proof_tic = time.perf_counter()
    proof = roots.prove(engine.state, 12_345, seq)
    proof_s = time.perf_counter() - proof_tic
    proof_bytes = len(json.dumps(proof))
    entry["checkpoint"] = {
        "commands_per_checkpoint": 10_000,
        "update_s": statistics.median(costs),
        "update_runs": costs,
        "dirty_accounts": dirty,
        "dirty_books": books,
        "one_book_leaf_s": book_s,
        "orders_per_book": query.resting_orders(engine.state, 0),
        "proof_json_bytes": proof_bytes,
        "proof_siblings": len(proof["siblings"]),
        "proof_s": proof_s,
    }
    table.add_row(
        label,
        "root update per 10k-command checkpoint",
        f"{statistics.median(costs) * 1e3:.0f} ms",
        f"~{statistics.median(dirty):,.0f} dirty accounts, {books} dirty books",
    )
    table.add_row(label, "one book leaf (~62k orders)", f"{book_s * 1e3:.1f} ms", "")
    table.add_row(
        label,
        "account proof",
        f"{proof_bytes:,} bytes JSON",
        f"{len(proof['siblings'])} siblings, {proof_s * 1e3:.0f} ms",
    )
    results["big_state"] = entry


def _timed(function: Callable[[], object]) -> float:
    tic = time.perf_counter()
    function()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    commands = 20_000 if args.quick else args.commands
    accounts = 50_000 if args.quick else args.accounts
    console = Console()
    results: dict[str, Any] = {
        "machine": machine(checksum=CHECKSUM_NAMES[DEFAULT_CHECKSUM]),
        "runs": args.runs,
        "flow_commands": commands,
    }
    load_before = results["machine"]["load_before"]
    table = Table(title=f"journal benchmark (median of {args.runs}; load {load_before})")
    for column in ("workload", "measure", "value", "ratio / note"):
        table.add_column(column)
    setup, flow = load_flow(FlowSpec(commands=commands, options=0, accounts=1_000, seed=7))
    warm = Engine(FLOW_CONFIG)
    warm.process(setup)  # compile / load the kernels outside the timings
    with tempfile.TemporaryDirectory(prefix="derivex-journal-bench-") as name:
        scratch = Path(name)
        journaled_throughput(setup, flow, args.runs, scratch / "submit", table, results)
        replay_speed(setup, flow, args.runs, scratch, table, results)
        big_state_measures(accounts, 16, args.runs, scratch, table, results, console)
    finish(results, table, console, "journal", args.quick)


if __name__ == "__main__":
    main()
