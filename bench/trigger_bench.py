"""Conditional-order benchmark (issue 15), in one run:

1. a matching flow on one perpetual whose price falls 5% over the run, where 10% of the
   commands are sell stop-market orders a little below the market (most fire during the
   move), against the same flow with those commands as plain resting limit orders at the
   same prices: commands per second of both and their ratio;
2. one INDEX command that crosses 10,000 index-triggered stops: its cost with the default
   per-command cap (64 fire, the rest wait) and without a cap (all 10,000 fire in it), plus
   the NOOPs the capped run needs to drain the queue;
3. trades while 10,000 trigger orders rest far from the market, as 5,000 OCO groups
   (linked: every fill goes through the link pass) against 10,000 plain stops: µs per trade
   command of both and their ratio (the link pass must not cost in the pool's size).

    python bench/trigger_bench.py [--commands 200000] [--triggers 10000] [--runs 3] [--quick]

Prints a table and writes bench/results/triggers.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.core.records import (  # noqa: E402
    CommandKind,
    EventKind,
    FillCondition,
    InstrumentKind,
    LinkType,
    TriggerSource,
    TriggerType,
    command_array,
    concat_commands,
    index_records,
)
from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)

TICK = 50
START = 10_000_000
ACCOUNTS = 200
FIRST_ACCOUNT = 3


def config(cap: int = 64) -> EngineConfig:
    return EngineConfig(
        risk_checks=False,
        max_orders_per_book=10_000_000,
        max_open_orders_per_account=1_000_000,
        initial_orders=1 << 20,
        initial_levels=1 << 15,
        initial_accounts=1 << 10,
        initial_levels_per_side=1 << 13,
        initial_triggers=1 << 16,
        trigger_fire_cap=cap,
    )


def setup() -> np.ndarray:
    records = []
    perp = command_array(1)
    perp["kind"] = CommandKind.ADD_INSTRUMENT
    perp["instrument_kind"] = InstrumentKind.PERPETUAL
    perp["underlying"] = 1
    perp["tick_size_ticks"] = TICK
    perp["min_trade_lots"] = 1
    perp["contract_value_units"] = 1
    records.append(perp)
    for account in range(ACCOUNTS):
        create = command_array(1)
        create["kind"] = CommandKind.CREATE_ACCOUNT
        deposit = command_array(1)
        deposit["kind"] = CommandKind.DEPOSIT
        deposit["account"] = FIRST_ACCOUNT + account
        deposit["amount_units"] = 10**15
        records += [create, deposit]
    out = concat_commands(records)
    out["seq"] = np.arange(1, len(out) + 1)
    return out


def flow(commands: int, seed: int, with_stops: bool) -> np.ndarray:
    """Passive orders around a mid falling 5% over the run, 15% aggressive IOC orders and
    10% sell stops 2-40 ticks under the mid (or, in the plain flow, resting sells there)."""
    rng = np.random.default_rng(seed)
    out = command_array(commands)
    mid = START + ((-0.05 * START) * np.arange(commands) / commands).astype(np.int64)
    mid -= mid % TICK
    roll = rng.random(commands)
    out["kind"] = CommandKind.PLACE_ORDER
    out["account"] = FIRST_ACCOUNT + rng.integers(0, ACCOUNTS, commands)
    out["qty_lots"] = rng.integers(1, 6, commands)
    side = rng.integers(0, 2, commands)
    out["side"] = side
    away = rng.integers(1, 20, commands) * TICK
    out["price_ticks"] = np.where(side == 0, mid - away, mid + away)
    aggressive = (roll >= 0.75) & (roll < 0.90)
    out["tif"][aggressive] = 1  # IOC
    out["price_ticks"][aggressive] = np.where(
        side[aggressive] == 0, mid[aggressive] + 20 * TICK, mid[aggressive] - 20 * TICK
    )
    stops = roll >= 0.90
    below = mid[stops] - rng.integers(2, 40, int(stops.sum())) * TICK
    out["side"][stops] = 1
    out["qty_lots"][stops] = 1
    if with_stops:
        out["kind"][stops] = CommandKind.PLACE_TRIGGER
        out["order_type"][stops] = 1  # market
        out["trigger_type"][stops] = TriggerType.STOP
        out["trigger_source"][stops] = TriggerSource.LAST
        out["trigger_price_ticks"][stops] = below
    else:
        out["price_ticks"][stops] = below + 60 * TICK  # a resting sell, above the mid
    out["seq"] = np.arange(1, commands + 1) + 10**6
    return out


def run_flow(commands: int, with_stops: bool, seed: int) -> tuple[float, dict[str, int]]:
    engine = Engine(config())
    engine.process(setup())
    batch = flow(commands, seed, with_stops)
    start = time.perf_counter()
    events = engine.process_into(batch)
    elapsed = time.perf_counter() - start
    counts = {
        "fired": int(np.sum(events["kind"] == EventKind.TRIGGER_FIRED)),
        "fills": int(np.sum(events["kind"] == EventKind.FILLED)),
    }
    engine.check_invariants()
    return commands / elapsed, counts


def wall_of_stops(triggers: int, cap: int) -> dict[str, float]:
    """One INDEX command crossing ``triggers`` index stops; then NOOPs until all fired."""
    engine = Engine(config(cap))
    base = setup()
    engine.process(base)
    seq = int(base["seq"][-1])
    records = [index_records(1, [(1, 1, START)])]
    bid = command_array(1)
    bid["kind"] = CommandKind.PLACE_ORDER
    bid["account"] = FIRST_ACCOUNT
    bid["side"] = 0
    bid["price_ticks"] = START - 1000 * TICK
    bid["qty_lots"] = triggers
    records.append(bid)
    stops = command_array(triggers)
    stops["kind"] = CommandKind.PLACE_TRIGGER
    stops["account"] = FIRST_ACCOUNT + 1 + np.arange(triggers) % (ACCOUNTS - 1)
    stops["side"] = 1
    stops["order_type"] = 1
    stops["trigger_type"] = TriggerType.STOP
    stops["trigger_source"] = TriggerSource.INDEX
    stops["trigger_price_ticks"] = START - (1 + np.arange(triggers) % 50) * TICK
    stops["qty_lots"] = 1
    records.append(stops)
    prefix = concat_commands(records)
    prefix["seq"] = seq + 1 + np.arange(len(prefix))
    prefix["ts_ns"] = 1
    engine.process(prefix)
    crash = index_records(1, [(1, 2, START - 100 * TICK)])
    crash["seq"] = int(prefix["seq"][-1]) + 1 + np.arange(len(crash))
    crash["ts_ns"] = 2
    start = time.perf_counter()
    events = engine.process_into(crash)
    crash_s = time.perf_counter() - start
    fired_first = int(np.sum(events["kind"] == EventKind.TRIGGER_FIRED))
    noops = 0
    drained = 0.0
    total = fired_first
    nothing = command_array(1)
    nothing["kind"] = CommandKind.NOOP
    next_seq = int(crash["seq"][-1]) + 1
    while total < triggers and noops < triggers:
        nothing["seq"] = next_seq
        next_seq += 1
        start = time.perf_counter()
        events = engine.process_into(nothing)
        drained += time.perf_counter() - start
        total += int(np.sum(events["kind"] == EventKind.TRIGGER_FIRED))
        noops += 1
    engine.check_invariants()
    return {
        "index_command_ms": crash_s * 1e3,
        "fired_in_it": fired_first,
        "noops_to_drain": noops,
        "drain_ms": drained * 1e3,
        "us_per_trigger": (crash_s + drained) * 1e6 / max(total, 1),
        "fired_total": total,
    }


def _resting_triggers(rows: int, grouped: bool) -> np.ndarray:
    """``rows`` index-sourced sell triggers far from the market on accounts 2.. (the first
    two trade): ``rows // 2`` OCO groups (a take far above, a stop far below), or as many
    plain stops and takes."""
    if not grouped:
        out = command_array(rows)
        out["kind"] = CommandKind.PLACE_TRIGGER
    else:
        out = command_array(3 * (rows // 2))
        header = out[0::3]
        header["kind"] = CommandKind.PLACE_LINKED
        header["link_type"] = LinkType.OCO
        header["fill_condition"] = FillCondition.FIRST_HIT
        header["count"] = 2
        out["kind"][1::3] = CommandKind.LINKED_TRIGGER
        out["kind"][2::3] = CommandKind.LINKED_TRIGGER
    legs = np.flatnonzero(out["kind"] != CommandKind.PLACE_LINKED)
    group = np.arange(len(out)) // (3 if grouped else 2)
    out["account"] = FIRST_ACCOUNT + 2 + group % (ACCOUNTS - 2)
    take = (np.arange(len(legs)) % 2) == 0
    at = out[legs]
    at["side"] = 1
    at["order_type"] = 1
    at["trigger_source"] = TriggerSource.INDEX
    at["trigger_type"] = np.where(take, TriggerType.TAKE, TriggerType.STOP)
    at["trigger_price_ticks"] = np.where(take, 2 * START, START // 2)
    at["qty_lots"] = 1
    out[legs] = at
    return out


def grouped_trades(rows: int, trades: int, grouped: bool) -> dict[str, float]:
    """Alternating resting sells and IOC buys that take them, while ``rows`` trigger orders
    rest (``_resting_triggers``). Returns µs per trade command (the IOC buy)."""
    engine = Engine(config())
    base = setup()
    engine.process(base)
    prefix = concat_commands([index_records(1, [(1, 1, START)]), _resting_triggers(rows, grouped)])
    prefix["seq"] = int(base["seq"][-1]) + 1 + np.arange(len(prefix))
    prefix["ts_ns"] = 1
    events = engine.process(prefix)
    assert int(np.sum(events["kind"] == EventKind.TRIGGER_PLACED)) == rows
    assert int(np.sum(events["kind"] == EventKind.ORDER_LINKED)) == (rows if grouped else 0)
    flow = command_array(2 * trades)
    flow["kind"] = CommandKind.PLACE_ORDER
    flow["account"][0::2] = FIRST_ACCOUNT
    flow["account"][1::2] = FIRST_ACCOUNT + 1
    flow["side"][0::2] = 1
    flow["tif"][1::2] = 1  # IOC
    flow["price_ticks"] = START + TICK * (np.arange(2 * trades) // 2 % 20)
    flow["qty_lots"] = 1
    flow["seq"] = int(prefix["seq"][-1]) + 1 + np.arange(len(flow))
    flow["ts_ns"] = 2
    start = time.perf_counter()
    events = engine.process_into(flow)
    elapsed = time.perf_counter() - start
    fills = int(np.sum(events["kind"] == EventKind.FILLED))
    assert fills == 2 * trades, fills
    engine.check_invariants()
    return {"us_per_trade": elapsed * 1e6 / trades, "us_per_command": elapsed * 1e6 / len(flow)}


def grouped_rows_resting(rows: int, trades: int, runs: int) -> dict[str, float]:
    """``grouped_trades`` grouped and plain, interleaved ``runs`` times: medians, ratio."""
    plain, grouped = [], []
    for _ in range(runs):
        plain.append(grouped_trades(rows, trades, False)["us_per_trade"])
        grouped.append(grouped_trades(rows, trades, True)["us_per_trade"])
    out = {
        "rows": rows,
        "trades": trades,
        "plain_us_per_trade": statistics.median(plain),
        "grouped_us_per_trade": statistics.median(grouped),
    }
    out["ratio"] = out["grouped_us_per_trade"] / out["plain_us_per_trade"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--grouped-only", action="store_true", help="only measure 3 (trades with groups resting)"
    )
    args = parser.parse_args()
    if args.quick:
        args.commands, args.triggers, args.runs = 20_000, 2_000, 1
    if args.grouped_only:
        grouped_trades(200, 200, True)  # compile / warm the cache outside the timing
        print(grouped_rows_resting(args.triggers, 20_000, args.runs))
        return
    results: dict = {"machine": machine(), "commands": args.commands}
    run_flow(2_000, True, 1)  # compile / warm the cache outside the timing
    plain, stops, counts = [], [], {}
    for run in range(args.runs):  # interleaved, so load changes hit both alike
        rate, _ = run_flow(args.commands, False, run)
        plain.append(rate)
        rate, counts = run_flow(args.commands, True, run)
        stops.append(rate)
    results["plain_cmds_per_s"] = statistics.median(plain)
    results["stops_cmds_per_s"] = statistics.median(stops)
    results["ratio"] = results["stops_cmds_per_s"] / results["plain_cmds_per_s"]
    results["stop_flow_counts"] = counts
    results["wall_capped"] = wall_of_stops(args.triggers, 64)
    results["wall_uncapped"] = wall_of_stops(args.triggers, 1 << 20)
    results["grouped_rows_resting"] = grouped_rows_resting(args.triggers, 20_000, args.runs)
    table = Table(title="conditional orders")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("plain flow, commands/s (median)", f"{results['plain_cmds_per_s']:,.0f}")
    table.add_row("10% stops flow, commands/s", f"{results['stops_cmds_per_s']:,.0f}")
    table.add_row("ratio stops / plain", f"{results['ratio']:.3f}")
    table.add_row("stops fired in the stops flow", str(counts.get("fired")))
    for name in ("wall_capped", "wall_uncapped", "grouped_rows_resting"):
        for key, value in results[name].items():
            table.add_row(
                f"{name}: {key}", f"{value:,.3f}" if isinstance(value, float) else str(value)
            )
    finish(results, table, Console(), "triggers", args.quick)


if __name__ == "__main__":
    main()
