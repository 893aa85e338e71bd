"""Where a per-command ``Exchange.place`` / ``cancel`` call's time goes, for
``matching_bench.py --door``: the same loop over the single-book flow as its typed row,

- with the calls left out (the caller's loop alone: the same list reads, one tuple kept
  per command);
- through the C order methods with the entry point bound to a compiled function that
  returns at once (the C methods' own cost: arguments, the door's checks, clock, seq,
  ts_ns, batches and the result), with the venue's clock an iterator's ``__next__`` (as
  the typed row, whose stamps must be the flow's) and with the default ``time.time_ns``
  (read in C);
- through the C order methods with the real entry point and the default clock (the typed
  row's counterpart for a caller who passes no clock; its state differs only by the
  stamps, so its statuses are compared with the typed row's instead of its state hash).

Timed by ``matching_bench.clock`` (wall or process CPU time). Never part of the test run.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types

from derivex import door_native
from derivex.core.records import CommandKind
from derivex.exchange import Exchange

_ARGUMENTS = (types.voidptr, *([types.int64] * 13))


@numba.cfunc(types.int64(*_ARGUMENTS))
def _returns_at_once(ctx, kind, seq, ts, account, instrument, order_id, side, order_type,
                     tif, flags, price, qty, label):  # fmt: skip
    """The entry point's signature, no work: row 0 (every result reads the log's row 0)."""
    return 0


class FlowLists:
    """The single-book flow as the Python lists a typed caller's loop reads: kinds,
    accounts, instruments, side and time in force names, lots, prices, cancel targets."""

    def __init__(self, flow: np.ndarray, count: int, names: tuple[tuple[str, ...], ...]):
        side_names, tif_names = names
        subset = flow[:count]
        self.count = count
        self.kinds = subset["kind"].tolist()
        self.accounts = subset["account"].tolist()
        self.instruments = subset["instrument"].tolist()
        self.sides = [side_names[s] for s in subset["side"].tolist()]
        self.tifs = [tif_names[t] for t in subset["tif"].tolist()]
        self.prices, self.lots = subset["price_ticks"].tolist(), subset["qty_lots"].tolist()
        self.targets = subset["order_id"].tolist()

    def columns(self) -> tuple[list[Any], ...]:
        """kinds, accounts, instruments, sides, lots, prices, tifs, targets (a loop's
        locals)."""
        return (
            *(self.kinds, self.accounts, self.instruments, self.sides),
            *(self.lots, self.prices, self.tifs, self.targets),
        )


def typed_calls(
    exchange: Exchange, lists: FlowLists, clock: Callable[[], float]
) -> tuple[float, list[Any]]:
    """The typed row's loop: one ``place`` (with ``time_in_force``) or ``cancel`` call per
    command, each result kept; returns calls per second and the results."""
    kinds, accounts, instruments, sides, lots, prices, tifs, targets = lists.columns()
    place_kind, count = int(CommandKind.PLACE_ORDER), lists.count
    place, cancel = exchange.place, exchange.cancel
    results: list[Any] = []
    keep = results.append
    start = clock()
    for k in range(count):
        if kinds[k] == place_kind:
            keep(
                place(
                    accounts[k],
                    instruments[k],
                    sides[k],
                    lots[k],
                    prices[k],
                    time_in_force=tifs[k],
                )
            )
        else:
            keep(cancel(accounts[k], targets[k]))
    return count / (clock() - start), results


def loop_alone(lists: FlowLists, clock: Callable[[], float]) -> float:
    """``typed_calls``' loop with the calls left out (the same list reads, one tuple kept
    per command); returns iterations per second."""
    kinds, accounts, instruments, sides, lots, prices, tifs, targets = lists.columns()
    place_kind, count = int(CommandKind.PLACE_ORDER), lists.count
    results: list[Any] = []
    keep = results.append
    start = clock()
    for k in range(count):
        if kinds[k] == place_kind:
            keep((accounts[k], instruments[k], sides[k], lots[k], prices[k], tifs[k]))
        else:
            keep((accounts[k], targets[k]))
    return count / (clock() - start)


def c_method_costs(
    setup: np.ndarray,
    flow: np.ndarray,
    config: Any,
    count: int,
    runs: int,
    clock: Callable[[], float],
    names: tuple[tuple[str, ...], tuple[str, ...]],
) -> dict[str, Any]:
    """Calls per second of each variant (median of ``runs``); ``names``: the side and time
    in force names by code (``matching_bench.SIDE_NAMES``, ``TIF_NAMES``)."""
    from derivex.core import entry
    from derivex.door import load_binding

    native = door_native.load()
    if native is None or load_binding("native") is None:
        return {}
    lists = FlowLists(flow, count, names)
    first_ts = int(setup["ts_ns"][0])

    def venue(default_clock: bool) -> Exchange:
        stamps = itertools.count(first_ts, 1_000)
        exchange = Exchange(config, clock=None if default_clock else stamps.__next__)
        exchange.submit(setup.copy())
        assert "place" in vars(exchange), "the C order methods are installed"
        return exchange

    def calls(exchange: Exchange) -> tuple[float, dict[str, int]]:
        rate, results = typed_calls(exchange, lists, clock)
        statuses: dict[str, int] = {}
        for result in results[:20_000]:
            statuses[result.status] = statuses.get(result.status, 0) + 1
        return rate, statuses

    real, stub = int(entry.order_entry.address), int(_returns_at_once.address)
    rates: dict[str, list[float]] = {
        "loop": [],
        "stub_iterator_clock": [],
        "stub_default_clock": [],
        "default_clock": [],
    }
    statuses: dict[str, int] = {}
    for _ in range(runs):
        rates["loop"].append(loop_alone(lists, clock))
        for name, default_clock in (("stub_iterator_clock", False), ("stub_default_clock", True)):
            exchange = venue(default_clock)
            exchange.place(
                lists.accounts[0], lists.instruments[0], "buy", 1, 1
            )  # the door made, bound
            native.bind_entry(stub)
            try:
                rates[name].append(calls(exchange)[0])
            finally:
                native.bind_entry(real)
        rate, statuses = calls(venue(True))
        rates["default_clock"].append(rate)
    median = statistics.median
    return {
        "loop_alone_calls_per_s": median(rates["loop"]),
        "c_methods_entry_returns_at_once_calls_per_s": median(rates["stub_iterator_clock"]),
        "c_methods_entry_returns_at_once_default_clock_calls_per_s": median(
            rates["stub_default_clock"]
        ),
        "c_methods_default_clock_calls_per_s": median(rates["default_clock"]),
        "c_methods_default_clock_statuses_first_20k": statuses,
    }


__all__ = ["FlowLists", "c_method_costs", "loop_alone", "typed_calls"]
