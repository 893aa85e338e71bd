"""Allocating the state's pools and growing them between batches (never inside a kernel).

A grown state is indistinguishable from the old one in ``canonical``/``state_hash``:
capacities change, slots and ids do not. Cost: O(initial capacities) to allocate; O(size of
the grown pools) to grow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from derivex.core.config import (
    MAX_INDEX_SOURCES,
    P_MAX_ACCOUNTS,
    P_MAX_INSTRUMENTS,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
    EngineConfig,
)
from derivex.core.escrow import transfer_table
from derivex.core.layout import (
    ACCOUNT_I4_FIELDS,
    ACCOUNT_I8_FIELDS,
    COUNTER_COUNT,
    INSTRUMENT_I4_FIELDS,
    INSTRUMENT_I8_FIELDS,
    LEVEL_I4_FIELDS,
    LEVEL_I8_FIELDS,
    LINK_I4_FIELDS,
    NIL,
    ORDER_I4_FIELDS,
    ORDER_I8_FIELDS,
    POSITION_I4_FIELDS,
    POSITION_I8_FIELDS,
    RISK_FIELDS,
    UNDERLYING_FIELDS,
    Account4,
    Counter,
    Pos4,
)
from derivex.core.link_index import rebuild_link_index
from derivex.core.mmp_layout import mmp_arrays
from derivex.core.records import SYSTEM_ACCOUNTS
from derivex.core.state import State
from derivex.core.trigger_layout import (
    BOOK_FIELDS,
    META_FIELDS,
    NO_ABOVE,
    SOURCES,
    TRIGGER_FIELDS,
    TrigBook,
    TrigMeta,
)


def _pool(fields: int, capacity: int, dtype: Any, fill: int = 0) -> np.ndarray:
    return np.full((capacity, fields), fill, dtype=dtype)


def allocate(config: EngineConfig) -> State:
    """A fresh state with the system accounts created. Cost: O(initial capacities)."""
    accounts, instruments = config.initial_accounts, config.initial_instruments
    orders, levels, positions = (
        config.initial_orders,
        config.initial_levels,
        config.initial_positions,
    )
    per_side = config.initial_levels_per_side
    scenarios = len(config.scenarios)
    table = 1 << max(4, (2 * positions - 1).bit_length())
    counters = np.zeros(COUNTER_COUNT, dtype=np.int64)
    counters[Counter.ACCOUNT_HWM] = SYSTEM_ACCOUNTS
    counters[Counter.ORDER_FREE_HEAD] = NIL
    state = State(
        params=config.params(),
        counters=counters,
        acc_i8=_pool(ACCOUNT_I8_FIELDS, accounts, np.int64),
        acc_i4=_pool(ACCOUNT_I4_FIELDS, accounts, np.int32),
        ins_i8=_pool(INSTRUMENT_I8_FIELDS, instruments, np.int64),
        ins_i4=_pool(INSTRUMENT_I4_FIELDS, instruments, np.int32),
        pos_i8=_pool(POSITION_I8_FIELDS, positions, np.int64),
        pos_i4=_pool(POSITION_I4_FIELDS, positions, np.int32, NIL),
        pos_free=np.zeros(positions, dtype=np.int32),
        hash_key=np.zeros(table, dtype=np.int64),
        hash_val=np.full(table, NIL, dtype=np.int32),
        ord_i8=_pool(ORDER_I8_FIELDS, orders, np.int64),
        ord_i4=_pool(ORDER_I4_FIELDS, orders, np.int32, NIL),
        ord_label=np.zeros(orders, dtype=np.uint64),
        lvl_i8=_pool(LEVEL_I8_FIELDS, levels, np.int64),
        lvl_i4=_pool(LEVEL_I4_FIELDS, levels, np.int32, NIL),
        lvl_free=np.zeros(levels, dtype=np.int32),
        ladder_price=np.zeros((instruments * 2, per_side), dtype=np.int64),
        ladder_level=np.full((instruments * 2, per_side), NIL, dtype=np.int32),
        ladder_len=np.zeros(instruments * 2, dtype=np.int32),
        scan_used=np.zeros(accounts, dtype=np.int64),
        scan_accounts=np.zeros(accounts, dtype=np.int32),
        und_i8=np.zeros((config.max_underlyings, UNDERLYING_FIELDS), dtype=np.int64),
        und_hist=np.zeros((config.max_underlyings * config.index_history, 2), dtype=np.int64),
        ins_arr=np.zeros((instruments, scenarios), dtype=np.int64),
        ins_arr_next=np.zeros((instruments, scenarios), dtype=np.int64),
        acc_risk=np.zeros((accounts, RISK_FIELDS), dtype=np.int64),
        acc_scen=np.zeros((accounts, 3 * scenarios), dtype=np.int64),
        scratch=np.zeros(2 * MAX_INDEX_SOURCES, dtype=np.int64),
        **_trigger_pools(config, accounts, instruments),
        **added_arrays(accounts),
    )
    state.acc_i4[:, Account4.POSITION_HEAD] = NIL
    state.acc_i4[:, Account4.LAST_POSITION] = NIL
    for account in range(SYSTEM_ACCOUNTS):
        state.acc_i4[account, Account4.STATUS] = 1
    return state


def added_arrays(accounts: int) -> dict[str, Any]:
    """The arrays added to the state after the trigger-order layout (subaccount links,
    market-maker protection, cross-domain transfers), as a fresh state with room for
    ``accounts`` has them. Each is empty until its commands are first used and leaves the
    canonical state and the root alone until then, so a snapshot written before them loads
    with these (``journal.snapshot``)."""
    return {
        "sub_i4": np.zeros((accounts, LINK_I4_FIELDS), dtype=np.int32),
        **mmp_arrays(accounts),
        "xfr": transfer_table(),
    }


def _book_rows(rows: int) -> np.ndarray:
    book = np.zeros((rows, BOOK_FIELDS), dtype=np.int64)
    book[:, TrigBook.HEAD] = NIL
    book[:, TrigBook.TAIL] = NIL
    book[:, TrigBook.ABOVE_MIN] = NO_ABOVE
    return book


def _trigger_pools(config: EngineConfig, accounts: int, instruments: int) -> dict[str, Any]:
    """The conditional-order arrays of a fresh state (core/trigger_layout.py)."""
    meta = np.zeros(META_FIELDS, dtype=np.int64)
    meta[TrigMeta.FIRE_CAP] = config.trigger_fire_cap
    meta[TrigMeta.MAX] = config.max_triggers
    meta[TrigMeta.FREE_HEAD] = NIL
    meta[TrigMeta.QUEUE_HEAD] = NIL
    meta[TrigMeta.QUEUE_TAIL] = NIL
    return {
        "trg_i8": _pool(TRIGGER_FIELDS, config.initial_triggers, np.int64),
        "trg_label": np.zeros(config.initial_triggers, dtype=np.uint64),
        "trg_scratch": np.zeros(config.initial_triggers, dtype=np.int64),
        "trg_book": _book_rows(instruments * SOURCES),
        "trg_acct": np.zeros(accounts, dtype=np.int64),
        "trg_meta": meta,
    }


def _widen(array: np.ndarray, capacity: int, fill: int) -> np.ndarray:
    """Copy of ``array`` with ``capacity`` slots along axis 0 (new slots set to ``fill``)."""
    shape = (capacity, *array.shape[1:])
    grown = np.full(shape, fill, dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


def _next_capacity(current: int, needed: int, maximum: int) -> int:
    capacity = current
    while capacity < needed:
        capacity *= 2
    return min(capacity, maximum)


def _rehash(
    pos_i4: np.ndarray, live_slots: np.ndarray, table: int
) -> tuple[np.ndarray, np.ndarray]:
    keys = np.zeros(table, dtype=np.int64)
    values = np.full(table, NIL, dtype=np.int32)
    # insertion in slot order; lookups do not depend on the order (linear probing)
    from derivex.core.pools import hash_insert

    for slot in live_slots:
        account = int(pos_i4[slot, Pos4.ACCOUNT])
        instrument = int(pos_i4[slot, Pos4.INSTRUMENT])
        hash_insert(keys, values, account, instrument, int(slot))
    return keys, values


def grow(state: State, headroom: int = 1) -> State:
    """Return a state whose pools each have at least ``headroom`` free slots (up to the
    configured maxima), doubling as needed. Cost: O(capacity) for each pool that grows."""
    s = state._asdict()
    p, c = state.params, state.counters

    def free_slots(capacity: int, hwm_index: int, free_top_index: int) -> int:
        return int(c[free_top_index]) + capacity - int(c[hwm_index])

    orders = state.ord_label.shape[0]
    if (
        free_slots(orders, Counter.ORDER_HWM, Counter.ORDER_FREE_TOP) < headroom
        and orders < p[P_MAX_ORDERS]
    ):
        new = _next_capacity(orders, int(c[Counter.ORDER_HWM]) + headroom, int(p[P_MAX_ORDERS]))
        s["ord_i8"] = _widen(state.ord_i8, new, 0)
        s["ord_i4"] = _widen(state.ord_i4, new, NIL)
        s["ord_label"] = _widen(state.ord_label, new, 0)
    levels = state.lvl_free.shape[0]
    if (
        free_slots(levels, Counter.LEVEL_HWM, Counter.LEVEL_FREE_TOP) < headroom
        and levels < p[P_MAX_LEVELS]
    ):
        new = _next_capacity(levels, int(c[Counter.LEVEL_HWM]) + headroom, int(p[P_MAX_LEVELS]))
        s["lvl_i8"] = _widen(state.lvl_i8, new, 0)
        s["lvl_i4"] = _widen(state.lvl_i4, new, NIL)
        s["lvl_free"] = _widen(state.lvl_free, new, 0)
    positions = state.pos_free.shape[0]
    if (
        free_slots(positions, Counter.POSITION_HWM, Counter.POSITION_FREE_TOP) < headroom
        and positions < p[P_MAX_POSITIONS]
    ):
        new = _next_capacity(
            positions, int(c[Counter.POSITION_HWM]) + headroom, int(p[P_MAX_POSITIONS])
        )
        s["pos_i8"] = _widen(state.pos_i8, new, 0)
        s["pos_i4"] = _widen(state.pos_i4, new, NIL)
        s["pos_free"] = _widen(state.pos_free, new, 0)
        table = 1 << max(4, (2 * new - 1).bit_length())
        live = np.flatnonzero(s["pos_i4"][:, Pos4.LIVE] == 1)
        s["hash_key"], s["hash_val"] = _rehash(s["pos_i4"], live, table)
    accounts = state.acc_i8.shape[0]
    if int(c[Counter.ACCOUNT_HWM]) + headroom > accounts and accounts < p[P_MAX_ACCOUNTS]:
        new = _next_capacity(
            accounts, int(c[Counter.ACCOUNT_HWM]) + headroom, int(p[P_MAX_ACCOUNTS])
        )
        s["acc_i8"] = _widen(state.acc_i8, new, 0)
        s["acc_i4"] = _widen(state.acc_i4, new, 0)
        s["acc_i4"][accounts:, Account4.POSITION_HEAD] = NIL
        s["acc_i4"][accounts:, Account4.LAST_POSITION] = NIL
        s["scan_used"] = _widen(state.scan_used, new, 0)
        s["scan_accounts"] = _widen(state.scan_accounts, new, 0)
        s["acc_risk"] = _widen(state.acc_risk, new, 0)
        s["acc_scen"] = _widen(state.acc_scen, new, 0)
        s["trg_acct"] = _widen(state.trg_acct, new, 0)
        s["sub_i4"] = _widen(state.sub_i4, new, 0)
        s["mmp"] = _widen(state.mmp, new, 0)
    instruments = state.ins_i8.shape[0]
    if (
        int(c[Counter.INSTRUMENT_HWM]) + headroom > instruments
        and instruments < p[P_MAX_INSTRUMENTS]
    ):
        new = _next_capacity(
            instruments, int(c[Counter.INSTRUMENT_HWM]) + headroom, int(p[P_MAX_INSTRUMENTS])
        )
        s["ins_i8"] = _widen(state.ins_i8, new, 0)
        s["ins_i4"] = _widen(state.ins_i4, new, 0)
        s["ins_arr"] = _widen(state.ins_arr, new, 0)
        s["ins_arr_next"] = _widen(state.ins_arr_next, new, 0)
        rows = s["ladder_price"].shape[1]
        s["ladder_price"] = np.vstack(
            [state.ladder_price, np.zeros((2 * (new - instruments), rows), np.int64)]
        )
        s["ladder_level"] = np.vstack(
            [state.ladder_level, np.full((2 * (new - instruments), rows), NIL, np.int32)]
        )
        s["ladder_len"] = _widen(state.ladder_len, 2 * new, 0)
        s["trg_book"] = np.vstack([state.trg_book, _book_rows(SOURCES * (new - instruments))])
    triggers = state.trg_label.shape[0]
    meta = state.trg_meta
    maximum = int(meta[TrigMeta.MAX])
    trigger_free = int(meta[TrigMeta.FREE_COUNT]) + triggers - int(meta[TrigMeta.HWM])
    if trigger_free < headroom and triggers < maximum:
        new = _next_capacity(triggers, int(meta[TrigMeta.HWM]) + headroom, maximum)
        s["trg_i8"] = _widen(state.trg_i8, new, 0)
        rebuild_link_index(s["trg_i8"])  # its bucket count follows the capacity
        s["trg_label"] = _widen(state.trg_label, new, 0)
        s["trg_scratch"] = _widen(state.trg_scratch, new, 0)
    per_side = state.ladder_price.shape[1]
    if (
        int(np.max(s["ladder_len"], initial=0)) + headroom > per_side
        and per_side < p[P_MAX_LEVELS_PER_SIDE]
    ):
        new = _next_capacity(
            per_side, int(np.max(s["ladder_len"])) + headroom, int(p[P_MAX_LEVELS_PER_SIDE])
        )
        s["ladder_price"] = _widen(s["ladder_price"].T, new, 0).T.copy()
        s["ladder_level"] = _widen(s["ladder_level"].T, new, NIL).T.copy()
    return State(**s)
