"""What running other code between two per-command calls costs the engine, without
hardware counters (``perf stat`` has none inside the VMs we run on): the door's entry point
on the single-book flow from a C loop, with an interlude after each call that reads data,
runs straight-line code, or runs code with a conditional branch every ~24 bytes, each of
a given size; minus the interlude alone and the entry alone, what is left is what the
interlude's eviction of caches and predictor state costs the entry (docs/doors.md, "What
the interpreter costs the engine"). Needs a C compiler (the interludes are generated C).

    python bench/door_interludes.py [--calls 100000] [--runs 3] [--kinds data,code,branch]

Prints a table (CPU time, with the machine load). Never part of the test run.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from derivex.core.summary import Ctx
from derivex.door import OrderDoor, load_binding
from derivex.sim.flow import FlowSpec
from matching_bench import config_for, fresh_engine, load_flow

SIZES_KIB = {"data": (16, 64, 256, 1024), "code": (16, 64, 256, 1024), "branch": (4, 16, 64, 256)}
_COLUMNS = ("kind", "seq", "ts_ns", "account", "instrument", "order_id", "side", "order_type",
            "tif", "flags", "price_ticks", "qty_lots", "label")  # fmt: skip

_LOOP = r"""
typedef int64_t (*entry_t)(void *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
typedef void (*code_t)(void);
static char data[1 << 22];
void touch(int64_t bytes) { int64_t s = 0; for (int64_t i = 0; i < bytes; i += 64) s += data[i];
                            sink = s; }
/* the entry (NULL: none) over 13 columns of `stride` from `start`, the interlude after
   each call; returns where it stopped (a negative row in *row: the caller makes room) */
int64_t run(void *entry, void *ctx, const int64_t *c, int64_t start, int64_t n,
            int64_t stride, int64_t *row_out, void *code, int64_t data_bytes) {
    entry_t e = (entry_t)entry;
    for (int64_t k = start; k < n; k++) {
        int64_t row = e ? e(ctx, c[k], c[stride + k], c[2 * stride + k], c[3 * stride + k],
            c[4 * stride + k], c[5 * stride + k], c[6 * stride + k], c[7 * stride + k],
            c[8 * stride + k], c[9 * stride + k], c[10 * stride + k], c[11 * stride + k],
            c[12 * stride + k]) : 0;
        if (row < 0) { *row_out = row; return k; }
        if (code) ((code_t)code)();
        if (data_bytes) touch(data_bytes);
    }
    *row_out = 0;
    return n;
}
"""


def _source() -> str:
    """The interludes: ``code_<K>k`` (~14 bytes per statement at -O1) and ``branch_<K>k``
    (a volatile store under a data-dependent condition: gcc cannot make it a cmov)."""
    parts = ["#include <stdint.h>", "static volatile int64_t sink;"]
    for kib in SIZES_KIB["code"]:
        body = "\n".join(
            f"x = x * {3 + (i % 97) * 2} + {i};" if i % 2 else f"x ^= x >> {1 + i % 13};"
            for i in range(kib * 1024 // 14)
        )
        parts.append(f"void code_{kib}k(void) {{ int64_t x = sink;\n{body}\nsink = x; }}")
    for kib in SIZES_KIB["branch"]:
        body = "\n".join(
            f"x = x * 6364136223846793005ULL + {i}; if (x >> {40 + i % 23} & 1) sink = {i};"
            for i in range(kib * 1024 // 24)
        )
        parts.append(f"void branch_{kib}k(void) {{ uint64_t x = (uint64_t)sink + 1;\n{body}\n}}")
    return "\n".join(parts) + _LOOP


def _library(directory: str) -> ctypes.CDLL:
    c_file, so_file = os.path.join(directory, "interludes.c"), os.path.join(directory, "i.so")
    Path(c_file).write_text(_source())
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", c_file, "-o", so_file], check=True)
    library = ctypes.CDLL(so_file)
    library.run.restype = ctypes.c_int64
    return library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default="data,code,branch")
    args = parser.parse_args()
    from derivex.core import entry

    binding = load_binding("native")
    assert binding is not None, "the native binding did not load"
    setup, flow = load_flow(FlowSpec(commands=max(args.calls, 200_000)))
    config = config_for(max(args.calls, 200_000), 0)
    count = args.calls
    columns = np.ascontiguousarray(np.stack([flow[n][:count].astype(np.int64) for n in _COLUMNS]))
    address = int(entry.order_entry.address)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        library = _library(directory)

        def per_call(with_entry: bool, code: str | None, data: int) -> float:
            engine = fresh_engine(setup, config)
            door = OrderDoor(binding)
            door.bind(engine)
            row, done = ctypes.c_int64(0), 0
            function = ctypes.cast(getattr(library, code), ctypes.c_void_p) if code else None
            start = time.process_time()
            while done < count:
                done = library.run(
                    ctypes.c_void_p(address if with_entry else 0),
                    ctypes.c_void_p(door.address),
                    columns.ctypes.data_as(ctypes.c_void_p),
                    ctypes.c_int64(done),
                    ctypes.c_int64(count),
                    ctypes.c_int64(count),
                    ctypes.byref(row),
                    function,
                    ctypes.c_int64(data),
                )
                if done < count:  # NEED_ROOM: the log and event buffer reused in place
                    door.ctx[Ctx.LOG_NEXT] = door.ctx[Ctx.CURSOR] = 0
            return (time.process_time() - start) / count * 1e9

        variants: list[tuple[str, str | None, int]] = []
        for kind in args.kinds.split(","):
            for kib in SIZES_KIB[kind]:
                code = None if kind == "data" else f"{kind}_{kib}k"
                variants.append((f"{kind} {kib} KiB", code, kib << 10 if kind == "data" else 0))
        alone, results = [], {name: [] for name, _, _ in variants}
        for _ in range(args.runs):
            alone.append(per_call(True, None, 0))
            for name, code, data in variants:
                results[name].append((per_call(True, code, data), per_call(False, code, data)))
    base = statistics.median(alone)
    print(f"the entry alone from a C loop: {base:.0f} ns per call ({count:,} calls, median of")
    load = [f"{a:.1f}" for a in (*load_before[:1], *os.getloadavg()[:1])]
    print(f"{args.runs}, CPU time; load {load[0]} -> {load[1]})")
    print(f"{'between two calls':20} {'both':>8} {'interlude':>10} {'added':>8}  (ns per call)")
    for name, values in results.items():
        both = statistics.median(v[0] for v in values)
        interlude = statistics.median(v[1] for v in values)
        print(f"{name:20} {both:8.0f} {interlude:10.0f} {both - interlude - base:8.0f}")


if __name__ == "__main__":
    main()
