"""Order books that bench/matching_bench.py runs beside derivex on the same flow, one Python
call per command: a pure-Python dict-and-deque book, and ``limit-order-book`` (PyPI, C++
with Python bindings; 2.0.0 is its last release for Python 3.11, ``import
limit_order_book``). Neither has fees, margin, gas or events: they match and keep a book,
which is the part of derivex's work they can be compared with."""

from __future__ import annotations

import heapq
import time
from collections import deque
from typing import Any

import numpy as np

from derivex.core.records import CommandKind, TimeInForce

#: the timer of the runs (matching_bench --cpu-time sets time.process_time)
clock = time.perf_counter


class PythonBook:
    """Price-time priority with a dict of price -> deque of [order id, lots] per side and
    a heap of prices per side (lazily cleaned). Trades at the resting price."""

    def __init__(self) -> None:
        self.levels: list[dict[int, deque]] = [{}, {}]  # bids, asks
        self.prices: list[list[int]] = [[], []]  # heaps: -bid, ask
        self.where: dict[int, tuple[int, int]] = {}  # order id -> (side, price)
        self.owner: dict[int, int] = {}  # order id -> account (only orders placed with one)
        self.filled = 0
        self.trades = 0

    def _best(self, side: int) -> int | None:
        heap, levels = self.prices[side], self.levels[side]
        while heap:
            price = -heap[0] if side == 0 else heap[0]
            if price in levels:
                return price
            heapq.heappop(heap)
        return None

    def place(
        self, order_id: int, side: int, price: int, lots: int, rest: bool, account: int = -1
    ) -> int:
        """Match, then rest the remainder if ``rest``; returns the lots filled. With an
        ``account``, derivex's default self-trade prevention (CANCEL_RESTING, ACCOUNT
        scope): a resting order of the same account that the match reaches is cancelled
        instead of traded with (the timed runs pass none)."""
        other = 1 - side
        levels = self.levels[other]
        filled = 0
        while lots:
            best = self._best(other)
            if best is None or (best > price if side == 0 else best < price):
                break
            queue = levels[best]
            while queue and lots:
                head = queue[0]
                if account >= 0 and self.owner.get(head[0]) == account:
                    queue.popleft()
                    del self.where[head[0]]
                    continue
                take = min(lots, head[1])
                head[1] -= take
                lots -= take
                filled += take
                self.trades += 1
                if not head[1]:
                    queue.popleft()
                    del self.where[head[0]]
            if not queue:
                del levels[best]
        if lots and rest:
            own = self.levels[side]
            queue = own.get(price)
            if queue is None:
                queue = own[price] = deque()
                heapq.heappush(self.prices[side], -price if side == 0 else price)
            queue.append([order_id, lots])
            self.where[order_id] = (side, price)
            if account >= 0:
                self.owner[order_id] = account
        self.filled += filled
        return filled

    def cancel(self, order_id: int) -> bool:
        found = self.where.pop(order_id, None)
        if found is None:
            return False
        side, price = found
        queue = self.levels[side][price]
        for index, entry in enumerate(queue):
            if entry[0] == order_id:
                del queue[index]
                break
        if not queue:
            del self.levels[side][price]
        return True


def flow_lists(flow: np.ndarray) -> dict[str, list[int]]:
    """The flow's fields as Python lists (what a Python caller would hold)."""
    names = ("kind", "account", "instrument", "side", "tif", "price_ticks", "qty_lots")
    return {name: flow[name].tolist() for name in names} | {"order_id": flow["order_id"].tolist()}


def run_python_book(lists: dict[str, list[int]], placed_ids: list[int]) -> tuple[float, int]:
    """The flow through ``PythonBook``; ``placed_ids``: derivex's id of each place in
    order (so that the flow's cancels name the same orders). Returns (commands/s, filled)."""
    book = PythonBook()
    kinds, sides, prices = lists["kind"], lists["side"], lists["price_ticks"]
    lots, tifs, targets = lists["qty_lots"], lists["tif"], lists["order_id"]
    place_kind, ioc = int(CommandKind.PLACE_ORDER), int(TimeInForce.IOC)
    ids = iter(placed_ids)
    start = clock()
    for k in range(len(kinds)):
        if kinds[k] == place_kind:
            book.place(next(ids), sides[k], prices[k], lots[k], tifs[k] != ioc)
        else:
            book.cancel(targets[k])
    return len(kinds) / (clock() - start), book.filled


def filled_with_self_trade_prevention(lists: dict[str, list[int]], placed_ids: list[int]) -> int:
    """Lots the flow fills through ``PythonBook`` with each order's account (self-trade
    prevention as derivex's default); untimed: it checks derivex's fills exactly."""
    book = PythonBook()
    place_kind, ioc = int(CommandKind.PLACE_ORDER), int(TimeInForce.IOC)
    ids = iter(placed_ids)
    for k, kind in enumerate(lists["kind"]):
        if kind == place_kind:
            side, price, lots = lists["side"][k], lists["price_ticks"][k], lists["qty_lots"][k]
            book.place(next(ids), side, price, lots, lists["tif"][k] != ioc, lists["account"][k])
        else:
            book.cancel(lists["order_id"][k])
    return book.filled


def run_lob(lists: dict[str, list[int]], placed_ids: list[int]) -> tuple[float, str]:
    """The flow through ``limit_order_book.LimitOrderBook`` (one call per command; an IOC
    sweep is a limit order cancelled right after, the book's only way to express one).
    Returns (commands/s, version) or (0, why not)."""
    try:
        from importlib.metadata import version

        from limit_order_book import LimitOrderBook
    except ImportError as error:
        return 0.0, f"not installed ({error})"
    book: Any = LimitOrderBook()
    kinds, sides, prices = lists["kind"], lists["side"], lists["price_ticks"]
    lots, tifs, targets = lists["qty_lots"], lists["tif"], lists["order_id"]
    place_kind, ioc = int(CommandKind.PLACE_ORDER), int(TimeInForce.IOC)
    ids = iter(placed_ids)
    buy, sell, cancel, has = book.limit_buy, book.limit_sell, book.cancel, book.has
    start = clock()
    for k in range(len(kinds)):
        if kinds[k] == place_kind:
            order_id = next(ids)
            (sell if sides[k] else buy)(order_id, lots[k], prices[k])
            if tifs[k] == ioc and has(order_id):
                cancel(order_id)
        elif has(targets[k]):
            cancel(targets[k])
    rate = len(kinds) / (clock() - start)
    return rate, f"limit-order-book {version('limit-order-book')}"
