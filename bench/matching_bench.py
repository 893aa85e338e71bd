"""Matching benchmark: batch throughput, per-command API throughput, in-kernel latency,
memory per resting order, and the reference model on the same flow, in one run.

    python bench/matching_bench.py [--commands 1000000] [--runs 3] [--quick]

Prints a table and writes bench/results/matching.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine, process_batch  # noqa: E402
from derivex.core.records import COMMAND_DTYPE, command_array, event_array  # noqa: E402
from derivex.exchange import Exchange  # noqa: E402
from derivex.sim.flow import FlowSpec, generate  # noqa: E402
from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)

CACHE = ROOT / "bench" / ".cache"


@intrinsic
def _cycles(typingctx):
    """The CPU cycle counter (``llvm.readcyclecounter``; rdtsc on x86)."""

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
        )
        return builder.call(function, [])

    return types.int64(), codegen


# no NRT: reference counting of the state arrays around each call would dominate the timing
@numba.njit(cache=True, _nrt=False)
def _timed_one_by_one(arena, layout, commands, events, cycles):
    """Process each command as its own batch, recording its cycles (in-kernel latency)."""
    n = 0
    for i in range(commands.shape[0]):
        start = _cycles()
        _, n_after, status, _ = process_batch(arena, layout, commands[i : i + 1], 0, events, n)
        cycles[i] = _cycles() - start
        if status != 0:
            return i
        n = n_after
        if n > events.shape[0] // 2:
            n = 0  # reuse the buffer: latency, not output, is measured here
    return commands.shape[0]


def config_for(commands: int, options: int) -> EngineConfig:
    """Pools sized so that no command of the flow needs growth (so timing has no growth)."""
    return EngineConfig(
        risk_checks=False,
        max_orders_per_book=10_000_000,
        max_open_orders_per_account=1_000_000,
        initial_orders=1 << 21,
        initial_levels=1 << 17,
        initial_positions=1 << 18 if options else 1 << 12,
        initial_accounts=1 << 12,
        initial_instruments=256,
        initial_levels_per_side=1 << 12,
    )


def load_flow(spec: FlowSpec) -> tuple[np.ndarray, np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    name = f"flow-{spec.commands}-{spec.options}-{spec.accounts}-{spec.seed}.npz"
    path = CACHE / name
    if path.exists():
        data = np.load(path)
        return data["setup"].view(COMMAND_DTYPE), data["flow"].view(COMMAND_DTYPE)
    setup, flow = generate(spec)
    # raw bytes: the aliased record layout does not survive the .npy dtype header
    np.savez(path, setup=setup.view(np.uint8), flow=flow.view(np.uint8))
    return setup, flow


def fresh_engine(setup: np.ndarray, config: EngineConfig) -> Engine:
    engine = Engine(config)
    engine.process(setup)
    return engine


def touched_events(count: int) -> np.ndarray:
    events = event_array(count)
    events.view(np.uint8)[:] = 0xFF  # fault the pages in before timing
    return events


def batch_throughput(setup, flow, config, runs: int) -> tuple[list[float], int]:
    rates = []
    produced = 0
    for _ in range(runs):
        engine = fresh_engine(setup, config)
        engine._events = touched_events(len(flow) * 4)
        start = time.perf_counter()
        events = engine.process_into(flow)
        elapsed = time.perf_counter() - start
        rates.append(len(flow) / elapsed)
        produced = len(events)
        engine.check_invariants()
    return rates, produced


def per_command_throughput(setup, flow, config, count: int, runs: int) -> dict[str, float]:
    subset = flow[:count]
    kernel_rates, exchange_rates = [], []
    for _ in range(runs):
        engine = fresh_engine(setup, config)
        engine._events = touched_events(1 << 16)
        start = time.perf_counter()
        for index in range(count):
            engine.process_into(subset[index : index + 1])
        kernel_rates.append(count / (time.perf_counter() - start))
        stamps = [int(setup["ts_ns"][0]), *subset["ts_ns"].tolist()]
        exchange = Exchange(config, clock=iter(stamps).__next__)
        exchange.submit(setup.copy())
        records = [subset[index : index + 1].copy() for index in range(count)]
        start = time.perf_counter()
        for record in records:
            exchange.submit(record)
        exchange_rates.append(count / (time.perf_counter() - start))
    return {
        "engine_process_per_command": statistics.median(kernel_rates),
        "exchange_submit_per_command": statistics.median(exchange_rates),
    }


def latency(setup, flow, config) -> dict[str, float]:
    engine = fresh_engine(setup, config)
    events = touched_events(1 << 20)
    cycles = np.zeros(len(flow), dtype=np.int64)
    warm = flow[:10].copy()
    warm_engine = fresh_engine(setup, config)
    _timed_one_by_one(warm_engine.arena, warm_engine.layout, warm, events, np.zeros(10, np.int64))
    wall = time.perf_counter()
    counter = _cycles_now()
    done = _timed_one_by_one(engine.arena, engine.layout, flow, events, cycles)
    ghz = (_cycles_now() - counter) / (time.perf_counter() - wall) / 1e9
    assert done == len(flow), "pools must be sized so that no command needs growth"
    ns = cycles[:done] / ghz
    # the same harness on NOOP commands: the cost of entering the kernel for one command
    noops = command_array(100_000)
    noops["seq"] = np.arange(len(noops)) + int(flow["seq"][-1]) + 1
    noop_cycles = np.zeros(len(noops), dtype=np.int64)
    _timed_one_by_one(engine.arena, engine.layout, noops, events, noop_cycles)
    return {
        "p50_ns": float(np.percentile(ns, 50)),
        "p99_ns": float(np.percentile(ns, 99)),
        "p999_ns": float(np.percentile(ns, 99.9)),
        "max_ns": float(ns.max()),
        "noop_entry_p50_ns": float(np.percentile(noop_cycles / ghz, 50)),
        "cycle_counter_ghz": ghz,
        "method": "batch kernel called once per command from a compiled loop, timed with the "
        "CPU cycle counter; includes the per-call entry (noop_entry_p50_ns)",
    }


@numba.njit
def _cycles_now_kernel():
    return _cycles()


def _cycles_now() -> int:
    return int(_cycles_now_kernel())


def memory_per_order(resting: int) -> dict[str, float]:
    """Fill one book with ``resting`` passive orders over 2,000 price levels and divide the
    bytes of every pool by the number of resting orders."""
    from derivex.core.records import CommandKind, command_array

    config = EngineConfig(
        risk_checks=False,
        max_orders_per_book=resting + 10,
        max_open_orders_per_account=resting,
        initial_orders=resting,
        initial_levels=4096,
        initial_levels_per_side=2048,
        initial_positions=1024,
        initial_accounts=2048,
    )
    spec = FlowSpec(commands=0, accounts=1000)
    from derivex.sim.flow import setup_commands

    engine = fresh_engine(setup_commands(spec), config)
    rng = np.random.default_rng(3)
    commands = command_array(resting)
    commands["kind"] = CommandKind.PLACE_ORDER
    commands["account"] = rng.integers(3, 1003, resting)
    commands["side"] = rng.integers(0, 2, resting)
    away = rng.integers(1, 1001, resting) * 50
    commands["price_ticks"] = np.where(commands["side"] == 0, 10_000_000 - away, 10_000_000 + away)
    commands["qty_lots"] = 1
    engine._events = event_array(resting + 16)
    engine.process_into(commands)
    st = engine.state
    live = int(st.counters[5])
    order_bytes = st.ord_i8.nbytes + st.ord_i4.nbytes + st.ord_label.nbytes
    level_bytes = (
        st.lvl_i8.nbytes
        + st.lvl_i4.nbytes
        + st.lvl_free.nbytes
        + st.ladder_price.nbytes
        + st.ladder_level.nbytes
    )
    total = sum(array.nbytes for array in st)
    return {
        "resting_orders": live,
        "order_pool_bytes_per_slot": order_bytes / st.ord_label.shape[0],
        "order_and_level_bytes_per_resting_order": (order_bytes + level_bytes) / live,
        "all_state_bytes_per_resting_order": total / live,
    }


def reference_throughput(setup, flow, config, count: int) -> float:
    from tests.reference.model import ReferenceEngine

    model = ReferenceEngine(config)
    model.process(setup)
    subset = flow[:count]
    start = time.perf_counter()
    for begin in range(0, count, 1000):
        model.process(subset[begin : begin + 1000])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    commands = 50_000 if args.quick else args.commands
    console = Console()
    results: dict[str, Any] = {"machine": machine(), "runs": args.runs, "commands": commands}
    table = Table(title=f"matching benchmark ({commands:,} commands, median of {args.runs})")
    for column in ("workload", "measure", "value"):
        table.add_column(column)
    for label, options in (("single book", 0), ("1 perpetual + 200 options", 200)):
        spec = FlowSpec(commands=commands, options=options)
        setup, flow = load_flow(spec)
        config = config_for(commands, options)
        rates, produced = batch_throughput(setup, flow, config, args.runs)
        per_command = per_command_throughput(setup, flow, config, min(100_000, commands), args.runs)
        lat = latency(setup, flow, config)
        reference = reference_throughput(setup, flow, config, min(20_000, commands))
        entry = {
            "batch_commands_per_s": statistics.median(rates),
            "batch_runs": rates,
            "events_per_batch": produced,
            **per_command,
            "in_kernel_latency": lat,
            "reference_model_commands_per_s": reference,
            "batch_vs_reference": statistics.median(rates) / reference,
        }
        results[label] = entry
        table.add_row(label, "batch commands/s", f"{entry['batch_commands_per_s'] / 1e6:.2f} M")
        table.add_row(
            label,
            "Engine.process per command /s",
            f"{per_command['engine_process_per_command'] / 1e6:.3f} M",
        )
        table.add_row(
            label,
            "Exchange.submit per command /s",
            f"{per_command['exchange_submit_per_command'] / 1e6:.3f} M",
        )
        table.add_row(
            label,
            "in-kernel latency p50/p99/p99.9",
            f"{lat['p50_ns']:.0f} / {lat['p99_ns']:.0f} / {lat['p999_ns']:.0f} ns",
        )
        table.add_row(
            label, "  of which kernel entry (NOOP p50)", f"{lat['noop_entry_p50_ns']:.0f} ns"
        )
        table.add_row(label, "reference model commands/s", f"{reference:,.0f}")
        table.add_row(label, "batch / reference", f"{entry['batch_vs_reference']:,.0f}x")
    memory = memory_per_order(100_000 if args.quick else 1_000_000)
    results["memory"] = memory
    table.add_row(
        "memory", "order pool bytes per slot", f"{memory['order_pool_bytes_per_slot']:.0f}"
    )
    table.add_row(
        "memory",
        "orders+levels bytes / resting order",
        f"{memory['order_and_level_bytes_per_resting_order']:.1f}",
    )
    table.add_row(
        "memory",
        "whole state bytes / resting order",
        f"{memory['all_state_bytes_per_resting_order']:.1f}",
    )
    finish(results, table, console, "matching", args.quick)


if __name__ == "__main__":
    main()
