"""Risk benchmark: the matching flow with portfolio margin on against the same flow with risk
checks off (the pre-trade check's cost per order), and a full re-margin after a mark update
for many accounts x 10 positions x 35 scenarios, in one run.

    python bench/risk_bench.py [--runs 3] [--accounts 100000 1000000] [--quick]

Prints a table and writes bench/results/risk.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.core.records import (  # noqa: E402
    CommandKind,
    InstrumentKind,
    OptionType,
    command_array,
    concat_commands,
    index_records,
    risk_records,
)
from derivex.sim.flow import START_NS, FlowSpec  # noqa: E402
from matching_bench import config_for, load_flow, touched_events  # noqa: E402
from report import finish, machine  # noqa: E402


def scenario_values(mark: int, scenarios: int, rng: np.random.Generator) -> np.ndarray:
    """Plausible lot P&Ls for a benchmark (their values do not change the cost)."""
    return rng.integers(-mark, mark // 2 + 1, scenarios)


def risk_prefix(spec: FlowSpec, config: EngineConfig, seq: int) -> np.ndarray:
    """Every account to portfolio margin, the BTC index, and a mark + risk array per option
    at the flow's starting mid."""
    rng = np.random.default_rng(1)
    modes = command_array(spec.accounts)
    modes["kind"] = CommandKind.SET_ACCOUNT
    modes["account"] = np.arange(3, 3 + spec.accounts)
    modes["margin_mode"] = 1
    parts = [modes, index_records(1, [(0, START_NS, 10_000_000)])]
    for index in range(1, spec.options + 1):
        mid = 200_000 + 5 * (index * 997 % 20_000)
        parts.append(
            risk_records(
                index,
                mid,
                scenario_values(mid, len(config.scenarios), rng),
                (500_000_000, 1_000, 50_000, -20_000, 1_000),
            )
        )
    tick = command_array(1)
    tick["kind"] = CommandKind.TIME
    parts.append(tick)
    prefix = concat_commands(parts)
    prefix["seq"] = np.arange(seq + 1, seq + 1 + len(prefix))
    prefix["ts_ns"] = START_NS
    return prefix


def flow_rates(setup, prefix, flow, config, runs) -> tuple[list[float], dict[str, int]]:
    rates = []
    counts: dict[str, int] = {}
    for _ in range(runs):
        engine = Engine(config)
        engine.process(setup)
        engine.process(prefix)
        engine._events = touched_events(len(flow) * 4)
        start = time.perf_counter()
        events = engine.process_into(flow)
        elapsed = time.perf_counter() - start
        rates.append(len(flow) / elapsed)
        counts = {
            "events": len(events),
            "fills": int(np.sum(events["kind"] == 3)),
            "margin_rejects": int(np.sum(events["reason"] == 202)),
        }
        engine.check_invariants()
    return rates, counts


def build_book_of_positions(accounts: int, config: EngineConfig) -> tuple[Engine, int]:
    """``accounts`` portfolio-margin accounts each holding 10 positions (1 perpetual and 9
    options, long 1 lot each) against one dealer; returns the engine and the next seq."""
    engine = Engine(config)
    instruments = []
    perp = command_array(1)
    perp["kind"] = CommandKind.ADD_INSTRUMENT
    perp["instrument_kind"] = InstrumentKind.PERPETUAL
    perp["underlying"] = 1
    perp["tick_size_ticks"] = 1
    perp["min_trade_lots"] = 1
    perp["contract_value_units"] = 1
    instruments.append(perp)
    for k in range(9):
        option = command_array(1)
        option["kind"] = CommandKind.ADD_INSTRUMENT
        option["instrument_kind"] = InstrumentKind.OPTION
        option["option_type"] = OptionType.CALL if k % 2 == 0 else OptionType.PUT
        option["underlying"] = 1
        option["expiry_ts_ns"] = START_NS + (7 + 7 * k) * 86_400 * 10**9
        option["strike_ticks"] = 9_000_000 + 250_000 * k
        option["tick_size_ticks"] = 1
        option["min_trade_lots"] = 1
        option["contract_value_units"] = 1
        instruments.append(option)
    rng = np.random.default_rng(2)
    marks = [10_000_000] + [300_000 + 10_000 * k for k in range(9)]
    create = command_array(accounts + 1)
    create["kind"] = CommandKind.CREATE_ACCOUNT
    create["margin_mode"] = 1
    create["margin_mode"][0] = 0  # the dealer: standard margin
    deposit = command_array(accounts + 1)
    deposit["kind"] = CommandKind.DEPOSIT
    deposit["account"] = np.arange(3, 4 + accounts)
    deposit["amount_units"] = 10**12
    deposit["amount_units"][0] = 1 << 59
    market = [index_records(1, [(0, START_NS, marks[0])])]
    for k in range(1, 10):
        market.append(risk_records(k, marks[k], scenario_values(marks[k], 35, rng)))
    tick = command_array(1)
    tick["kind"] = CommandKind.TIME
    market.append(tick)
    asks = command_array(10)
    asks["kind"] = CommandKind.PLACE_ORDER
    asks["account"] = 3
    asks["instrument"] = np.arange(10)
    asks["side"] = 1
    asks["price_ticks"] = marks
    asks["qty_lots"] = accounts
    setup = concat_commands([*instruments, create, deposit, *market, asks])
    setup["seq"] = np.arange(1, len(setup) + 1)
    setup["ts_ns"] = START_NS
    engine.process(setup)
    seq = len(setup)
    takes = command_array(10 * accounts)
    takes["kind"] = CommandKind.PLACE_ORDER
    takes["account"] = np.repeat(np.arange(4, 4 + accounts), 10)
    takes["instrument"] = np.tile(np.arange(10), accounts)
    takes["side"] = 0
    takes["tif"] = 1  # IOC
    takes["price_ticks"] = np.tile(marks, accounts)
    takes["qty_lots"] = 1
    takes["seq"] = np.arange(seq + 1, seq + 1 + len(takes))
    takes["ts_ns"] = START_NS
    for start in range(0, len(takes), 1_000_000):
        engine.process_into(takes[start : start + 1_000_000])
    return engine, seq + len(takes)


def mark_update(seq: int, step: int) -> np.ndarray:
    """One market-data run: a new index (the perpetual's mark and P&Ls follow) and new
    risk arrays for the 9 options, then a TIME command that applies them."""
    rng = np.random.default_rng(100 + step)
    parts = [index_records(1, [(0, START_NS, 10_000_000 + 1_000 * step)])]
    for k in range(1, 10):
        mark = 300_000 + 10_000 * k + 100 * step
        parts.append(risk_records(k, mark, scenario_values(mark, 35, rng)))
    tick = command_array(1)
    tick["kind"] = CommandKind.TIME
    parts.append(tick)
    records = concat_commands(parts)
    records["seq"] = np.arange(seq + 1, seq + 1 + len(records))
    records["ts_ns"] = START_NS + step
    return records


def remargin(accounts: int, runs: int) -> dict[str, Any]:
    config = EngineConfig(
        initial_accounts=accounts + 8,
        initial_positions=10 * accounts + 64,
        initial_orders=1 << 10,
        initial_instruments=16,
        max_orders_per_book=10_000_000,
        max_open_orders_per_account=1_000_000,
        max_position_lots=(1 << 31) - 1,
    )
    started = time.perf_counter()
    engine, seq = build_book_of_positions(accounts, config)
    built = time.perf_counter() - started
    live = int(engine.state.counters[11])
    times = []
    for step in range(1, runs + 1):
        records = mark_update(seq, step)
        seq += len(records)
        start = time.perf_counter()
        engine.process_into(records)
        times.append(time.perf_counter() - start)
    if accounts <= 100_000:
        engine.check_invariants()  # from-scratch recomputation equals the incremental sums
    return {
        "accounts": accounts,
        "positions": live,
        "scenarios": 35,
        "build_s": built,
        "runs_s": times,
        "median_s": statistics.median(times),
        "per_position_ns": statistics.median(times) / live * 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.accounts, args.runs = 50_000, [10_000], 2
    console = Console()
    results: dict[str, Any] = {"machine": machine()}
    spec = FlowSpec(commands=args.commands, options=200)
    setup, flow = load_flow(spec)
    plain = config_for(spec.commands, spec.options)
    margined = replace(plain, risk_checks=True)
    prefix = risk_prefix(spec, margined, int(setup["seq"][-1]))
    flow = flow.copy()
    flow["seq"] += len(prefix)
    plain_rates, margined_rates = [], []
    counts: dict[str, Any] = {}
    for _ in range(args.runs):  # interleaved: both see the same machine load
        rates, counts["plain"] = flow_rates(setup, prefix, flow, plain, 1)
        plain_rates += rates
        rates, counts["portfolio_margin"] = flow_rates(setup, prefix, flow, margined, 1)
        margined_rates += rates
    plain_median = statistics.median(plain_rates)
    margined_median = statistics.median(margined_rates)
    orders = int(np.sum(flow["kind"] == CommandKind.PLACE_ORDER))
    check_ns = (len(flow) / margined_median - len(flow) / plain_median) / orders * 1e9
    results["matching"] = {
        "flow": {
            "commands": len(flow),
            "options": spec.options,
            "accounts": spec.accounts,
            "place_orders": orders,
        },
        "plain_rates": plain_rates,
        "portfolio_margin_rates": margined_rates,
        "plain_median": plain_median,
        "portfolio_margin_median": margined_median,
        "ratio": margined_median / plain_median,
        "extra_ns_per_order": check_ns,
        "counts": counts,
    }
    results["remargin"] = [remargin(n, args.runs) for n in args.accounts]
    table = Table(title="risk engine (median of runs)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("flow, risk checks off", f"{plain_median / 1e6:.2f} M cmd/s")
    table.add_row("flow, portfolio margin on", f"{margined_median / 1e6:.2f} M cmd/s")
    table.add_row("ratio (target >= 0.50)", f"{margined_median / plain_median:.2f}")
    table.add_row("pre-trade check + margin upkeep per order", f"{check_ns:.0f} ns")
    for row in results["remargin"]:
        table.add_row(
            f"re-margin {row['accounts']:,} accounts x 10 positions x 35",
            f"{row['median_s'] * 1e3:.0f} ms ({row['per_position_ns']:.0f} ns/pos)",
        )
    finish(results, table, console, "risk", args.quick)


if __name__ == "__main__":
    main()
