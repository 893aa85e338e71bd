"""Matching benchmark: every public door beside the kernel alone, on the same seeded flows
(single book; 1 perpetual + 200 options), in one run with the machine load:

- kernel alone (one pre-sized, pre-faulted event buffer), ``Engine.process`` on the whole
  batch, the streaming door (``Engine.run``: events delivered in reusable chunks), typed
  per-command ``Exchange.place`` / ``cancel`` (the door, ``derivex.door``, and the slow
  path), a pure-Python dict-and-deque book and ``limit-order-book`` (bench/books.py);
- in-kernel latency, memory per resting order, the reference model;
- peak RSS of the streaming door at 1M and 10M commands (each in a child process);
- with ``--compile``: the cold compile time to the first accepted order, and after editing
  a gateway file (a fresh cache directory; minutes).

    python bench/matching_bench.py [--commands 1000000] [--runs 3] [--quick] [--compile]
    python bench/matching_bench.py --door [--calls 200000]   # the per-command doors only
    python bench/matching_bench.py --compile-only   # the cold compile to the first order only

Prints a table and writes bench/results/matching.json. Never part of the test run.
"""

from __future__ import annotations

import argparse
import os
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
from derivex.core.records import (  # noqa: E402
    COMMAND_DTYPE,
    CommandKind,
    command_array,
    event_array,
)
from derivex.exchange import Exchange  # noqa: E402
from derivex.sim.flow import FlowSpec, generate  # noqa: E402
from door_costs import FlowLists, c_method_costs, typed_calls  # noqa: E402  (bench/door_costs.py, beside this)
from report import finish, machine  # noqa: E402  (bench/report.py, beside this script)

CACHE = ROOT / "bench" / ".cache"
#: the timer of the door runs: wall time, or with --cpu-time the process's CPU time (on a
#: shared, loaded machine the CPU time is what the code costs; the wall time is not)
clock = time.perf_counter


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


class EventCounter:
    """A streaming consumer that counts the events it is handed."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, view: np.ndarray) -> None:
        self.count += len(view)


class ArraySink:
    """A streaming consumer that copies every chunk into the caller's own array."""

    def __init__(self, out: np.ndarray) -> None:
        self.rows = out.view(np.uint8).reshape(-1, 64)
        self.filled = 0

    def __call__(self, view: np.ndarray) -> None:
        end = self.filled + len(view)
        self.rows[self.filled : end] = view.view(np.uint8).reshape(-1, 64)
        self.filled = end


def kernel_and_doors(setup, flow, config, runs: int, chunk: int) -> dict[str, Any]:
    """Kernel alone, ``Engine.process`` on the whole batch and the streaming door on the
    same flow, interleaved run by run (so that load changes hit all three alike)."""
    kernel, process, stream, stream_copy = [], [], [], []
    produced = 0
    for _ in range(runs):
        engine = fresh_engine(setup, config)
        engine._events = touched_events(len(flow) * 4)
        start = clock()
        produced = len(engine.process_into(flow))
        kernel.append(len(flow) / (clock() - start))
        expected_hash = engine.state_hash()
        del engine

        engine = fresh_engine(setup, config)
        start = clock()
        events = engine.process(flow)
        process.append(len(flow) / (clock() - start))
        assert len(events) == produced and engine.state_hash() == expected_hash
        del events, engine

        engine = fresh_engine(setup, config)
        list(engine.stream(flow[:1], chunk))  # the reusable chunk buffer, faulted in
        counter = EventCounter()
        start = clock()
        engine.run(flow[1:], counter, chunk)
        stream.append((len(flow) - 1) / (clock() - start))
        assert counter.count + 3 >= produced and engine.state_hash() == expected_hash

        engine = fresh_engine(setup, config)
        sink = ArraySink(touched_events(produced + 16))  # the caller's own array
        start = clock()
        engine.run(flow, sink, chunk)
        stream_copy.append(len(flow) / (clock() - start))
        assert sink.filled == produced and engine.state_hash() == expected_hash
    median = statistics.median
    return {
        "kernel_alone_commands_per_s": median(kernel),
        "kernel_alone_runs": kernel,
        "events": produced,
        "engine_process_commands_per_s": median(process),
        "engine_process_runs": process,
        "stream_commands_per_s": median(stream),
        "stream_runs": stream,
        "stream_into_caller_array_commands_per_s": median(stream_copy),
        "stream_chunk_events": chunk,
        "stream_vs_kernel": median(stream) / median(kernel),
        "stream_into_array_vs_kernel": median(stream_copy) / median(kernel),
        "process_vs_kernel": median(process) / median(kernel),
    }


SIDE_NAMES = ("buy", "sell")
TIF_NAMES = ("gtc", "ioc", "fok")


def typed_exchange(setup, flow, config, count: int, runs: int) -> dict[str, Any]:
    """``Exchange.place`` / ``cancel``, one call per command with its typed result: the C
    order methods (``derivex.door_native``) on the door, the Python methods on the door,
    and the slow path (``fast_orders = False``); the state hash after each is checked
    against the engine on the same commands."""
    from derivex.door import load_binding

    subset = flow[:count]
    lists = FlowLists(flow, count, (SIDE_NAMES, TIF_NAMES))
    reference = fresh_engine(setup, config)
    reference.process(subset)
    load_binding()  # the entry point loaded (or compiled) before any timing
    rates: dict[str, list[float]] = {"door": [], "python": [], "slow": []}
    statuses: dict[str, int] = {}
    c_methods = False
    for _ in range(runs):
        for path in ("door", "python", "slow"):
            stamps = iter([int(setup["ts_ns"][0]), *subset["ts_ns"].tolist()])
            exchange = Exchange(config, clock=stamps.__next__)
            exchange.fast_orders = path != "slow"
            if path == "python":  # the Python order methods: the C ones removed
                for name in ("place", "cancel", "amend"):
                    vars(exchange).pop(name, None)
            exchange.submit(setup.copy())
            rate, results = typed_calls(exchange, lists, clock)
            rates[path].append(rate)
            assert exchange.state_hash() == reference.state_hash(), path
            if path == "door":
                assert exchange._door is not None
                c_methods = "place" in vars(exchange)
                statuses = {}
                for result in results[:20_000]:
                    statuses[result.status] = statuses.get(result.status, 0) + 1
    binding = load_binding()
    median = statistics.median
    return {
        "exchange_door_calls_per_s": median(rates["door"]),
        "exchange_door_runs": rates["door"],
        "exchange_python_methods_calls_per_s": median(rates["python"]),
        "exchange_python_methods_runs": rates["python"],
        "exchange_slow_calls_per_s": median(rates["slow"]),
        "c_methods": c_methods,
        "binding": binding.name if binding else None,
        "calls": count,
        "statuses_first_20k": statuses,
        "method": "one Python call per command (place with time_in_force, or cancel) keeping "
        "each typed OrderResult; state hash checked against Engine.process on the same "
        "commands",
    }


def binding_calls(setup, flow, config, count: int) -> dict[str, float]:
    """The door's entry point through each binding, one call per command, without the
    Exchange wrapper (what the binding itself costs); and, to say where a call's time goes,
    the harness alone (the loop reading the same 14 list items per command, no call) and
    the native binding on NOOP commands (the call and the kernel's fixed cost per
    command, no command work)."""
    from derivex.door import BINDINGS, OrderDoor, load_binding

    out: dict[str, float] = {}
    subset = flow[:count]
    columns = [
        subset[name].tolist()
        for name in (
            "kind",
            "seq",
            "ts_ns",
            "account",
            "instrument",
            "side",
            "order_type",
            "tif",
            "flags",
            "price_ticks",
            "qty_lots",
            "label",
            "order_id",
        )
    ]
    kinds, seqs, ts, acc, ins, side, otype, tif, flags, price, qty, label, oid = columns
    start = clock()
    for k in range(count):
        row = (  # the reads only: what every door's loop pays
            kinds[k],
            seqs[k],
            ts[k],
            acc[k],
            ins[k],
            oid[k],
            side[k],
            otype[k],
            tif[k],
            flags[k],
            price[k],
            qty[k],
            label[k],
        )
    out["harness_loop_only"] = count / (clock() - start)
    native = load_binding("native")
    if native is not None:
        engine = fresh_engine(setup, config)
        door = OrderDoor(native)
        door.bind(engine)
        order, ctx, noop = native.order, door.address, int(CommandKind.NOOP)
        start = clock()
        for k in range(count):
            row = order(ctx, noop, seqs[k], ts[k], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            if row == -2:
                door.make_room(engine)
        out["native_noop_commands"] = count / (clock() - start)
    for name in BINDINGS:
        binding = load_binding(name)
        if binding is None:
            continue
        engine = fresh_engine(setup, config)
        door = OrderDoor(binding)
        door.bind(engine)
        order, ctx = binding.order, door.address
        start = clock()
        for k in range(count):
            row = order(
                ctx,
                kinds[k],
                seqs[k],
                ts[k],
                acc[k],
                ins[k],
                oid[k],
                side[k],
                otype[k],
                tif[k],
                flags[k],
                price[k],
                qty[k],
                label[k],
            )
            while row == -2:  # NEED_ROOM: a new log or event buffer
                door.make_room(engine)
                row = order(
                    ctx,
                    kinds[k],
                    seqs[k],
                    ts[k],
                    acc[k],
                    ins[k],
                    oid[k],
                    side[k],
                    otype[k],
                    tif[k],
                    flags[k],
                    price[k],
                    qty[k],
                    label[k],
                )
            assert row >= 0, "pools are sized so that no command needs growth"
        out[name] = count / (clock() - start)
        reference = fresh_engine(setup, config)
        reference.process(subset)
        assert engine.state_hash() == reference.state_hash(), name
    return out


@intrinsic
def _void_pointer(typingctx, address):
    """The int64 ``address`` as a ``void*`` (the entry point's first argument)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


def _entry_loop():
    """A compiled loop calling the door's entry point once per command (no interpreter
    between calls); built on first use (it links the entry point by address, not the
    engine: seconds)."""
    from derivex.core.entry import order_entry

    noop_kind = int(CommandKind.NOOP)

    @numba.njit(_nrt=False)
    def loop(ctx, start, c, noop):
        pointer = _void_pointer(ctx)
        for k in range(start, c.shape[1]):
            kind = noop_kind if noop else c[0, k]
            row = order_entry(
                pointer, kind, c[1, k], c[2, k], c[3, k], c[4, k], c[5, k], c[6, k], c[7, k],
                c[8, k], c[9, k], c[10, k], c[11, k], c[12, k],
            )  # fmt: skip
            if row < 0:
                return k, row
        return c.shape[1], 0

    return loop


def compiled_loop_calls(setup, flow, config, count: int, runs: int) -> dict[str, float]:
    """The entry point called from a compiled loop, on NOOP commands and on the flow: what
    a call costs without the interpreter between calls (which evicts the engine's state
    from the caches). A full log is reset in place (the rows are not kept): the cost of
    fresh buffers is not in these figures."""
    from derivex.door import OrderDoor, load_binding

    native = load_binding()
    if native is None:
        return {}
    names = (
        "kind",
        "seq",
        "ts_ns",
        "account",
        "instrument",
        "order_id",
        "side",
        "order_type",
        "tif",
        "flags",
        "price_ticks",
        "qty_lots",
        "label",
    )
    columns = np.stack([flow[name][:count].astype(np.int64) for name in names])
    loop = _entry_loop()
    from derivex.core.summary import Ctx

    out: dict[str, list[float]] = {"noop": [], "flow": []}
    for _ in range(runs):
        for name, noop in (("noop", True), ("flow", False)):
            engine = fresh_engine(setup, config)
            door = OrderDoor(native)
            door.bind(engine)
            loop(door.address, 0, columns[:, :16], noop)  # compiled before timing
            engine = fresh_engine(setup, config)
            door.bind(engine)
            door.ctx[Ctx.LOG_NEXT] = door.ctx[Ctx.CURSOR] = 0
            done = 0
            start = clock()
            while done < count:
                done, row = loop(door.address, done, columns, noop)
                assert row != -1, "pools are sized so that no command needs growth"
                if done < count:  # NEED_ROOM: reuse the log and the event buffer
                    door.ctx[Ctx.LOG_NEXT] = door.ctx[Ctx.CURSOR] = 0
            out[name].append(count / (clock() - start))
    median = statistics.median
    return {"compiled_loop_noop": median(out["noop"]), "compiled_loop_flow": median(out["flow"])}


def comparators(setup, flow, config, count: int) -> dict[str, Any]:
    """The pure-Python book and limit-order-book on the same commands (bench/books.py)."""
    from books import filled_with_self_trade_prevention, flow_lists, run_lob, run_python_book

    subset = flow[:count]
    engine = fresh_engine(setup, config)
    events = engine.process(subset)
    placed = events[(events["kind"] == 1) & (events["command"] == CommandKind.PLACE_ORDER)]
    places = int(np.sum(subset["kind"] == CommandKind.PLACE_ORDER))
    assert len(placed) == places, "every place of the flow is accepted"
    ids = placed["order_id"].tolist()
    taker_lots = int(events["qty_lots"][(events["kind"] == 3) & (events["liquidity"] == 2)].sum())
    lists = flow_lists(subset)
    python_rate, python_filled = run_python_book(lists, ids)
    # the timed book trades an account with itself; with derivex's self-trade prevention
    # (each order's account) it must fill exactly what derivex filled
    checked = filled_with_self_trade_prevention(lists, ids)
    assert checked == taker_lots, f"python book with STP filled {checked}, derivex {taker_lots}"
    lob_rate, lob_version = run_lob(lists, ids)
    return {
        "python_book_commands_per_s": python_rate,
        "python_book_filled_lots": python_filled,
        "python_book_with_self_trade_prevention_filled_lots": checked,
        "derivex_filled_lots": taker_lots,
        "lob_commands_per_s": lob_rate,
        "lob": lob_version,
        "commands": count,
    }


def export_ratio(setup, flow, config, runs: int) -> dict[str, Any]:
    """``derivex export`` (journal replay into Parquet) against the streaming replay of the
    same journal with a callback that only counts: the flow is journaled in batches of
    1,000 first."""
    import tempfile

    from derivex.export import export_journal, stream_journal
    from derivex.journal.writer import Journal

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        stamps = iter([int(setup["ts_ns"][0]), *flow["ts_ns"][::1000].tolist()])
        exchange = Exchange(config, clock=stamps.__next__, journal=Journal(directory, fsync="none"))
        exchange.submit(setup.copy())
        for start in range(0, len(flow), 1000):
            exchange.submit(flow[start : start + 1000].copy())
        assert exchange.journal is not None
        exchange.journal.close()
        replay, export = [], []
        for run in range(runs):
            counter = EventCounter()
            start = time.perf_counter()
            stream_journal(directory, lambda commands, view, c=counter: c(view))
            replay.append(len(flow) / (time.perf_counter() - start))
            start = time.perf_counter()
            stats = export_journal(directory, Path(tmp) / f"out{run}")
            export.append(len(flow) / (time.perf_counter() - start))
            out["events"] = stats.events
            out["parquet_bytes"] = sum(
                f.stat().st_size for f in (Path(tmp) / f"out{run}").iterdir()
            )
    median = statistics.median
    out.update(
        {
            "stream_replay_commands_per_s": median(replay),
            "export_commands_per_s": median(export),
            "export_vs_stream_replay": median(export) / median(replay),
        }
    )
    return out


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_child(commands: int, options: int, chunk: int) -> dict[str, Any]:
    """(In a child process.) Peak RSS of the streaming door over ``commands`` commands,
    against state + commands + one chunk. The flow is generated by another child and read
    from bench/.cache, so the generator's memory is not counted here."""
    idle_kib = _status_kib("VmRSS")
    spec = FlowSpec(commands=commands, options=options)
    path = CACHE / f"flow-{commands}-{options}-{spec.accounts}-{spec.seed}.raw"
    setup_path = path.with_suffix(".setup.raw")
    setup = np.fromfile(setup_path, dtype=np.uint8).view(COMMAND_DTYPE)
    flow = np.fromfile(path, dtype=np.uint8).view(COMMAND_DTYPE)
    config = config_for(commands, options)
    engine = fresh_engine(setup, config)
    state_bytes = int(engine.arena.nbytes)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    before_kib = _status_kib("VmRSS")
    counter = EventCounter()
    start = time.perf_counter()
    engine.run(flow, counter, chunk)
    seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM")
    budget = state_bytes + flow.nbytes + chunk * 64
    grown_state = int(engine.arena.nbytes)
    return {
        "commands": commands,
        "events": counter.count,
        "seconds": seconds,
        "peak_rss_bytes": peak_kib * 1024,
        "rss_before_run_bytes": before_kib * 1024,
        "interpreter_idle_rss_bytes": idle_kib * 1024,
        "state_bytes_start": state_bytes,
        "state_bytes_end": grown_state,
        "commands_bytes": int(flow.nbytes),
        "chunk_bytes": chunk * 64,
        "budget_bytes": budget,
        "peak_minus_idle_vs_budget": (peak_kib - idle_kib)
        * 1024
        / max(budget, grown_state + flow.nbytes + chunk * 64),
    }


def generate_child(commands: int, options: int) -> None:
    """(In a child process.) Generate the flow and write it raw to bench/.cache."""
    spec = FlowSpec(commands=commands, options=options)
    path = CACHE / f"flow-{commands}-{options}-{spec.accounts}-{spec.seed}.raw"
    if path.exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    setup, flow = generate(spec, config_for(commands, options))
    setup.view(np.uint8).tofile(path.with_suffix(".setup.raw"))
    flow.view(np.uint8).tofile(str(path) + ".tmp")
    Path(str(path) + ".tmp").rename(path)


def peak_rss(commands: int, options: int, chunk: int, timeout: float) -> dict[str, Any]:
    """Generate (cached) and measure in child processes, each bounded by ``timeout``."""
    import json
    import subprocess

    script = str(Path(__file__).resolve())
    for mode in ("--generate-child", "--rss-child"):
        done = subprocess.run(
            [sys.executable, script, mode, str(commands), str(options), str(chunk)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_times(timeout: float) -> dict[str, Any]:
    """Cold compile to the first accepted order (a fresh cache directory), then the same
    after editing a gateway file in a copy of the package (must reuse every kernel): the
    wall time the child measured and its CPU time (user + system: the machine is shared,
    so CPU time is the figure to compare between runs)."""
    import resource
    import shutil
    import subprocess
    import tempfile

    first_order = (
        "import time; t = time.perf_counter(); from derivex import Exchange; "
        "ex = Exchange(clock=lambda: 1_800_000_000_000_000_000); "
        "perp = ex.add_perpetual('BTC', tick_size_ticks=50); "
        "ex.set_index('BTC', [(1, 1_800_000_000_000_000_000, 10_000_000)]); "
        "a = ex.create_account(); ex.deposit(a, 10**12); "
        "r = ex.place(a, perp, 'buy', 1, 9_950_000); assert r.status == 'resting', r; "
        "print(round(time.perf_counter() - t, 2))"
    )
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "cache"), "PYTHONPATH": str(source)}
        for label in ("cold", "warm", "after_gateway_edit"):
            if label == "after_gateway_edit":
                server = source / "derivex" / "gateway" / "server.py"
                server.write_text(server.read_text() + "\n# edited\n")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(
                [sys.executable, "-c", first_order],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[f"{label}_first_order_s"] = (
                float(done.stdout.strip().splitlines()[-1])
                if done.returncode == 0
                else done.stderr[-500:]
            )
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            out[f"{label}_first_order_cpu_s"] = round(cpu, 2)
    return out


def compile_only() -> None:
    """``compile_times`` alone, with the machine load before and after."""
    results: dict[str, Any] = {"machine": machine(), "compile": compile_times(timeout=3600)}
    table = Table(title="cold compile to the first accepted order")
    for column in ("measure", "value"):
        table.add_column(column)
    for key, value in results["compile"].items():
        table.add_row(key, str(value))
    finish(results, table, Console(), "matching-compile", False)


def door_only(calls: int, runs: int) -> None:
    """The per-command doors beside their baselines, in one run, on the single-book flow:
    typed ``Exchange`` calls (C methods, Python methods, slow path), the bare entry through
    each binding, the harness alone, NOOP commands, the pure-Python book and
    limit-order-book; and the kernel alone on the same commands."""
    console = Console()
    results: dict[str, Any] = {"machine": machine(), "runs": runs, "calls": calls}
    spec = FlowSpec(commands=calls)
    setup, flow = load_flow(spec)
    config = config_for(calls, 0)
    kernel = kernel_and_doors(setup, flow, config, runs, 1 << 16)["kernel_alone_commands_per_s"]
    typed = typed_exchange(setup, flow, config, calls, runs)
    each = [binding_calls(setup, flow, config, calls) for _ in range(runs)]
    bindings = {name: statistics.median(run[name] for run in each) for name in each[0]}
    compiled = compiled_loop_calls(setup, flow, config, calls, runs)
    costs = c_method_costs(setup, flow, config, calls, runs, clock, (SIDE_NAMES, TIF_NAMES))
    if costs:  # the default clock's stamps differ from the flow's, its outcomes must not
        assert costs["c_methods_default_clock_statuses_first_20k"] == typed["statuses_first_20k"]
    books = comparators(setup, flow, config, calls)
    results.update(
        timer="process CPU time" if clock is time.process_time else "wall time",
        kernel_alone_commands_per_s=kernel,
        **typed,
        binding_calls_per_s=bindings,
        compiled_loop_calls_per_s=compiled,
        c_method_costs=costs,
        **books,
    )
    timer = "CPU time" if clock is time.process_time else "wall time"
    table = Table(title=f"per-command doors ({calls:,} commands, single book, {timer})")
    for column in ("door", "calls/s", "ns per call", "vs kernel alone"):
        table.add_column(column)
    rows = [
        ("kernel alone (one batch)", kernel),
        (
            f"Exchange.place/cancel, C methods ({typed['binding']})",
            typed["exchange_door_calls_per_s"],
        ),
        (
            "Exchange.place/cancel, C methods, default clock",
            costs.get("c_methods_default_clock_calls_per_s"),
        ),
        ("Exchange.place/cancel, Python methods", typed["exchange_python_methods_calls_per_s"]),
        ("Exchange.place/cancel, slow path", typed["exchange_slow_calls_per_s"]),
        *((f"bare entry / {name}", rate) for name, rate in bindings.items()),
        *((f"entry from a compiled loop / {name}", rate) for name, rate in compiled.items()),
        ("typed loop alone (no call)", costs.get("loop_alone_calls_per_s")),
        (
            "C methods, entry returns at once",
            costs.get("c_methods_entry_returns_at_once_calls_per_s"),
        ),
        (
            "C methods, entry returns at once, default clock",
            costs.get("c_methods_entry_returns_at_once_default_clock_calls_per_s"),
        ),
        ("pure-Python dict-and-deque book", books["python_book_commands_per_s"]),
        (books["lob"], books["lob_commands_per_s"]),
    ]
    for name, rate in rows:
        if rate:
            table.add_row(name, f"{rate / 1e6:.3f} M", f"{1e9 / rate:.0f}", f"{rate / kernel:.3f}")
    finish(results, table, console, "matching-door", False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--compile", action="store_true", help="also time cold compiles")
    parser.add_argument(
        "--compile-only",
        action="store_true",
        help="only the cold compile to the first order (writes results/matching-compile.json)",
    )
    parser.add_argument("--big", type=int, default=10_000_000, help="commands of the RSS run")
    parser.add_argument("--chunk", type=int, default=1 << 16, help="events per stream chunk")
    parser.add_argument(
        "--door",
        action="store_true",
        help="only the per-command doors and their baselines on the single book "
        "(writes results/matching-door.json)",
    )
    parser.add_argument("--calls", type=int, default=200_000, help="commands of --door")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the --door runs by the process's CPU time instead of the wall clock "
        "(a shared, loaded machine)",
    )
    parser.add_argument("--generate-child", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_child:
        generate_child(*args.generate_child[:2])
        return
    if args.rss_child:
        import json

        print(json.dumps(rss_child(*args.rss_child)))
        return
    if args.door:
        if args.cpu_time:
            import books

            global clock
            clock = books.clock = time.process_time
        door_only(args.calls, args.runs)
        return
    if args.compile_only:
        compile_only()
        return
    commands = 50_000 if args.quick else args.commands
    console = Console()
    results: dict[str, Any] = {"machine": machine(), "runs": args.runs, "commands": commands}
    table = Table(title=f"matching benchmark ({commands:,} commands, median of {args.runs})")
    for column in ("workload", "measure", "value", "vs kernel alone"):
        table.add_column(column)
    for label, options in (("single book", 0), ("1 perpetual + 200 options", 200)):
        spec = FlowSpec(commands=commands, options=options)
        setup, flow = load_flow(spec)
        config = config_for(commands, options)
        doors = kernel_and_doors(setup, flow, config, args.runs, args.chunk)
        kernel = doors["kernel_alone_commands_per_s"]
        calls = min(200_000, commands)
        typed = typed_exchange(setup, flow, config, calls, args.runs)
        bindings = binding_calls(setup, flow, config, calls)
        books = comparators(setup, flow, config, calls) if options == 0 else {}
        exported = export_ratio(setup, flow, config, args.runs) if options == 0 else {}
        lat = latency(setup, flow, config)
        reference = reference_throughput(setup, flow, config, min(20_000, commands))
        entry = {
            **doors,
            **typed,
            "binding_calls_per_s": bindings,
            **books,
            "export": exported,
            "in_kernel_latency": lat,
            "reference_model_commands_per_s": reference,
        }
        results[label] = entry

        def row(
            measure: str, rate: float, unit: str = "commands/s", label=label, kernel=kernel
        ) -> None:
            table.add_row(label, f"{measure} {unit}", f"{rate / 1e6:.3f} M", f"{rate / kernel:.2f}")

        row("kernel alone", kernel)
        row("Engine.process, one batch", doors["engine_process_commands_per_s"])
        row("Engine.run (stream), events to a callback", doors["stream_commands_per_s"])
        row(
            "Engine.run, events into the caller's array",
            doors["stream_into_caller_array_commands_per_s"],
        )
        row(
            f"Exchange.place/cancel via the door ({typed['binding']})",
            typed["exchange_door_calls_per_s"],
            "calls/s",
        )
        row(
            "Exchange.place/cancel, Python methods",
            typed["exchange_python_methods_calls_per_s"],
            "calls/s",
        )
        row("Exchange.place/cancel, slow path", typed["exchange_slow_calls_per_s"], "calls/s")
        for name, rate in bindings.items():
            if name == "harness_loop_only":
                row("harness: the loop's list reads alone", rate, "loops/s")
            elif name == "native_noop_commands":
                row("native entry, NOOP commands (fixed cost)", rate, "calls/s")
            else:
                row(f"bare entry point via {name}", rate, "calls/s")
        if books:
            row("pure-Python dict-and-deque book", books["python_book_commands_per_s"])
            if books["lob_commands_per_s"]:
                row(books["lob"], books["lob_commands_per_s"])
        if exported:
            row("journal replay, streamed", exported["stream_replay_commands_per_s"])
            row("derivex export (Parquet)", exported["export_commands_per_s"])
            table.add_row(
                label, "export / streamed replay", "", f"{exported['export_vs_stream_replay']:.2f}"
            )
        table.add_row(
            label,
            "in-kernel latency p50/p99/p99.9",
            f"{lat['p50_ns']:.0f} / {lat['p99_ns']:.0f} / {lat['p999_ns']:.0f} ns",
            "",
        )
        row("reference model", reference)
    memory = memory_per_order(100_000 if args.quick else 1_000_000)
    results["memory"] = memory
    table.add_row(
        "memory",
        "whole state bytes / resting order",
        f"{memory['all_state_bytes_per_resting_order']:.1f}",
        "",
    )
    rss = {}
    for size in (commands,) if args.quick else (commands, args.big):
        rss[str(size)] = peak_rss(size, 0, args.chunk, timeout=900)
        got = rss[str(size)]
        if "error" not in got:
            table.add_row(
                "peak RSS",
                f"stream {size:,} commands",
                f"{got['peak_rss_bytes'] / 2**20:,.0f} MiB",
                f"(peak - idle) / budget {got['peak_minus_idle_vs_budget']:.2f}",
            )
    results["peak_rss"] = rss
    if args.compile:
        results["compile"] = compile_times(timeout=1800)
        for key, value in results["compile"].items():
            table.add_row("compile", key, str(value), "")
    finish(results, table, console, "matching", args.quick)


if __name__ == "__main__":
    main()
