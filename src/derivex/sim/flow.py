"""Seeded order-flow generator for benchmarks and determinism tests.

The flow mixes passive limit orders near the mid, cancels of live orders and aggressive
orders that cross several levels. To name live orders in cancels, the generator runs the
flow through an engine as it writes it (order ids are deterministic), so replaying the
returned commands on a fresh engine with the same setup reproduces the same session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import (
    CommandKind,
    EventKind,
    InstrumentKind,
    OptionType,
    OrderType,
    TimeInForce,
    command_array,
    concat_commands,
)

START_NS = 1_798_761_600_000_000_000


@dataclass(frozen=True)
class FlowSpec:
    commands: int = 1_000_000
    options: int = 0  # 0: a single perpetual book; N: one perpetual + N options
    accounts: int = 1_000
    passive: float = 0.60
    cancel: float = 0.30  # the rest is aggressive
    seed: int = 7
    chunk: int = 2_000


def setup_commands(spec: FlowSpec) -> np.ndarray:
    """Instruments, accounts and deposits: the prefix every replay starts with."""
    records = []
    perp = command_array(1)
    perp["kind"] = CommandKind.ADD_INSTRUMENT
    perp["instrument_kind"] = InstrumentKind.PERPETUAL
    perp["underlying"] = 1
    perp["tick_size_ticks"] = 50
    perp["min_trade_lots"] = 1
    perp["contract_value_units"] = 1
    perp["maker_fee_ppm"] = -100
    perp["taker_fee_ppm"] = 500
    records.append(perp)
    for index in range(spec.options):
        option = command_array(1)
        option["kind"] = CommandKind.ADD_INSTRUMENT
        option["instrument_kind"] = InstrumentKind.OPTION
        option["option_type"] = OptionType.CALL if index % 2 == 0 else OptionType.PUT
        option["underlying"] = 1
        option["expiry_ts_ns"] = START_NS + (1 + index % 4) * 7 * 86_400 * 10**9
        option["strike_ticks"] = 5_000_000 + (index // 8) * 100_000
        option["tick_size_ticks"] = 5
        option["min_trade_lots"] = 1
        option["contract_value_units"] = 1
        option["maker_fee_ppm"] = 200
        option["taker_fee_ppm"] = 300
        records.append(option)
    accounts = command_array(spec.accounts)
    accounts["kind"] = CommandKind.CREATE_ACCOUNT
    deposits = command_array(spec.accounts)
    deposits["kind"] = CommandKind.DEPOSIT
    deposits["account"] = np.arange(3, 3 + spec.accounts)
    deposits["amount_units"] = 10**15
    setup = concat_commands([*records, accounts, deposits])
    setup["seq"] = np.arange(1, len(setup) + 1)
    setup["ts_ns"] = START_NS
    return setup


def generate(spec: FlowSpec, config: EngineConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(setup, flow)`` command arrays. Cost: one pass of the flow through an engine
    in chunks, plus O(commands) Python bookkeeping."""
    rng = np.random.default_rng(spec.seed)
    engine = Engine(
        config
        or EngineConfig(
            risk_checks=False, max_orders_per_book=10_000_000, max_open_orders_per_account=1_000_000
        )
    )
    setup = setup_commands(spec)
    engine.process(setup)
    instruments = 1 + spec.options
    mids = np.empty(instruments, dtype=np.int64)
    ticks = np.empty(instruments, dtype=np.int64)
    mids[0], ticks[0] = 10_000_000, 50
    for index in range(1, instruments):
        mids[index], ticks[index] = 200_000 + 5 * (index * 997 % 20_000), 5
    live: list[list[int]] = [[] for _ in range(instruments)]
    live_index: dict[int, tuple[int, int]] = {}
    owner_of: dict[int, int] = {}
    pending: dict[int, int] = {}
    flow = command_array(spec.commands)
    seq = int(setup["seq"][-1])

    def forget(order_id: int) -> None:
        where = live_index.pop(order_id, None)
        if where is None:
            return
        book, position = where
        orders = live[book]
        last = orders.pop()
        if position < len(orders):
            orders[position] = last
            live_index[last] = (book, position)

    for start in range(0, spec.commands, spec.chunk):
        stop = min(spec.commands, start + spec.chunk)
        chunk = flow[start:stop]
        size = stop - start
        actions = rng.random(size)
        # the perpetual gets a third of a multi-instrument flow, the options the rest
        books = (
            np.where(rng.random(size) < 0.34, 0, rng.integers(1, instruments, size))
            if spec.options
            else np.zeros(size, np.int64)
        )
        sides = rng.integers(0, 2, size)
        offsets = rng.integers(1, 21, size)
        quantities = rng.integers(1, 11, size)
        owners = rng.integers(3, 3 + spec.accounts, size)
        for k in range(size):
            book = int(books[k])
            record = chunk[k]
            record["account"] = owners[k]
            record["instrument"] = book
            record["side"] = sides[k]
            tick = ticks[book]
            if actions[k] < spec.passive or (
                actions[k] < spec.passive + spec.cancel and not live[book]
            ):
                record["kind"] = CommandKind.PLACE_ORDER
                away = offsets[k] * tick
                record["price_ticks"] = mids[book] - away if sides[k] == 0 else mids[book] + away
                record["qty_lots"] = quantities[k]
            elif actions[k] < spec.passive + spec.cancel:
                orders = live[book]
                order_id = orders[int(rng.integers(0, len(orders)))]
                owner = owner_of[order_id]
                record["kind"] = CommandKind.CANCEL_ORDER
                record["account"] = owner
                record["order_id"] = order_id
            else:
                record["kind"] = CommandKind.PLACE_ORDER
                record["tif"] = TimeInForce.IOC
                record["order_type"] = OrderType.LIMIT
                reach = int(offsets[k] % 6 + 2) * tick
                record["price_ticks"] = mids[book] + reach if sides[k] == 0 else mids[book] - reach
                record["qty_lots"] = int(quantities[k]) * 8
            if rng.random() < 0.01:
                mids[book] += tick if rng.random() < 0.5 else -tick
        chunk["seq"] = np.arange(seq + 1, seq + 1 + size)
        chunk["ts_ns"] = START_NS + chunk["seq"].astype(np.int64) * 1_000
        seq += size
        events = engine.process(chunk)
        accepted = events[
            (events["kind"] == EventKind.ACCEPTED) & (events["command"] == CommandKind.PLACE_ORDER)
        ]
        for event in accepted:
            order_id = int(event["order_id"])
            owner_of[order_id] = int(event["account"])
        for event in events:
            kind = event["kind"]
            order_id = int(event["order_id"])
            if kind == EventKind.ACCEPTED and event["command"] == CommandKind.PLACE_ORDER:
                pending[order_id] = int(event["instrument"])
            elif kind in (EventKind.CANCELLED, EventKind.EXPIRED) or (
                kind == EventKind.FILLED and int(event["remaining_lots"]) == 0
            ):
                pending.pop(order_id, None)
                forget(order_id)
        for order_id, book in pending.items():
            live_index[order_id] = (book, len(live[book]))
            live[book].append(order_id)
        pending.clear()
    return setup, flow
