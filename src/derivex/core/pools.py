"""Slot allocation for the order, level and position pools, and the position index.

Allocation takes the top of a LIFO free stack, else the next never-used slot (the
high-water mark), so the sequence of slots handed out depends only on the command log,
never on the capacity. Callers check capacity before allocating (validate, then mutate).
Every operation here is O(1) (hash operations O(1) expected).
"""

from __future__ import annotations

import numpy as np

from derivex.core import layout as L
from derivex.core.jit import kernel


@kernel
def free_capacity(capacity, hwm, free_top):
    """Slots that can still be allocated without growing."""
    return free_top + capacity - hwm


@kernel
def order_alloc(st):
    c = st.counters
    if c[L.C_ORDER_FREE_TOP] > 0:
        c[L.C_ORDER_FREE_TOP] -= 1
        slot = c[L.C_ORDER_FREE_HEAD]
        c[L.C_ORDER_FREE_HEAD] = st.ord_i4[slot, L.O_NEXT]
    else:
        slot = c[L.C_ORDER_HWM]
        c[L.C_ORDER_HWM] += 1
    st.ord_i8[slot, L.O_GENERATION] += 1
    c[L.C_ORDERS_LIVE] += 1
    return slot


@kernel
def order_free(st, slot):
    c = st.counters
    st.ord_i4[slot, L.O_POSITION] = L.NIL
    # intrusive free list: a free slot's O_NEXT links to the next free slot (LIFO)
    st.ord_i4[slot, L.O_NEXT] = c[L.C_ORDER_FREE_HEAD]
    c[L.C_ORDER_FREE_HEAD] = slot
    c[L.C_ORDER_FREE_TOP] += 1
    c[L.C_ORDERS_LIVE] -= 1


@kernel
def order_id_of(st, slot):
    return (st.ord_i8[slot, L.O_GENERATION] << 32) | slot


@kernel
def order_slot_of(st, order_id):
    """Slot of a live order with this id, or NIL. The id must be an int64 value."""
    if order_id <= 0:
        return L.NIL
    slot = order_id & 0xFFFFFFFF
    generation = order_id >> 32
    if slot >= st.counters[L.C_ORDER_HWM]:
        return L.NIL
    if st.ord_i8[slot, L.O_GENERATION] != generation:
        return L.NIL
    if st.ord_i4[slot, L.O_POSITION] == L.NIL:
        return L.NIL
    return slot


@kernel
def level_alloc(st, price):
    c = st.counters
    if c[L.C_LEVEL_FREE_TOP] > 0:
        c[L.C_LEVEL_FREE_TOP] -= 1
        slot = st.lvl_free[c[L.C_LEVEL_FREE_TOP]]
    else:
        slot = c[L.C_LEVEL_HWM]
        c[L.C_LEVEL_HWM] += 1
    st.lvl_i8[slot, L.L_PRICE] = price
    st.lvl_i8[slot, L.L_QTY] = 0
    st.lvl_i4[slot, L.L_COUNT] = 0
    st.lvl_i4[slot, L.L_HEAD] = L.NIL
    st.lvl_i4[slot, L.L_TAIL] = L.NIL
    c[L.C_LEVELS_LIVE] += 1
    return slot


@kernel
def level_free(st, slot):
    c = st.counters
    st.lvl_free[c[L.C_LEVEL_FREE_TOP]] = slot
    c[L.C_LEVEL_FREE_TOP] += 1
    c[L.C_LEVELS_LIVE] -= 1


# ---- position index: open addressing, linear probing, backward-shift deletion ----


@kernel
def _hash_key(account, instrument):
    # explicit int64: as plain Python (JIT disabled) an int32 argument would shift in 32 bits
    return (np.int64(account) << 32) + np.int64(instrument) + 1


@kernel
def _hash_home(key, mask):
    # multiplicative mixing on the low 31 bits of each half keeps every product in int64
    high = (key >> 32) & 0x7FFFFFFF
    low = key & 0x7FFFFFFF
    h = (high * 0x5BD1E995) ^ (low * 0x27D4EB2F)
    h ^= h >> 17
    return h & mask


@kernel
def hash_find(keys, values, account, instrument):
    key = _hash_key(account, instrument)
    mask = keys.shape[0] - 1
    i = _hash_home(key, mask)
    while keys[i] != 0:
        if keys[i] == key:
            return values[i]
        i = (i + 1) & mask
    return L.NIL


@kernel
def hash_insert(keys, values, account, instrument, slot):
    key = _hash_key(account, instrument)
    mask = keys.shape[0] - 1
    i = _hash_home(key, mask)
    while keys[i] != 0:
        i = (i + 1) & mask
    keys[i] = key
    values[i] = slot


@kernel
def hash_delete(keys, values, account, instrument):
    key = _hash_key(account, instrument)
    mask = keys.shape[0] - 1
    i = _hash_home(key, mask)
    while keys[i] != key:
        i = (i + 1) & mask
    # backward-shift: move later entries of the probe run into the hole
    j = i
    while True:
        j = (j + 1) & mask
        if keys[j] == 0:
            break
        home = _hash_home(keys[j], mask)
        # entry at j may move to i if its home is not in the cyclic range (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            keys[i] = keys[j]
            values[i] = values[j]
            i = j
    keys[i] = 0
    values[i] = L.NIL


@kernel
def position_find(st, account, instrument):
    """Live position slot of (account, instrument), or NIL. The account's last-used slot is
    checked first (one cache line), the index only on a miss."""
    last = st.acc_i4[account, L.A_LAST_POSITION]
    if (
        last != L.NIL
        and st.pos_i4[last, L.S_LIVE] == 1
        and st.pos_i4[last, L.S_INSTRUMENT] == instrument
        and st.pos_i4[last, L.S_ACCOUNT] == account
    ):
        return last
    slot = hash_find(st.hash_key, st.hash_val, account, instrument)
    if slot != L.NIL:
        st.acc_i4[account, L.A_LAST_POSITION] = slot
    return slot


@kernel
def position_get_or_create(st, account, instrument):
    """Live position slot for (account, instrument), created flat if missing. The caller has
    checked capacity."""
    slot = position_find(st, account, instrument)
    if slot != L.NIL:
        return slot
    c = st.counters
    if c[L.C_POSITION_FREE_TOP] > 0:
        c[L.C_POSITION_FREE_TOP] -= 1
        slot = st.pos_free[c[L.C_POSITION_FREE_TOP]]
    else:
        slot = c[L.C_POSITION_HWM]
        c[L.C_POSITION_HWM] += 1
    c[L.C_POSITIONS_LIVE] += 1
    for f in range(st.pos_i8.shape[1]):
        st.pos_i8[slot, f] = 0
    st.pos_i4[slot, L.S_ACCOUNT] = account
    st.pos_i4[slot, L.S_INSTRUMENT] = instrument
    st.pos_i4[slot, L.S_ORDERS] = 0
    st.pos_i4[slot, L.S_ORDER_HEAD] = L.NIL
    st.pos_i4[slot, L.S_ORDER_TAIL] = L.NIL
    st.pos_i4[slot, L.S_LIVE] = 1
    hash_insert(st.hash_key, st.hash_val, account, instrument, slot)
    st.acc_i4[account, L.A_LAST_POSITION] = slot
    # push on the front of the account's list: O(1) (a sorted list made every new
    # position walk the account's others, ~200 on a market maker's options book)
    head = st.acc_i4[account, L.A_POSITION_HEAD]
    st.pos_i4[slot, L.S_NEXT] = head
    st.pos_i4[slot, L.S_PREV] = L.NIL
    if head != L.NIL:
        st.pos_i4[head, L.S_PREV] = slot
    st.acc_i4[account, L.A_POSITION_HEAD] = slot
    return slot


@kernel
def position_release_if_idle(st, slot):
    """Release a position slot that is flat and has no resting orders."""
    if st.pos_i4[slot, L.S_LIVE] != 1:
        return
    if st.pos_i8[slot, L.S_QTY] != 0 or st.pos_i4[slot, L.S_ORDERS] != 0:
        return
    account = st.pos_i4[slot, L.S_ACCOUNT]
    instrument = st.pos_i4[slot, L.S_INSTRUMENT]
    hash_delete(st.hash_key, st.hash_val, account, instrument)
    previous = st.pos_i4[slot, L.S_PREV]
    following = st.pos_i4[slot, L.S_NEXT]
    if previous == L.NIL:
        st.acc_i4[account, L.A_POSITION_HEAD] = following
    else:
        st.pos_i4[previous, L.S_NEXT] = following
    if following != L.NIL:
        st.pos_i4[following, L.S_PREV] = previous
    st.pos_i4[slot, L.S_LIVE] = 0
    st.pos_i4[slot, L.S_NEXT] = L.NIL
    st.pos_i4[slot, L.S_PREV] = L.NIL
    c = st.counters
    st.pos_free[c[L.C_POSITION_FREE_TOP]] = slot
    c[L.C_POSITION_FREE_TOP] += 1
    c[L.C_POSITIONS_LIVE] -= 1
