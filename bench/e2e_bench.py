"""End-to-end benchmark of the multi-process runtime: commands from a gateway worker process
through the sequencer/engine process (and the journal writer) to a market-data process,
with the single-process Engine on the same commands as the baseline, in one run.

    python bench/e2e_bench.py [--commands 1000000] [--runs 3] [--paced-rate 20000] [--quick]

- baseline: ``Engine.process`` in this process on the flow in batches of ``--batch``;
- throughput: one worker replays the flow as fast as the rings take it (batches of
  ``--batch``); commands / (last - first market-data receipt);
- ``--replicas``: the saturated run once more with the worker keeping a replica of the
  engine state (it replays every bus frame; results/e2e-replicas.json);
- latency: per command, ``monotonic_ns`` at the worker's submit (stamped into ``label``)
  to its ACCEPTED/REJECTED event reaching the market-data process; reported for the
  saturated run and for a paced run (``--paced-rate`` commands/s, one per submit).

The flow is the matching benchmark's (single perpetual book, seeded; cached under
bench/.cache). The journal writes to a temporary directory with group commit
(fsync every 5 ms). Prints a table and writes bench/results/e2e.json. Never part of the
test run. The reference machine has 2 cores for 5 processes: the numbers are what that
contention gives, with the spin-then-yield wait strategies.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derivex.core.engine import Engine  # noqa: E402
from derivex.runtime import Runtime, RuntimeConfig  # noqa: E402
from derivex.sim.flow import FlowSpec  # noqa: E402
from matching_bench import config_for, load_flow  # noqa: E402  (same flow and pools)
from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)


def baseline(setup: np.ndarray, flow: np.ndarray, config, batch: int) -> float:
    """Single-process Engine commands/s on the flow in batches of ``batch``."""
    engine = Engine(config)
    engine.process(setup.copy())
    commands = flow.copy()
    start = time.perf_counter()
    for at in range(0, len(commands), batch):
        engine.process_into(commands[at : at + batch])
    return len(commands) / (time.perf_counter() - start)


def run_runtime(
    setup,
    flow_path: Path,
    n: int,
    config,
    batch: int,
    rate: float | None,
    tag: str,
    replicas: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RuntimeConfig(
            name=f"e2e-{tag}",
            workers=1,
            engine=config,
            setup=setup,
            front_end="derivex.runtime.frontends:replay",
            front_end_options={
                "path": str(flow_path),
                "batch": batch if rate is None else 1,
                "rate": rate,
            },
            market_data_options={"latency": True, "max_samples": n},
            journal_dir=str(Path(tmp) / "journal"),
            fsync="interval",
            batch=batch,
            state_hash=False,
            replicas=replicas,
        )
        runtime = Runtime(cfg).start()
        total = n + len(setup)
        ok = runtime.wait_until(
            lambda s: s["md_events"] > 0 and s["processed_seq"] >= total, timeout=600, interval=0.05
        )
        ok = ok and runtime.wait_until(
            lambda s: s["durable_seq"] >= total and s["md_events"] > 0, 60, 0.05
        )
        report = runtime.stop()
    md = report.market_data or {}
    if not ok or not report.clean or md.get("commands") != total or md.get("gaps"):
        raise RuntimeError(f"runtime run failed: {report}")
    window_s = (md["last_ns"] - md["first_ns"]) / 1e9
    engine = report.engine or {}
    return {
        "commands_per_s": n / window_s,
        "latency_ns": md["latency_ns"],
        "latency_samples": md["latency_samples"],
        "engine_busy_fraction": engine["busy_seconds"] / max(engine["seconds"], 1e-9),
        "batches": engine["batches"],
        "fills": md["fills"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--paced-rate", type=float, default=20_000.0)
    parser.add_argument("--paced-commands", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--replicas",
        action="store_true",
        help="also run saturated with a worker replica of the engine state "
        "(the worker replays the bus); writes results/e2e-replicas.json",
    )
    args = parser.parse_args()
    n = 50_000 if args.quick else args.commands
    paced_n = 10_000 if args.quick else args.paced_commands
    console = Console()
    spec = FlowSpec(commands=n)
    setup, flow = load_flow(spec)
    config = config_for(n, 0)
    results: dict[str, Any] = {
        "machine": machine(),
        "runs": args.runs,
        "commands": n,
        "batch": args.batch,
        "flow": "matching benchmark single book (FlowSpec seed 7, 1000 accounts)",
        "pipeline": "replay worker -> cmd ring -> engine -> bus -> journal (fsync 5 ms) "
        "+ market data; responses -> worker",
        "statistic": "median over runs",
    }
    with tempfile.TemporaryDirectory() as tmp:
        flow_path = Path(tmp) / "flow.bin"
        flow.view(np.uint8).tofile(flow_path)
        paced_path = Path(tmp) / "paced.bin"
        flow[:paced_n].view(np.uint8).tofile(paced_path)
        base, full, paced, replicated = [], [], [], []
        for run in range(args.runs):
            base.append(baseline(setup, flow, config, args.batch))
            full.append(run_runtime(setup, flow_path, n, config, args.batch, None, f"f{run}"))
            if args.replicas:
                replicated.append(
                    run_runtime(
                        setup, flow_path, n, config, args.batch, None, f"r{run}", replicas=True
                    )
                )
            paced.append(
                run_runtime(
                    setup, paced_path, paced_n, config, args.batch, args.paced_rate, f"p{run}"
                )
            )
            console.print(
                f"run {run + 1}/{args.runs}: baseline {base[-1] / 1e6:.2f} M/s, "
                f"e2e {full[-1]['commands_per_s'] / 1e6:.3f} M/s"
            )

    def median_latency(rows, q):
        return statistics.median(r["latency_ns"][q] for r in rows)

    e2e = statistics.median(r["commands_per_s"] for r in full)
    results["single_process_engine"] = {"commands_per_s": statistics.median(base), "runs": base}
    results["e2e_saturated"] = {
        "commands_per_s": e2e,
        "latency_ns": {q: median_latency(full, q) for q in ("p50", "p99", "p99.9")},
        "runs": full,
    }
    results["e2e_paced"] = {
        "rate_per_s": args.paced_rate,
        "commands": paced_n,
        "latency_ns": {q: median_latency(paced, q) for q in ("p50", "p99", "p99.9")},
        "runs": paced,
    }
    results["e2e_vs_single_process"] = e2e / statistics.median(base)
    if replicated:
        with_replica = statistics.median(r["commands_per_s"] for r in replicated)
        results["e2e_saturated_with_replica"] = {
            "commands_per_s": with_replica,
            "vs_without": with_replica / e2e,
            "latency_ns": {q: median_latency(replicated, q) for q in ("p50", "p99", "p99.9")},
            "runs": replicated,
        }
    table = Table(title=f"end-to-end runtime ({n:,} commands, median of {args.runs})")
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row(
        f"single-process Engine, batches of {args.batch}",
        f"{statistics.median(base) / 1e6:.2f} M commands/s",
    )
    table.add_row(
        "e2e throughput (worker -> engine -> market data)", f"{e2e / 1e6:.3f} M commands/s"
    )
    table.add_row("e2e / single process", f"{results['e2e_vs_single_process']:.3f}")
    if replicated:
        row = results["e2e_saturated_with_replica"]
        table.add_row(
            "e2e throughput, the worker keeping a replica",
            f"{row['commands_per_s'] / 1e6:.3f} M commands/s ({row['vs_without']:.2f} of without)",
        )
    for label, key in (
        ("saturated", "e2e_saturated"),
        (f"paced {args.paced_rate:,.0f}/s", "e2e_paced"),
    ):
        lat = results[key]["latency_ns"]
        table.add_row(
            f"latency p50 / p99 / p99.9, {label}",
            f"{lat['p50'] / 1e3:.1f} / {lat['p99'] / 1e3:.1f} / {lat['p99.9'] / 1e3:.1f} us",
        )
    finish(results, table, console, "e2e-replicas" if args.replicas else "e2e", args.quick)


if __name__ == "__main__":
    main()
