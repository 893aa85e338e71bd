"""The link index: from an order id that grouped trigger rows watch (``Trig8.PRIMARY``,
``Trig8.PARTNER``) to the rows watching it, so that ``link_pass`` reacts to an event in
O(watchers of its order id) instead of comparing it with every row of the pool (which let
one account's resting brackets slow every other account's trades).

Derived data: four columns of the trigger rows (``Trig8.WATCH_NEXT`` on), written by
``watch_set`` at every change of PRIMARY / PARTNER (placement, the link pass, ``trigger_free``)
and rebuilt from the rows whenever the engine adopts a state (construction, snapshot load,
pool growth: ``rebuild_link_index``). ``canonical`` / ``state_hash`` and the state root read
named columns only, so the index changes neither.

Layout. Entry ``e = 2 * slot + role`` (role 0: the row's PRIMARY, 1: its PARTNER) exists
while that value is not 0. The entries whose value falls in bucket ``b`` (``2 x pool
capacity`` buckets, so at most one entry per bucket on average) form one chain in ascending
entry order: its head is in row ``b >> 1``, column ``WATCH_HEAD + (b & 1)``; the entry after
``e`` in row ``e >> 1``, column ``WATCH_NEXT + (e & 1)``; both stored as entry + 1 (0: none),
so zeroed rows are an empty index. Ascending chains make the index a function of the rows
alone (a rebuild equals what the kernels kept: the invariant check compares them) and give
the watchers of an id in slot order, the order in which the link pass must react.

The bucket of an id is plain integer arithmetic (``bucket_of``): deterministic, no
randomness, no overflow in int64. Ids are assigned by the venue (order slot and generation,
trigger slot and placement ordinal), so a client cannot pick colliding ones.

Cost: ``watch_set`` and ``watcher_after`` O(chain length), about 1; ``rebuild_link_index``
and ``check_link_index`` O(pool capacity + entries x log entries), numpy.
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import kernel
from derivex.core.layout import NIL
from derivex.core.trigger_layout import Trig8

#: The index columns of a trigger row, contiguous: WATCH_NEXT (2), then WATCH_HEAD (2).
INDEX_COLUMNS = slice(int(Trig8.WATCH_NEXT), int(Trig8.WATCH_HEAD) + 2)


def bucket_of(value, buckets):
    """Bucket of a watched id (int64 >= 0; also elementwise over an int64 array): fold the
    high bits (generation, placement ordinal) onto the low ones, then Fibonacci hashing on
    31 bits (the product stays below 2**63)."""
    folded = (value ^ (value >> 31)) & 0x7FFFFFFF
    return ((folded * 0x9E3779B1) >> 31) % buckets


_bucket = kernel(bucket_of)


@kernel
def _link(st, entry, value):
    """Insert ``entry`` (value ``value``) into its bucket's chain, in ascending order."""
    b = _bucket(value, 2 * st.trg_i8.shape[0])
    row = b >> 1
    column = Trig8.WATCH_HEAD + (b & 1)
    after = st.trg_i8[row, column]
    while after != 0 and after - 1 < entry:
        row = (after - 1) >> 1
        column = Trig8.WATCH_NEXT + ((after - 1) & 1)
        after = st.trg_i8[row, column]
    st.trg_i8[entry >> 1, Trig8.WATCH_NEXT + (entry & 1)] = after
    st.trg_i8[row, column] = entry + 1


@kernel
def _unlink(st, entry, value):
    """Take ``entry`` (filed under ``value``) out of its bucket's chain."""
    b = _bucket(value, 2 * st.trg_i8.shape[0])
    row = b >> 1
    column = Trig8.WATCH_HEAD + (b & 1)
    at = st.trg_i8[row, column]
    while at != 0 and at - 1 != entry:
        row = (at - 1) >> 1
        column = Trig8.WATCH_NEXT + ((at - 1) & 1)
        at = st.trg_i8[row, column]
    own = Trig8.WATCH_NEXT + (entry & 1)
    if at != 0:
        st.trg_i8[row, column] = st.trg_i8[entry >> 1, own]
    st.trg_i8[entry >> 1, own] = 0


@kernel
def watch_set(st, slot, role, value):
    """Set the PRIMARY (``role`` 0) or PARTNER (1) of trigger row ``slot`` to ``value`` (an
    order id; 0: watches nothing) and file the row under it. The only writer of those two
    columns. O(chain length)."""
    column = Trig8.PRIMARY + role
    old = st.trg_i8[slot, column]
    if old == value:
        return
    entry = 2 * slot + role
    if old != 0:
        _unlink(st, entry, old)
    st.trg_i8[slot, column] = value
    if value != 0:
        _link(st, entry, value)


@kernel
def watcher_after(st, order_id, after):
    """The lowest slot above ``after`` (NIL: any) of a row whose PRIMARY or PARTNER is
    ``order_id`` (not 0), or NIL. O(chain length)."""
    b = _bucket(order_id, 2 * st.trg_i8.shape[0])
    at = st.trg_i8[b >> 1, Trig8.WATCH_HEAD + (b & 1)]
    while at != 0:
        entry = at - 1
        slot = entry >> 1
        if slot > after and st.trg_i8[slot, Trig8.PRIMARY + (entry & 1)] == order_id:
            return slot
        at = st.trg_i8[slot, Trig8.WATCH_NEXT + (entry & 1)]
    return NIL


def link_index_of(rows: np.ndarray) -> np.ndarray:
    """The index columns (int64[capacity, 4]) that trigger rows ``rows`` call for, from
    their PRIMARY and PARTNER values alone. O(capacity + entries x log entries)."""
    capacity = rows.shape[0]
    index = np.zeros((capacity, 4), dtype=np.int64)
    values = np.ascontiguousarray(rows[:, Trig8.PRIMARY : Trig8.PARTNER + 1]).reshape(-1)
    entries = np.flatnonzero(values).astype(np.int64)  # ascending: 2 * slot + role
    if not len(entries):
        return index
    buckets = bucket_of(values[entries], 2 * capacity)
    order = np.lexsort((entries, buckets))
    entries, buckets = entries[order], buckets[order]
    first = np.ones(len(entries), dtype=bool)
    first[1:] = buckets[1:] != buckets[:-1]
    heads, starts = buckets[first], entries[first]
    # WATCH_HEAD is index column 2 (+ the bucket's low bit), WATCH_NEXT column 0 (+ role)
    index[heads >> 1, 2 + (heads & 1)] = starts + 1
    chained = ~first[1:]
    before, after = entries[:-1][chained], entries[1:][chained]
    index[before >> 1, before & 1] = after + 1
    return index


def rebuild_link_index(rows: np.ndarray) -> None:
    """Rewrite the index columns of trigger rows ``rows`` in place from their PRIMARY and
    PARTNER values (after a snapshot load or a pool growth changed the rows or the bucket
    count). Only rows whose columns differ are written, so the rows of a mapped snapshot
    whose index is right stay shared with the file. O(capacity + entries x log entries)."""
    index = link_index_of(rows)
    stale = np.flatnonzero(np.any(rows[:, INDEX_COLUMNS] != index, axis=1))
    if len(stale):
        rows[stale, INDEX_COLUMNS] = index[stale]


def check_link_index(rows: np.ndarray) -> None:
    """Raise AssertionError unless the index columns of ``rows`` equal a rebuild."""
    if not np.array_equal(rows[:, INDEX_COLUMNS], link_index_of(rows)):
        raise AssertionError("link index differs from a rebuild from the trigger rows")
