"""Trigger books: the pool of trigger orders, one list per (instrument, source) in
placement order, the crossing rule, and the fire queue.

Crossing (docs/conditional-orders.md): a sell stop, a buy take and a sell trailing order
fire when the source price is at or below their trigger price ("fire below"); the mirrored
three fire at or above it. Prices are integer ticks and the comparison is exact, so a
trigger fires only once the source has certainly reached it. A trailing order first moves
its reference to the best price seen (sell: highest) and its trigger to reference minus
offset (buy: lowest, plus offset), then compares.

Cost: ``evaluate`` is O(1) when no trigger of the book can cross (cached bounds) and O(book)
otherwise; ``sort_crossed`` is O(k log k) for k crossed triggers; the rest O(1).
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import kernel
from derivex.core.layout import NIL, Ins4, Ins8, Und8
from derivex.core.link_index import watch_set
from derivex.core.records import TRIGGER_ID_TAG, Side, TriggerSource, TriggerType
from derivex.core.trigger_layout import (
    NO_ABOVE,
    QUEUED,
    SLOT_BITS,
    SLOT_MASK,
    SOURCES,
    UNTRIGGERED,
    UNUSED,
    Trig8,
    TrigBook,
    TrigMeta,
)


@kernel
def spec_of(trigger_type, source, order_type, tif, flags, side):
    """Pack a trigger's terms into ``Trig8.SPEC`` (the event ``leg``) and its side bit."""
    return (
        np.int64(trigger_type)
        | (np.int64(source) << 2)
        | (np.int64(order_type) << 4)
        | (np.int64(tif) << 5)
        | (np.int64(flags) << 8)
        | (np.int64(side) << 16)
    )


@kernel
def fires_below(spec):
    """Whether the trigger with ``spec`` fires at or below its price (else at or above)."""
    trigger_type = spec & 3
    side = (spec >> 16) & 1
    if trigger_type == TriggerType.TAKE:
        return side == Side.BUY
    return side == Side.SELL


@kernel
def trigger_id(st, slot):
    return TRIGGER_ID_TAG | (st.trg_i8[slot, Trig8.PLACED] << SLOT_BITS) | slot


@kernel
def is_trigger_id(order_id):
    """Whether an order id field (uint64) names a trigger order: bit 62 set, bit 63 clear."""
    return (order_id >> np.uint64(62)) == np.uint64(1)


@kernel
def trigger_slot_of(st, trigger_id_value):
    """Slot of the live trigger order with this id (int64), or NIL."""
    if (trigger_id_value >> 62) != 1:
        return NIL
    slot = trigger_id_value & SLOT_MASK
    placed = (trigger_id_value - TRIGGER_ID_TAG) >> SLOT_BITS
    if slot >= st.trg_meta[TrigMeta.HWM]:
        return NIL
    if st.trg_i8[slot, Trig8.STATE] == UNUSED or st.trg_i8[slot, Trig8.PLACED] != placed:
        return NIL
    return slot


@kernel
def trigger_alloc(st):
    """A free slot (LIFO free list, else the high-water mark); the caller checked room."""
    m = st.trg_meta
    if m[TrigMeta.FREE_COUNT] > 0:
        slot = m[TrigMeta.FREE_HEAD]
        m[TrigMeta.FREE_HEAD] = st.trg_i8[slot, Trig8.NEXT]
        m[TrigMeta.FREE_COUNT] -= 1
    else:
        slot = m[TrigMeta.HWM]
        m[TrigMeta.HWM] += 1
    m[TrigMeta.LIVE] += 1
    m[TrigMeta.PLACED] += 1
    st.trg_i8[slot, Trig8.PLACED] = m[TrigMeta.PLACED]
    return slot


@kernel
def trigger_free(st, slot):
    m = st.trg_meta
    st.trg_acct[st.trg_i8[slot, Trig8.ACCOUNT]] -= 1
    if st.trg_i8[slot, Trig8.LINK] != 0:
        m[TrigMeta.LINKED] -= 1
        watch_set(st, slot, 0, 0)  # out of the link index
        watch_set(st, slot, 1, 0)
        t = st.trg_i8[slot]
        t[Trig8.LINK] = 0
        t[Trig8.FULL] = 0
        t[Trig8.BASE] = 0
        t[Trig8.SEEN] = 0
    st.trg_i8[slot, Trig8.STATE] = UNUSED
    st.trg_i8[slot, Trig8.NEXT] = m[TrigMeta.FREE_HEAD]
    m[TrigMeta.FREE_HEAD] = slot
    m[TrigMeta.FREE_COUNT] += 1
    m[TrigMeta.LIVE] -= 1


@kernel
def book_link(st, slot):
    """Append an UNTRIGGERED trigger at the tail of its book and widen the book's bounds."""
    spec = st.trg_i8[slot, Trig8.SPEC]
    row = st.trg_i8[slot, Trig8.INSTRUMENT] * SOURCES + ((spec >> 2) & 3)
    b = st.trg_book[row]
    tail = b[TrigBook.TAIL]
    st.trg_i8[slot, Trig8.PREV] = tail
    st.trg_i8[slot, Trig8.NEXT] = NIL
    if tail == NIL:
        b[TrigBook.HEAD] = slot
    else:
        st.trg_i8[tail, Trig8.NEXT] = slot
    b[TrigBook.TAIL] = slot
    b[TrigBook.COUNT] += 1
    st.trg_i8[slot, Trig8.STATE] = UNTRIGGERED
    if (spec & 3) == TriggerType.TRAILING:
        b[TrigBook.TRAILING] += 1
    elif fires_below(spec):
        b[TrigBook.BELOW_MAX] = max(b[TrigBook.BELOW_MAX], st.trg_i8[slot, Trig8.TRIGGER])
    else:
        b[TrigBook.ABOVE_MIN] = min(b[TrigBook.ABOVE_MIN], st.trg_i8[slot, Trig8.TRIGGER])


@kernel
def book_unlink(st, slot):
    """Take an UNTRIGGERED trigger out of its book (bounds stay: they may be stale)."""
    spec = st.trg_i8[slot, Trig8.SPEC]
    row = st.trg_i8[slot, Trig8.INSTRUMENT] * SOURCES + ((spec >> 2) & 3)
    b = st.trg_book[row]
    prev = st.trg_i8[slot, Trig8.PREV]
    nxt = st.trg_i8[slot, Trig8.NEXT]
    if prev == NIL:
        b[TrigBook.HEAD] = nxt
    else:
        st.trg_i8[prev, Trig8.NEXT] = nxt
    if nxt == NIL:
        b[TrigBook.TAIL] = prev
    else:
        st.trg_i8[nxt, Trig8.PREV] = prev
    b[TrigBook.COUNT] -= 1
    if (spec & 3) == TriggerType.TRAILING:
        b[TrigBook.TRAILING] -= 1


@kernel
def crossed(st, slot, price):
    """Move a trailing trigger with ``price``, then whether ``price`` crosses the trigger."""
    spec = st.trg_i8[slot, Trig8.SPEC]
    below = fires_below(spec)
    if (spec & 3) == TriggerType.TRAILING:
        offset = st.trg_i8[slot, Trig8.OFFSET]
        if below and price > st.trg_i8[slot, Trig8.REFERENCE]:
            st.trg_i8[slot, Trig8.REFERENCE] = price
            st.trg_i8[slot, Trig8.TRIGGER] = price - offset
        elif (not below) and price < st.trg_i8[slot, Trig8.REFERENCE]:
            st.trg_i8[slot, Trig8.REFERENCE] = price
            st.trg_i8[slot, Trig8.TRIGGER] = price + offset
    if below:
        return price <= st.trg_i8[slot, Trig8.TRIGGER]
    return price >= st.trg_i8[slot, Trig8.TRIGGER]


@kernel
def evaluate(st, instrument, source, price, k):
    """Evaluate one book at ``price``: crossed triggers leave the book (QUEUED) and are
    appended to ``st.trg_scratch[k:]``. Returns the new k. The bounds are recomputed on a
    walk, so a book whose triggers are all far away costs O(1) next time."""
    b = st.trg_book[instrument * SOURCES + source]
    if b[TrigBook.COUNT] == 0:
        return k
    if (
        b[TrigBook.TRAILING] == 0
        and price > b[TrigBook.BELOW_MAX]
        and price < b[TrigBook.ABOVE_MIN]
    ):
        return k
    below_max = np.int64(0)
    above_min = np.int64(NO_ABOVE)
    slot = b[TrigBook.HEAD]
    while slot != NIL:
        nxt = st.trg_i8[slot, Trig8.NEXT]
        if crossed(st, slot, price):
            book_unlink(st, slot)
            st.trg_i8[slot, Trig8.STATE] = QUEUED
            st.trg_i8[slot, Trig8.CROSSED] = price
            st.trg_scratch[k] = slot
            k += 1
        else:
            spec = st.trg_i8[slot, Trig8.SPEC]
            if (spec & 3) != TriggerType.TRAILING:
                if fires_below(spec):
                    below_max = max(below_max, st.trg_i8[slot, Trig8.TRIGGER])
                else:
                    above_min = min(above_min, st.trg_i8[slot, Trig8.TRIGGER])
        slot = nxt
    b[TrigBook.BELOW_MAX] = below_max
    b[TrigBook.ABOVE_MIN] = above_min
    return k


@kernel
def _sift(st, heap, start, end):
    root = start
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if (
            child + 1 < end
            and st.trg_i8[heap[child + 1], Trig8.PLACED] > st.trg_i8[heap[child], Trig8.PLACED]
        ):
            child += 1
        if st.trg_i8[heap[root], Trig8.PLACED] >= st.trg_i8[heap[child], Trig8.PLACED]:
            return
        heap[root], heap[child] = heap[child], heap[root]
        root = child


@kernel
def sort_crossed(st, k):
    """Sort ``st.trg_scratch[:k]`` by placement (time priority), in place: heapsort."""
    heap = st.trg_scratch
    for start in range(k // 2 - 1, -1, -1):
        _sift(st, heap, start, k)
    for end in range(k - 1, 0, -1):
        heap[0], heap[end] = heap[end], heap[0]
        _sift(st, heap, 0, end)


@kernel
def enqueue_crossed(st, k):
    """Append ``st.trg_scratch[:k]`` (sorted) to the fire queue."""
    m = st.trg_meta
    for j in range(k):
        slot = st.trg_scratch[j]
        st.trg_i8[slot, Trig8.NEXT] = NIL
        if m[TrigMeta.QUEUE_TAIL] == NIL:
            m[TrigMeta.QUEUE_HEAD] = slot
        else:
            st.trg_i8[m[TrigMeta.QUEUE_TAIL], Trig8.NEXT] = slot
        m[TrigMeta.QUEUE_TAIL] = slot
        m[TrigMeta.QUEUE_LEN] += 1


@kernel
def dequeue(st):
    """Take the head of the fire queue (the queue is not empty)."""
    m = st.trg_meta
    slot = m[TrigMeta.QUEUE_HEAD]
    m[TrigMeta.QUEUE_HEAD] = st.trg_i8[slot, Trig8.NEXT]
    if m[TrigMeta.QUEUE_HEAD] == NIL:
        m[TrigMeta.QUEUE_TAIL] = NIL
    m[TrigMeta.QUEUE_LEN] -= 1
    return slot


@kernel
def queue_remove(st, slot):
    """Take a QUEUED trigger out of the fire queue wherever it is. O(queue)."""
    m = st.trg_meta
    prev = NIL
    cur = m[TrigMeta.QUEUE_HEAD]
    while cur != NIL and cur != slot:
        prev = cur
        cur = st.trg_i8[cur, Trig8.NEXT]
    if cur == NIL:
        return
    nxt = st.trg_i8[slot, Trig8.NEXT]
    if prev == NIL:
        m[TrigMeta.QUEUE_HEAD] = nxt
    else:
        st.trg_i8[prev, Trig8.NEXT] = nxt
    if m[TrigMeta.QUEUE_TAIL] == slot:
        m[TrigMeta.QUEUE_TAIL] = prev
    m[TrigMeta.QUEUE_LEN] -= 1


@kernel
def collect(st, account, instrument):
    """Live triggers of ``account`` (-1: any) on ``instrument`` (-1: any) into
    ``st.trg_scratch``, sorted by placement. Returns their number. O(pool high-water mark)."""
    k = 0
    for slot in range(st.trg_meta[TrigMeta.HWM]):
        if st.trg_i8[slot, Trig8.STATE] == UNUSED:
            continue
        if account >= 0 and st.trg_i8[slot, Trig8.ACCOUNT] != account:
            continue
        if instrument >= 0 and st.trg_i8[slot, Trig8.INSTRUMENT] != instrument:
            continue
        st.trg_scratch[k] = slot
        k += 1
    sort_crossed(st, k)
    return k


@kernel
def source_price(st, instrument, source):
    """The current price of a trigger source (0: none yet)."""
    if source == TriggerSource.LAST:
        return st.trg_book[instrument * SOURCES + source, TrigBook.LAST_PRICE]
    if source == TriggerSource.MARK:
        return st.ins_i8[instrument, Ins8.MARK]
    return st.und_i8[st.ins_i4[instrument, Ins4.UNDERLYING], Und8.INDEX]
