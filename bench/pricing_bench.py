"""Benchmark derivex.pricing against vollib and QuantLib, and the risk-array path.

Times, on N options (default 1e6, random but seeded: forwards around 100,
strikes within +-3 standard deviations, 1 day .. 2 years, vol 10%..100%):

* ``black76_price``, ``black76_greeks`` (price + 5 Greeks) and
  ``implied_vol_black76`` on the whole vector, median of ``--runs`` runs
  (after a warm-up call that loads/compiles the numba kernels), each serial (the
  default) and with ``parallel=True`` (numba's default thread count, recorded); the
  parallel results are checked to be bit-identical to the serial ones;
* the same work with vollib (the maintained successor of py_vollib; the
  ``py_vollib`` shim is used if only that is installed) and with QuantLib's
  Python API (``blackFormula``, ``BlackCalculator``, ``blackFormulaImpliedStdDev``
  at 1e-12 accuracy), each looped in Python over a subset of the options and
  scaled linearly to N, in the same run;
* risk arrays: ``scenario_values`` for ``--risk-n`` options on the 35-scenario
  Deribit grid (options x scenarios per second), ``lot_greeks``,
  ``risk_array_records``, and one ``PricingService.price`` of 200 options.

Prints a table and writes ``bench/results/pricing.json`` (``--quick``: a small
smoke run to ``pricing-quick.json``) with the timings, the agreement of the
libraries on the subsets and the machine facts of ``bench/report.py`` (load
average before and after).  Run:

    .venv/bin/python bench/pricing_bench.py [--n 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numba
import numpy as np
from rich.console import Console
from rich.table import Table

try:
    import derivex.pricing as dp
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import derivex.pricing as dp

from derivex.core.config import deribit_grid
from derivex.pricing.service import OptionSpec, PricingService
from report import finish, machine  # bench/report.py, beside this script


def make_options(n: int, seed: int = 20240601) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.uniform(1.0 / 365.0, 2.0, n)
    vol = rng.uniform(0.1, 1.0, n)
    f = 100.0 * np.exp(rng.normal(0.0, 0.1, n))
    k = f * np.exp(rng.uniform(-3.0, 3.0, n) * vol * np.sqrt(t))
    return {"f": f, "k": k, "t": t, "vol": vol, "r": np.full(n, 0.03), "call": rng.random(n) < 0.5}


def median_time(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def load_vollib():
    try:
        from vollib.black import black
        from vollib.black.greeks import analytical as greeks
        from vollib.black.implied_volatility import implied_volatility

        return "vollib", black, greeks, implied_volatility
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from py_vollib.black import black
            from py_vollib.black.greeks import analytical as greeks
            from py_vollib.black.implied_volatility import implied_volatility
        return "py_vollib", black, greeks, implied_volatility
    except ImportError:
        return None


def bench_reference(
    opt: dict[str, np.ndarray], prices: np.ndarray, subset: int, runs: int, n_total: int
) -> dict[str, Any] | None:
    loaded = load_vollib()
    if loaded is None:
        return None
    name, black, greeks, implied_volatility = loaded
    idx = np.arange(subset)
    rows = [
        (
            "c" if opt["call"][i] else "p",
            float(opt["f"][i]),
            float(opt["k"][i]),
            float(opt["t"][i]),
            float(opt["r"][i]),
            float(opt["vol"][i]),
        )
        for i in idx
    ]

    def price_greeks():
        out = []
        for flag, f, k, t, r, v in rows:
            out.append(
                (
                    black(flag, f, k, t, r, v),
                    greeks.delta(flag, f, k, t, r, v),
                    greeks.gamma(flag, f, k, t, r, v),
                    greeks.vega(flag, f, k, t, r, v),
                    greeks.theta(flag, f, k, t, r, v),
                    greeks.rho(flag, f, k, t, r, v),
                )
            )
        return out

    def price_only():
        return [black(flag, f, k, t, r, v) for flag, f, k, t, r, v in rows]

    def implied():
        out = []
        for (flag, f, k, t, r, _), p in zip(rows, prices[idx], strict=True):
            try:
                out.append(implied_volatility(float(p), f, k, r, t, flag))
            except Exception:  # the reference raises on some quotes
                out.append(float("nan"))
        return out

    ref_runs = max(1, min(runs, 3))
    result: dict[str, Any] = {"library": name, "subset": subset, "runs": ref_runs}
    for label, fn in (
        ("price", price_only),
        ("price_greeks", price_greeks),
        ("implied_vol", implied),
    ):
        med, _ = median_time(fn, ref_runs)
        result[label] = {
            "subset_s": med,
            "per_option_ns": med / subset * 1e9,
            "scaled_to_n_s": med / subset * n_total,
        }
    ref_prices = np.array(price_only())
    ref_iv = np.array(implied())
    mine_p = dp.black76_price(
        opt["f"][idx],
        opt["k"][idx],
        opt["t"][idx],
        opt["vol"][idx],
        opt["r"][idx],
        opt["call"][idx],
    )
    mine_iv = dp.implied_vol_black76(
        prices[idx], opt["f"][idx], opt["k"][idx], opt["t"][idx], opt["r"][idx], opt["call"][idx]
    )
    ok = np.isfinite(ref_iv) & np.isfinite(mine_iv)
    result["agreement"] = {
        "max_rel_price_diff": float(np.max(np.abs(mine_p - ref_prices) / ref_prices)),
        "max_abs_iv_diff": float(np.max(np.abs(mine_iv[ok] - ref_iv[ok]))) if ok.any() else None,
        "iv_compared": int(ok.sum()),
    }
    return result


def bench_quantlib(
    opt: dict[str, np.ndarray], prices: np.ndarray, subset: int, runs: int, n_total: int
) -> dict[str, Any] | None:
    try:
        import QuantLib as ql
    except ImportError:
        return None
    idx = np.arange(subset)
    rows = [
        (
            ql.Option.Call if opt["call"][i] else ql.Option.Put,
            float(opt["f"][i]),
            float(opt["k"][i]),
            float(opt["t"][i]),
            float(opt["vol"][i]),
            math.exp(-float(opt["r"][i]) * float(opt["t"][i])),
        )
        for i in idx
    ]

    def price_only():
        return [ql.blackFormula(kind, k, f, v * math.sqrt(t), d) for kind, f, k, t, v, d in rows]

    def price_greeks():
        out = []
        for kind, f, k, t, v, d in rows:
            calc = ql.BlackCalculator(ql.PlainVanillaPayoff(kind, k), f, v * math.sqrt(t), d)
            out.append(
                (
                    calc.value(),
                    calc.delta(f),
                    calc.gamma(f),
                    calc.vega(t),
                    calc.theta(f, t),
                    calc.rho(t),
                )
            )
        return out

    def implied():
        out = []
        for (kind, f, k, t, _, d), p in zip(rows, prices[idx], strict=True):
            try:
                std = ql.blackFormulaImpliedStdDev(
                    kind, k, f, float(p), d, 0.0, ql.nullDouble(), 1e-12, 100
                )
                out.append(std / math.sqrt(t))
            except RuntimeError:  # the reference raises on some quotes
                out.append(float("nan"))
        return out

    ref_runs = max(1, min(runs, 3))
    result: dict[str, Any] = {
        "library": f"QuantLib {ql.__version__}",
        "subset": subset,
        "runs": ref_runs,
    }
    for label, fn in (
        ("price", price_only),
        ("price_greeks", price_greeks),
        ("implied_vol", implied),
    ):
        med, _ = median_time(fn, ref_runs)
        result[label] = {
            "subset_s": med,
            "per_option_ns": med / subset * 1e9,
            "scaled_to_n_s": med / subset * n_total,
        }
    sel = {key: opt[key][idx] for key in ("f", "k", "t", "vol", "r", "call")}
    mine = dp.black76_greeks(sel["f"], sel["k"], sel["t"], sel["vol"], sel["r"], sel["call"])
    ref = np.array(price_greeks())
    ref_iv = np.array(implied())
    mine_iv = dp.implied_vol_black76(
        prices[idx], sel["f"], sel["k"], sel["t"], sel["r"], sel["call"]
    )
    ok = np.isfinite(ref_iv) & np.isfinite(mine_iv)
    result["agreement"] = {
        "max_rel_price_diff": float(np.max(np.abs(mine.price - ref[:, 0]) / ref[:, 0])),
        "max_abs_delta_diff": float(np.max(np.abs(mine.delta - ref[:, 1]))),
        "max_rel_vega_diff": float(np.max(np.abs(mine.vega - ref[:, 3]) / ref[:, 3])),
        "max_abs_iv_diff": float(np.max(np.abs(mine_iv[ok] - ref_iv[ok]))) if ok.any() else None,
        "iv_compared": int(ok.sum()),
        "note": "QuantLib's BlackCalculator rho moves the forward with the rate (not compared)",
    }
    return result


def bench_risk(n: int, runs: int) -> dict[str, Any]:
    """Risk-array throughput on the Deribit grid and one 200-option service call."""
    rng = np.random.default_rng(7)
    index = 10_000_000.0
    strike = index * np.exp(rng.normal(0.0, 0.25, n))
    years = rng.uniform(1.0 / 365.0, 1.0, n)
    vol = rng.uniform(0.3, 1.2, n)
    call = rng.random(n) < 0.5
    cvu = np.ones(n, dtype=np.int64)
    grid = dp.ScenarioGrid.from_rows(deribit_grid())
    mark = np.rint(dp.black76_price(index, strike, years, vol, 0.0, call)).astype(np.int64)
    dp.scenario_values(index, strike[:8], years[:8], vol[:8], call[:8], 1, mark[:8], grid)
    dp.lot_greeks(index, strike[:8], years[:8], vol[:8], call[:8], 1)
    values = dp.scenario_values(index, strike, years, vol, call, cvu, mark, grid)
    greeks = dp.lot_greeks(index, strike, years, vol, call, cvu)
    ids = np.arange(n)
    out: dict[str, Any] = {"options": n, "scenarios": len(grid)}
    for label, fn in (
        (
            "scenario_values",
            lambda: dp.scenario_values(index, strike, years, vol, call, cvu, mark, grid),
        ),
        ("lot_greeks", lambda: dp.lot_greeks(index, strike, years, vol, call, cvu)),
        ("risk_array_records", lambda: dp.risk_array_records(ids, mark, values, greeks)),
    ):
        med, times = median_time(fn, runs)
        out[label] = {"median_s": med, "runs_s": times, "options_per_s": n / med}
    sv = out["scenario_values"]
    sv["option_scenarios_per_s"] = n * len(grid) / sv["median_s"]

    now = 1_790_000_000 * 1_000_000_000
    day = 86_400 * 1_000_000_000
    grid_200 = [
        (days, money, is_call)
        for days in (1, 2, 7, 14, 30, 60, 90, 180, 270, 365)
        for money in np.linspace(0.7, 1.3, 10)
        for is_call in (True, False)
    ]
    specs = [
        OptionSpec(i, int(index * money), now + days * day, is_call, 1, 50)
        for i, (days, money, is_call) in enumerate(grid_200)
    ]
    service = PricingService(specs)
    service.price(now, index)
    med, times = median_time(lambda: service.price(now, index), max(runs, 20))
    out["service_200_options"] = {
        "median_ms": med * 1e3,
        "runs": len(times),
        "options": len(specs),
        "records": len(service.records(now, index)),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ref-subset", type=int, default=2000)
    parser.add_argument("--risk-n", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.runs, args.ref_subset, args.risk_n = 20_000, 3, 200, 5_000
    args.runs = max(args.runs, 3)

    console = Console(width=120)
    results: dict[str, Any] = {
        "benchmark": "derivex.pricing vectorised Black-76",
        "created_unix": time.time(),
        "machine": machine(),
        "n_options": args.n,
        "runs": args.runs,
    }
    opt = make_options(args.n)
    f, k, t, vol, r, call = (opt[key] for key in ("f", "k", "t", "vol", "r", "call"))
    # warm-up: load or compile the kernels outside the timed region
    for parallel in (False, True):
        warm = dp.black76_greeks(f[:8], k[:8], t[:8], vol[:8], r[:8], call[:8], parallel=parallel)
        dp.implied_vol_black76(warm.price, f[:8], k[:8], t[:8], r[:8], call[:8], parallel=parallel)
        dp.black76_price(f[:8], k[:8], t[:8], vol[:8], r[:8], call[:8], parallel=parallel)
    prices = dp.black76_price(f, k, t, vol, r, call)

    # label -> (timed call, reference label); "_parallel" runs numba's default thread count
    ops: dict[str, tuple[Any, str]] = {}
    for suffix, parallel in (("", False), ("_parallel", True)):
        ops["price" + suffix] = (
            lambda p=parallel: dp.black76_price(f, k, t, vol, r, call, parallel=p),
            "price",
        )
        ops["price_greeks" + suffix] = (
            lambda p=parallel: dp.black76_greeks(f, k, t, vol, r, call, parallel=p),
            "price_greeks",
        )
        ops["implied_vol" + suffix] = (
            lambda p=parallel: dp.implied_vol_black76(prices, f, k, t, r, call, parallel=p),
            "implied_vol",
        )
    mine: dict[str, Any] = {}
    for label, (fn, _) in ops.items():
        med, times = median_time(fn, args.runs)
        mine[label] = {
            "median_s": med,
            "runs_s": times,
            "per_option_ns": med / args.n * 1e9,
            "options_per_s": args.n / med,
        }
    iv = dp.implied_vol_black76(prices, f, k, t, r, call)
    finite = np.isfinite(iv)
    mine["implied_vol"]["max_abs_round_trip_error"] = float(np.max(np.abs(iv - vol)[finite]))
    mine["implied_vol"]["nan_count"] = int((~finite).sum())
    iv_par = dp.implied_vol_black76(prices, f, k, t, r, call, parallel=True)
    greeks = dp.black76_greeks(f, k, t, vol, r, call)
    greeks_par = dp.black76_greeks(f, k, t, vol, r, call, parallel=True)
    mine["parallel"] = {
        "threads": numba.get_num_threads(),
        "threading_layer": numba.threading_layer(),
        "bit_identical_to_serial": bool(
            np.array_equal(iv.view(np.int64), iv_par.view(np.int64))
            and all(
                np.array_equal(a.view(np.int64), b.view(np.int64))
                for a, b in zip(greeks, greeks_par, strict=True)
            )
        ),
    }
    results["derivex"] = mine

    subset = min(args.ref_subset, args.n)
    references = {
        "vollib": bench_reference(opt, prices, subset, args.runs, args.n),
        "quantlib": bench_quantlib(opt, prices, subset, args.runs, args.n),
    }
    results["reference"] = references["vollib"]  # kept under its old key
    results["quantlib"] = references["quantlib"]
    speedups: dict[str, dict[str, float]] = {}
    for name, ref in references.items():
        if ref:
            speedups[name] = {
                label: ref[ref_label]["scaled_to_n_s"] / mine[label]["median_s"]
                for label, (_, ref_label) in ops.items()
            }
    results["speedup"] = speedups
    results["risk"] = bench_risk(args.risk_n, args.runs)

    table = Table(
        title=f"derivex.pricing: {args.n:,} options, median of {args.runs} runs "
        "(references looped over a subset, scaled)"
    )
    for column in (
        "operation",
        "derivex s",
        "ns/option",
        "vollib s*",
        "x vollib",
        "QuantLib s*",
        "x QuantLib",
    ):
        table.add_column(column, justify="right")
    for label, (_, ref_label) in ops.items():
        row = [label, f"{mine[label]['median_s']:.4f}", f"{mine[label]['per_option_ns']:.1f}"]
        for name in ("vollib", "quantlib"):
            ref = references[name]
            row += (
                [f"{ref[ref_label]['scaled_to_n_s']:.2f}", f"{speedups[name][label]:.0f}x"]
                if ref
                else ["-", "-"]
            )
        table.add_row(*row)
    risk = results["risk"]
    sv = risk["scenario_values"]
    table.add_row(
        f"risk values ({risk['options']:,} x {risk['scenarios']})",
        f"{sv['median_s']:.4f}",
        f"{sv['median_s'] / risk['options'] * 1e9:.1f}",
        f"{sv['option_scenarios_per_s']:.3g} opt-scen/s",
        "",
        "",
        "",
    )
    for label in ("lot_greeks", "risk_array_records"):
        table.add_row(
            label,
            f"{risk[label]['median_s']:.4f}",
            f"{risk[label]['median_s'] / risk['options'] * 1e9:.1f}",
            "",
            "",
            "",
            "",
        )
    service_s = risk["service_200_options"]["median_ms"] / 1e3
    table.add_row("service, 200 options", f"{service_s:.5f}", "", "", "", "", "")
    for ref in references.values():
        if ref:
            console.print(
                f"{ref['library']} agreement on {ref['subset']} options: {ref['agreement']}"
            )
    console.print(
        f"IV round trip: max |vol error| "
        f"{mine['implied_vol']['max_abs_round_trip_error']:.2e} over finite results, "
        f"{mine['implied_vol']['nan_count']} nan; parallel: {mine['parallel']}"
    )
    finish(results, table, console, "pricing", args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
