"""Engine state: the ``State`` type (preallocated structure-of-arrays pools) and readers of
its books and order ids.

Everything the kernel reads or writes lives in one ``State`` (a named tuple of numpy arrays)
so a batch is a single compiled call. The arrays are views into one byte *arena*, each
section 64-byte aligned (``arena.pack`` / ``arena.unpack``). Pools are allocated and grow
only between batches (``growth``); the canonical form and hash of a state are in
``canonical``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from derivex.core.layout import NIL, Counter, Level4, Level8, Order4, Order8, Pos4


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
    # conditional orders (core/trigger_book.py): the trigger pool, per instrument and source
    # the trigger books, per account the live trigger count, and the subsystem's counters
    trg_i8: np.ndarray  # int64[triggers, TRIGGER_FIELDS]
    trg_label: np.ndarray  # uint64[triggers]
    trg_scratch: np.ndarray  # int64[triggers] kernel scratch (crossed triggers)
    trg_book: np.ndarray  # int64[instruments * 3, BOOK_FIELDS]
    trg_acct: np.ndarray  # int64[accounts]
    trg_meta: np.ndarray  # int64[META_FIELDS]
    # subaccounts (core/subaccounts.py): per account its main account and subaccount count
    sub_i4: np.ndarray  # int32[accounts, LINK_I4_FIELDS]
    # market-maker protection (core/mmp.py): per account MMP_SLOTS groups, and counters
    mmp: np.ndarray  # int64[accounts, MMP_SLOTS * MMP_FIELDS]
    mmp_meta: np.ndarray  # int64[MMP_META_FIELDS]
    # cross-domain transfers (core/escrow.py): per peer domain the escrow and the
    # processed-transfer set
    xfr: np.ndarray  # int64[MAX_DOMAINS, XFER_FIELDS]


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
    "trg_i8": np.int64,
    "trg_label": np.uint64,
    "trg_scratch": np.int64,
    "trg_book": np.int64,
    "trg_acct": np.int64,
    "trg_meta": np.int64,
    "sub_i4": np.int32,
    "mmp": np.int64,
    "mmp_meta": np.int64,
    "xfr": np.int64,
}


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
