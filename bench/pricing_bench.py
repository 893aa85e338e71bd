"""Benchmark derivex.pricing against py_vollib/vollib.

Times, on N options (default 1e6, random but seeded: forwards around 100,
strikes within +-3 standard deviations, 1 day .. 2 years, vol 10%..100%):

* ``black76_price``, ``black76_greeks`` (price + 5 Greeks) and
  ``implied_vol_black76`` on the whole vector, median of ``--runs`` runs
  (after a warm-up call that loads/compiles the numba kernels);
* the same work with vollib (the maintained successor of py_vollib; the
  ``py_vollib`` shim is used if only that is installed), looped in Python
  over a ``--ref-subset`` of the options and scaled linearly to N.

Prints a table and writes ``bench/results/pricing.json`` with the timings,
the agreement of the two libraries on the subset, machine information and
``os.getloadavg()`` before and after.  Run:

    .venv/bin/python bench/pricing_bench.py [--n 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

try:
    import derivex.pricing as dp
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import derivex.pricing as dp


def make_options(n: int, seed: int = 20240601) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.uniform(1.0 / 365.0, 2.0, n)
    vol = rng.uniform(0.1, 1.0, n)
    f = 100.0 * np.exp(rng.normal(0.0, 0.1, n))
    k = f * np.exp(rng.uniform(-3.0, 3.0, n) * vol * np.sqrt(t))
    return {"f": f, "k": k, "t": t, "vol": vol, "r": np.full(n, 0.03),
            "call": rng.random(n) < 0.5}


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


def bench_reference(opt: dict[str, np.ndarray], prices: np.ndarray, subset: int, runs: int,
                    n_total: int) -> dict[str, Any] | None:
    loaded = load_vollib()
    if loaded is None:
        return None
    name, black, greeks, implied_volatility = loaded
    idx = np.arange(subset)
    rows = [("c" if opt["call"][i] else "p", float(opt["f"][i]), float(opt["k"][i]),
             float(opt["t"][i]), float(opt["r"][i]), float(opt["vol"][i])) for i in idx]

    def price_greeks():
        out = []
        for flag, f, k, t, r, v in rows:
            out.append((black(flag, f, k, t, r, v), greeks.delta(flag, f, k, t, r, v),
                        greeks.gamma(flag, f, k, t, r, v), greeks.vega(flag, f, k, t, r, v),
                        greeks.theta(flag, f, k, t, r, v), greeks.rho(flag, f, k, t, r, v)))
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
    for label, fn in (("price", price_only), ("price_greeks", price_greeks),
                      ("implied_vol", implied)):
        med, _ = median_time(fn, ref_runs)
        result[label] = {"subset_s": med, "per_option_ns": med / subset * 1e9,
                         "scaled_to_n_s": med / subset * n_total}
    ref_prices = np.array(price_only())
    ref_iv = np.array(implied())
    mine_p = dp.black76_price(opt["f"][idx], opt["k"][idx], opt["t"][idx], opt["vol"][idx],
                              opt["r"][idx], opt["call"][idx])
    mine_iv = dp.implied_vol_black76(prices[idx], opt["f"][idx], opt["k"][idx], opt["t"][idx],
                                     opt["r"][idx], opt["call"][idx])
    ok = np.isfinite(ref_iv) & np.isfinite(mine_iv)
    result["agreement"] = {
        "max_rel_price_diff": float(np.max(np.abs(mine_p - ref_prices) / ref_prices)),
        "max_abs_iv_diff": float(np.max(np.abs(mine_iv[ok] - ref_iv[ok]))) if ok.any() else None,
        "iv_compared": int(ok.sum()),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ref-subset", type=int, default=2000)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "pricing.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    opt = make_options(args.n)
    f, k, t, vol, r, call = (opt[key] for key in ("f", "k", "t", "vol", "r", "call"))
    # warm-up: load or compile the kernels outside the timed region
    warm = dp.black76_greeks(f[:8], k[:8], t[:8], vol[:8], r[:8], call[:8])
    dp.implied_vol_black76(warm.price, f[:8], k[:8], t[:8], r[:8], call[:8])
    dp.black76_price(f[:8], k[:8], t[:8], vol[:8], r[:8], call[:8])
    prices = dp.black76_price(f, k, t, vol, r, call)

    ops = {
        "price": lambda: dp.black76_price(f, k, t, vol, r, call),
        "price_greeks": lambda: dp.black76_greeks(f, k, t, vol, r, call),
        "implied_vol": lambda: dp.implied_vol_black76(prices, f, k, t, r, call),
    }
    results: dict[str, Any] = {}
    for label, fn in ops.items():
        med, times = median_time(fn, args.runs)
        results[label] = {"median_s": med, "runs_s": times, "per_option_ns": med / args.n * 1e9,
                          "options_per_s": args.n / med}
    iv = dp.implied_vol_black76(prices, f, k, t, r, call)
    finite = np.isfinite(iv)
    results["implied_vol"]["max_abs_round_trip_error"] = float(np.max(np.abs(iv - vol)[finite]))
    results["implied_vol"]["nan_count"] = int((~finite).sum())

    reference = bench_reference(opt, prices, min(args.ref_subset, args.n), args.runs, args.n)
    load_after = os.getloadavg()

    import numba

    report = {
        "benchmark": "derivex.pricing vectorised Black-76",
        "created_unix": time.time(),
        "n_options": args.n,
        "runs": args.runs,
        "derivex": results,
        "reference": reference,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
    }

    print(f"derivex.pricing benchmark: {args.n:,} options, median of {args.runs} runs "
          f"(load avg {load_before[0]:.2f} -> {load_after[0]:.2f}, {os.cpu_count()} cpus)")
    header = f"{'operation':<14}{'derivex s':>12}{'ns/option':>12}"
    if reference:
        header += f"{reference['library'] + ' s*':>16}{'ns/option':>12}{'speed-up':>10}"
    print(header)
    for label in ops:
        mine = results[label]
        line = f"{label:<14}{mine['median_s']:>12.4f}{mine['per_option_ns']:>12.1f}"
        if reference:
            ref = reference[label]
            line += (f"{ref['scaled_to_n_s']:>16.2f}{ref['per_option_ns']:>12.0f}"
                     f"{ref['scaled_to_n_s'] / mine['median_s']:>9.0f}x")
        print(line)
    if reference:
        print(f"* {reference['library']} looped in Python over {reference['subset']} options, "
              f"scaled to {args.n:,}; agreement on the subset: {reference['agreement']}")
    print(f"IV round trip: max |vol error| {results['implied_vol']['max_abs_round_trip_error']:.2e}"
          f" over finite results, {results['implied_vol']['nan_count']} nan")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
