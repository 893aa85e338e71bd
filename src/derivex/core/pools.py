"""Slot allocation for the order, level and position pools, and the position index.

Allocation takes the top of a LIFO free stack, else the next never-used slot (the
high-water mark), so the sequence of slots handed out depends only on the command log,
never on the capacity. Callers check capacity before allocating (validate, then mutate).
Every operation here is O(1) (hash operations O(1) expected).
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account4, Counter, Level4, Level8, Order4, Order8, Pos4, Pos8


@kernel
def free_capacity(capacity, hwm, free_top):
    """Slots that can still be allocated without growing."""
    return free_top + capacity - hwm


@kernel
def order_alloc(st):
    c = st.counters
    if c[Counter.ORDER_FREE_TOP] > 0:
        c[Counter.ORDER_FREE_TOP] -= 1
        slot = c[Counter.ORDER_FREE_HEAD]
        c[Counter.ORDER_FREE_HEAD] = st.ord_i4[slot, Order4.NEXT]
    else:
        slot = c[Counter.ORDER_HWM]
        c[Counter.ORDER_HWM] += 1
    st.ord_i8[slot, Order8.GENERATION] += 1
    c[Counter.ORDERS_LIVE] += 1
    return slot


@kernel
def order_free(st, slot):
    c = st.counters
    st.ord_i4[slot, Order4.POSITION] = NIL
    # intrusive free list: a free slot's O_NEXT links to the next free slot (LIFO)
    st.ord_i4[slot, Order4.NEXT] = c[Counter.ORDER_FREE_HEAD]
    c[Counter.ORDER_FREE_HEAD] = slot
    c[Counter.ORDER_FREE_TOP] += 1
    c[Counter.ORDERS_LIVE] -= 1


@kernel
def order_id_of(st, slot):
    return (st.ord_i8[slot, Order8.GENERATION] << 32) | slot


@kernel
def order_slot_of(st, order_id):
    """Slot of a live order with this id, or NIL. The id must be an int64 value."""
    if order_id <= 0:
        return NIL
    slot = order_id & 0xFFFFFFFF
    generation = order_id >> 32
    if slot >= st.counters[Counter.ORDER_HWM]:
        return NIL
    if st.ord_i8[slot, Order8.GENERATION] != generation:
        return NIL
    if st.ord_i4[slot, Order4.POSITION] == NIL:
        return NIL
    return slot


@kernel
def level_alloc(st, price):
    c = st.counters
    if c[Counter.LEVEL_FREE_TOP] > 0:
        c[Counter.LEVEL_FREE_TOP] -= 1
        slot = st.lvl_free[c[Counter.LEVEL_FREE_TOP]]
    else:
        slot = c[Counter.LEVEL_HWM]
        c[Counter.LEVEL_HWM] += 1
    st.lvl_i8[slot, Level8.PRICE_TICKS] = price
    st.lvl_i8[slot, Level8.QTY_LOTS] = 0
    st.lvl_i4[slot, Level4.COUNT] = 0
    st.lvl_i4[slot, Level4.HEAD] = NIL
    st.lvl_i4[slot, Level4.TAIL] = NIL
    c[Counter.LEVELS_LIVE] += 1
    return slot


@kernel
def level_free(st, slot):
    c = st.counters
    st.lvl_free[c[Counter.LEVEL_FREE_TOP]] = slot
    c[Counter.LEVEL_FREE_TOP] += 1
    c[Counter.LEVELS_LIVE] -= 1


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
    return NIL


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
    values[i] = NIL


@kernel
def position_find(st, account, instrument):
    """Live position slot of (account, instrument), or NIL. The account's last-used slot is
    checked first (one cache line), the index only on a miss."""
    last = st.acc_i4[account, Account4.LAST_POSITION]
    if (
        last != NIL
        and st.pos_i4[last, Pos4.LIVE] == 1
        and st.pos_i4[last, Pos4.INSTRUMENT] == instrument
        and st.pos_i4[last, Pos4.ACCOUNT] == account
    ):
        return last
    slot = hash_find(st.hash_key, st.hash_val, account, instrument)
    if slot != NIL:
        st.acc_i4[account, Account4.LAST_POSITION] = slot
    return slot


@kernel
def position_get_or_create(st, account, instrument):
    """Live position slot for (account, instrument), created flat if missing. The caller has
    checked capacity."""
    slot = position_find(st, account, instrument)
    if slot != NIL:
        return slot
    c = st.counters
    if c[Counter.POSITION_FREE_TOP] > 0:
        c[Counter.POSITION_FREE_TOP] -= 1
        slot = st.pos_free[c[Counter.POSITION_FREE_TOP]]
    else:
        slot = c[Counter.POSITION_HWM]
        c[Counter.POSITION_HWM] += 1
    c[Counter.POSITIONS_LIVE] += 1
    for f in range(st.pos_i8.shape[1]):
        st.pos_i8[slot, f] = 0
    st.pos_i4[slot, Pos4.ACCOUNT] = account
    st.pos_i4[slot, Pos4.INSTRUMENT] = instrument
    st.pos_i4[slot, Pos4.ORDERS] = 0
    st.pos_i4[slot, Pos4.ORDER_HEAD] = NIL
    st.pos_i4[slot, Pos4.ORDER_TAIL] = NIL
    st.pos_i4[slot, Pos4.LIVE] = 1
    hash_insert(st.hash_key, st.hash_val, account, instrument, slot)
    st.acc_i4[account, Account4.LAST_POSITION] = slot
    # push on the front of the account's list: O(1) (a sorted list made every new
    # position walk the account's others, ~200 on a market maker's options book)
    head = st.acc_i4[account, Account4.POSITION_HEAD]
    st.pos_i4[slot, Pos4.NEXT] = head
    st.pos_i4[slot, Pos4.PREV] = NIL
    if head != NIL:
        st.pos_i4[head, Pos4.PREV] = slot
    st.acc_i4[account, Account4.POSITION_HEAD] = slot
    return slot


@kernel
def position_release_if_idle(st, slot):
    """Release a position slot that is flat and has no resting orders."""
    if st.pos_i4[slot, Pos4.LIVE] != 1:
        return
    if st.pos_i8[slot, Pos8.QTY] != 0 or st.pos_i4[slot, Pos4.ORDERS] != 0:
        return
    account = st.pos_i4[slot, Pos4.ACCOUNT]
    instrument = st.pos_i4[slot, Pos4.INSTRUMENT]
    hash_delete(st.hash_key, st.hash_val, account, instrument)
    previous = st.pos_i4[slot, Pos4.PREV]
    following = st.pos_i4[slot, Pos4.NEXT]
    if previous == NIL:
        st.acc_i4[account, Account4.POSITION_HEAD] = following
    else:
        st.pos_i4[previous, Pos4.NEXT] = following
    if following != NIL:
        st.pos_i4[following, Pos4.PREV] = previous
    st.pos_i4[slot, Pos4.LIVE] = 0
    st.pos_i4[slot, Pos4.NEXT] = NIL
    st.pos_i4[slot, Pos4.PREV] = NIL
    c = st.counters
    st.pos_free[c[Counter.POSITION_FREE_TOP]] = slot
    c[Counter.POSITION_FREE_TOP] += 1
    c[Counter.POSITIONS_LIVE] -= 1
