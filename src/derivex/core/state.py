"""Engine state: preallocated structure-of-arrays pools, their growth, and the
canonical view and hash of the state.

Everything the kernel reads or writes lives in one ``State`` (a named tuple of numpy arrays)
so a batch is a single compiled call. The arrays are views into one byte *arena*
(``pack``), each section 64-byte aligned: a call hands the kernel two arrays (arena and
layout) instead of two dozen, which is what a per-command call pays for. Pools grow only
between batches (``grow``, then ``pack``); a grown state is indistinguishable from the old
one in ``canonical``/``state_hash``.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np

from derivex.core.config import (
    MAX_INDEX_SOURCES,
    P_INDEX_HISTORY,
    P_MAX_ACCOUNTS,
    P_MAX_INSTRUMENTS,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
    P_MAX_UNDERLYINGS,
    EngineConfig,
)
from derivex.core.layout import (
    ACCOUNT_I4_FIELDS,
    ACCOUNT_I8_FIELDS,
    COUNTER_COUNT,
    INSTRUMENT_I4_FIELDS,
    INSTRUMENT_I8_FIELDS,
    LEVEL_I4_FIELDS,
    LEVEL_I8_FIELDS,
    NIL,
    ORDER_I4_FIELDS,
    ORDER_I8_FIELDS,
    POSITION_I4_FIELDS,
    POSITION_I8_FIELDS,
    RISK_FIELDS,
    UNDERLYING_FIELDS,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Level4,
    Level8,
    Order4,
    Order8,
    Pos4,
    Pos8,
    Und8,
)
from derivex.core.records import SYSTEM_ACCOUNTS, Side


class State(NamedTuple):
    params: np.ndarray  # int64[PARAM_COUNT]
    counters: np.ndarray  # int64[COUNTER_COUNT]
    acc_i8: np.ndarray  # int64[accounts, ACCOUNT_I8_FIELDS]
    acc_i4: np.ndarray  # int32[accounts, ACCOUNT_I4_FIELDS]
    ins_i8: np.ndarray
    ins_i4: np.ndarray
    pos_i8: np.ndarray
    pos_i4: np.ndarray
    pos_free: np.ndarray  # int32[positions] free stack
    hash_key: np.ndarray  # int64[2^k] (account << 32 | instrument) + 1, 0 = empty
    hash_val: np.ndarray  # int32[2^k] position slot
    ord_i8: np.ndarray
    ord_i4: np.ndarray
    ord_label: np.ndarray  # uint64[orders]
    lvl_i8: np.ndarray
    lvl_i4: np.ndarray
    lvl_free: np.ndarray
    ladder_price: np.ndarray  # int64[instruments * 2, levels_per_side]; best level last
    ladder_level: np.ndarray  # int32[instruments * 2, levels_per_side]
    ladder_len: np.ndarray  # int32[instruments * 2]
    scan_used: np.ndarray  # int64[accounts] scratch for the liquidity scan
    scan_accounts: np.ndarray  # int32[accounts] scratch: accounts touched by a scan
    und_i8: np.ndarray  # int64[max_underlyings, UNDERLYING_FIELDS]
    und_hist: np.ndarray  # int64[max_underlyings * index_history, 2] (ts, index)
    ins_arr: np.ndarray  # int64[instruments, S] applied scenario P&L of one lot
    ins_arr_next: np.ndarray  # int64[instruments, S] pending (RISK_ARRAY / perpetual marks)
    acc_risk: np.ndarray  # int64[accounts, RISK_FIELDS]
    acc_scen: np.ndarray  # int64[accounts, 3 * S]
    scratch: np.ndarray  # int64[64] kernel scratch (index sources)


FIELD_DTYPES: dict[str, Any] = {
    "params": np.int64,
    "counters": np.int64,
    "acc_i8": np.int64,
    "acc_i4": np.int32,
    "ins_i8": np.int64,
    "ins_i4": np.int32,
    "pos_i8": np.int64,
    "pos_i4": np.int32,
    "pos_free": np.int32,
    "hash_key": np.int64,
    "hash_val": np.int32,
    "ord_i8": np.int64,
    "ord_i4": np.int32,
    "ord_label": np.uint64,
    "lvl_i8": np.int64,
    "lvl_i4": np.int32,
    "lvl_free": np.int32,
    "ladder_price": np.int64,
    "ladder_level": np.int32,
    "ladder_len": np.int32,
    "scan_used": np.int64,
    "scan_accounts": np.int32,
    "und_i8": np.int64,
    "und_hist": np.int64,
    "ins_arr": np.int64,
    "ins_arr_next": np.int64,
    "acc_risk": np.int64,
    "acc_scen": np.int64,
    "scratch": np.int64,
}
ALIGN = 64


def pack(state: State) -> tuple[np.ndarray, np.ndarray, State]:
    """Copy ``state`` into one arena; returns ``(arena, layout, views)`` where ``layout``
    rows are ``(byte offset, rows, columns or 0)`` per State field. Cost: O(state size)."""
    layout = np.zeros((len(State._fields), 3), dtype=np.int64)
    offset = 0
    for index, name in enumerate(State._fields):
        array = getattr(state, name)
        assert array.dtype == FIELD_DTYPES[name], name
        layout[index] = (offset, array.shape[0], array.shape[1] if array.ndim == 2 else 0)
        offset += -(-array.nbytes // ALIGN) * ALIGN
    raw = np.empty(offset + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    arena = raw[start : start + offset]
    views = []
    for index, name in enumerate(State._fields):
        array = getattr(state, name)
        begin = int(layout[index, 0])
        view = arena[begin : begin + array.nbytes].view(array.dtype).reshape(array.shape)
        view[...] = array
        views.append(view)
    return arena, layout, State(*views)


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
    )
    state.acc_i4[:, Account4.POSITION_HEAD] = NIL
    state.acc_i4[:, Account4.LAST_POSITION] = NIL
    for account in range(SYSTEM_ACCOUNTS):
        state.acc_i4[account, Account4.STATUS] = 1
    return state


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


def order_id(state: State, slot: int) -> int:
    return (int(state.ord_i8[slot, Order8.GENERATION]) << 32) | slot


def book_side(
    state: State, instrument: int, side: int
) -> list[tuple[int, list[tuple[int, int, int, int, int]]]]:
    """Levels of one side, best first: ``[(price, [(order_id, account, qty, flags, label)])]``."""
    row = instrument * 2 + side
    result = []
    for index in range(int(state.ladder_len[row]) - 1, -1, -1):
        level = int(state.ladder_level[row, index])
        orders = []
        slot = int(state.lvl_i4[level, Level4.HEAD])
        while slot != NIL:
            position = int(state.ord_i4[slot, Order4.POSITION])
            orders.append(
                (
                    order_id(state, slot),
                    int(state.pos_i4[position, Pos4.ACCOUNT]),
                    int(state.ord_i8[slot, Order8.QTY_LOTS]),
                    int(state.ord_i4[slot, Order4.META]) >> 1,
                    int(state.ord_label[slot]),
                )
            )
            slot = int(state.ord_i4[slot, Order4.NEXT])
        result.append((int(state.lvl_i8[level, Level8.PRICE_TICKS]), orders))
    return result


def free_order_slots(state: State) -> list[int]:
    """The free order slots in the order they will be reused (head of the LIFO list first)."""
    slots = []
    slot = int(state.counters[Counter.ORDER_FREE_HEAD])
    for _ in range(int(state.counters[Counter.ORDER_FREE_TOP])):
        slots.append(slot)
        slot = int(state.ord_i4[slot, Order4.NEXT])
    return slots


def next_order_ids(state: State, count: int = 3) -> list[int]:
    """Ids the next ``count`` new orders would receive."""
    ids = []
    free = free_order_slots(state)[:count]
    hwm = int(state.counters[Counter.ORDER_HWM])
    for index in range(count):
        if index < len(free):
            slot = free[index]
        else:
            slot = hwm
            hwm += 1
        generation = (
            int(state.ord_i8[slot, Order8.GENERATION]) if slot < state.ord_label.shape[0] else 0
        )
        ids.append(((generation + 1) << 32) | slot)
    return ids


def canonical(state: State) -> dict[str, Any]:
    """The state as plain Python values, independent of pool capacities and slot layout
    (except order ids, which are part of the contract). Cost: O(live state)."""
    c = state.counters
    accounts = []
    for account in range(int(c[Counter.ACCOUNT_HWM])):
        accounts.append(
            (
                account,
                int(state.acc_i8[account, Account8.BALANCE]),
                int(state.acc_i4[account, Account4.STP]),
                int(state.acc_i4[account, Account4.OPEN_ORDERS]),
                int(state.acc_i8[account, Account8.GAS]),
                int(state.acc_i8[account, Account8.GAS_TS]),
                int(state.acc_i4[account, Account4.MARGIN_MODE]),
                int(state.acc_i4[account, Account4.STATE]),
                tuple(int(v) for v in state.acc_risk[account]),
                tuple(int(v) for v in state.acc_scen[account]),
            )
        )
    instruments = []
    books = {}
    for instrument in range(int(c[Counter.INSTRUMENT_HWM])):
        i8, i4 = state.ins_i8[instrument, :], state.ins_i4[instrument, :]
        instruments.append(
            (
                instrument,
                int(i4[Ins4.KIND]),
                int(i4[Ins4.OPTION_TYPE]),
                int(i4[Ins4.UNDERLYING]),
                int(i4[Ins4.STATUS]),
                int(i8[Ins8.STRIKE]),
                int(i8[Ins8.EXPIRY]),
                int(i8[Ins8.TICK]),
                int(i8[Ins8.MIN_LOTS]),
                int(i8[Ins8.CONTRACT_VALUE]),
                int(i8[Ins8.MAKER_FEE]),
                int(i8[Ins8.TAKER_FEE]),
                int(i8[Ins8.MAX_PRICE]),
                int(i4[Ins4.RESTING]),
                tuple(int(v) for v in i8[Ins8.MARK :]),
                int(i4[Ins4.DIRTY]),
                tuple(int(v) for v in state.ins_arr[instrument]),
                tuple(int(v) for v in state.ins_arr_next[instrument]),
            )
        )
        books[instrument] = {
            "bids": book_side(state, instrument, Side.BUY),
            "asks": book_side(state, instrument, Side.SELL),
        }
    positions = []
    for slot in np.flatnonzero(state.pos_i4[:, Pos4.LIVE] == 1):
        positions.append(
            (
                int(state.pos_i4[slot, Pos4.ACCOUNT]),
                int(state.pos_i4[slot, Pos4.INSTRUMENT]),
                int(state.pos_i8[slot, Pos8.QTY]),
                int(state.pos_i8[slot, Pos8.BASIS]),
                int(state.pos_i8[slot, Pos8.OPEN_BUY]),
                int(state.pos_i8[slot, Pos8.OPEN_SELL]),
                int(state.pos_i4[slot, Pos4.ORDERS]),
                int(state.pos_i8[slot, Pos8.BUY_VALUE]),
                int(state.pos_i8[slot, Pos8.SELL_VALUE]),
            )
        )
    positions.sort()
    underlyings = []
    history = int(state.params[P_INDEX_HISTORY])
    for u in range(int(state.params[P_MAX_UNDERLYINGS])):
        row = tuple(int(v) for v in state.und_i8[u])
        if any(row):
            head, length = row[Und8.HIST_HEAD], row[Und8.HIST_LEN]
            rows = [(head - length + k) % history for k in range(length)]
            kept = tuple(tuple(int(v) for v in state.und_hist[u * history + r]) for r in rows)
            underlyings.append((u, row, kept))
    return {
        "clock_ns": int(c[Counter.CLOCK_NS]),
        "total_deposits": int(c[Counter.TOTAL_DEPOSITS]),
        "total_withdrawals": int(c[Counter.TOTAL_WITHDRAWALS]),
        "accounts": accounts,
        "instruments": instruments,
        "positions": positions,
        "books": books,
        "underlyings": underlyings,
        "risk_dirty": int(c[Counter.RISK_DIRTY]),
        "bad_debt": int(c[Counter.BAD_DEBT]),
        "next_order_ids": next_order_ids(state),
    }


def state_hash(state: State) -> str:
    """SHA-256 over the canonical state and the order free stack (which fixes future order
    ids). Identical for identical command logs, across processes and pool growth."""
    digest = hashlib.sha256()
    digest.update(b"derivex-state-v1")
    digest.update(state.params.astype("<i8").tobytes())
    view = canonical(state)
    digest.update(repr(view).encode())
    digest.update(np.array(free_order_slots(state), dtype="<i4").tobytes())
    hwm = int(state.counters[Counter.ORDER_HWM])
    digest.update(state.ord_i8[:hwm, Order8.GENERATION].astype("<i8").tobytes())
    return digest.hexdigest()
