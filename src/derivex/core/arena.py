"""The arena: the whole ``State`` in one byte buffer. ``pack`` copies a state into a fresh
arena (between batches, O(state size)); ``unpack`` rebuilds the ``State`` views from it
inside a kernel (O(number of State fields): no copy, no allocation). A call hands a kernel
two arrays (arena and layout) instead of two dozen, which is what a per-command call pays
for.
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import inline_kernel
from derivex.core.state import FIELD_DTYPES, State

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


@inline_kernel
def _bytes(arena, layout, index, itemsize):
    rows = layout[index, 1]
    columns = layout[index, 2]
    count = rows * columns if columns > 0 else rows
    begin = layout[index, 0]
    return arena[begin : begin + count * itemsize]


@inline_kernel
def _i8_1(arena, layout, index):
    return _bytes(arena, layout, index, 8).view(np.int64)


@inline_kernel
def _i8_2(arena, layout, index):
    flat = _bytes(arena, layout, index, 8).view(np.int64)
    return flat.reshape((layout[index, 1], layout[index, 2]))


@inline_kernel
def _i4_1(arena, layout, index):
    return _bytes(arena, layout, index, 4).view(np.int32)


@inline_kernel
def _i4_2(arena, layout, index):
    flat = _bytes(arena, layout, index, 4).view(np.int32)
    return flat.reshape((layout[index, 1], layout[index, 2]))


@inline_kernel
def _u8_1(arena, layout, index):
    return _bytes(arena, layout, index, 8).view(np.uint64)


@inline_kernel
def unpack(arena, layout):
    """The State views over ``arena`` (field order and dtypes as in ``state.State``)."""
    return State(
        _i8_1(arena, layout, 0),  # params
        _i8_1(arena, layout, 1),  # counters
        _i8_2(arena, layout, 2),  # acc_i8
        _i4_2(arena, layout, 3),  # acc_i4
        _i8_2(arena, layout, 4),  # ins_i8
        _i4_2(arena, layout, 5),  # ins_i4
        _i8_2(arena, layout, 6),  # pos_i8
        _i4_2(arena, layout, 7),  # pos_i4
        _i4_1(arena, layout, 8),  # pos_free
        _i8_1(arena, layout, 9),  # hash_key
        _i4_1(arena, layout, 10),  # hash_val
        _i8_2(arena, layout, 11),  # ord_i8
        _i4_2(arena, layout, 12),  # ord_i4
        _u8_1(arena, layout, 13),  # ord_label
        _i8_2(arena, layout, 14),  # lvl_i8
        _i4_2(arena, layout, 15),  # lvl_i4
        _i4_1(arena, layout, 16),  # lvl_free
        _i8_2(arena, layout, 17),  # ladder_price
        _i4_2(arena, layout, 18),  # ladder_level
        _i4_1(arena, layout, 19),  # ladder_len
        _i8_1(arena, layout, 20),  # scan_used
        _i4_1(arena, layout, 21),  # scan_accounts
        _i8_2(arena, layout, 22),  # und_i8
        _i8_2(arena, layout, 23),  # und_hist
        _i8_2(arena, layout, 24),  # ins_arr
        _i8_2(arena, layout, 25),  # ins_arr_next
        _i8_2(arena, layout, 26),  # acc_risk
        _i8_2(arena, layout, 27),  # acc_scen
        _i8_1(arena, layout, 28),  # scratch
        _i8_2(arena, layout, 29),  # trg_i8
        _u8_1(arena, layout, 30),  # trg_label
        _i8_1(arena, layout, 31),  # trg_scratch
        _i8_2(arena, layout, 32),  # trg_book
        _i8_1(arena, layout, 33),  # trg_acct
        _i8_1(arena, layout, 34),  # trg_meta
        _i4_2(arena, layout, 35),  # sub_i4
        _i8_2(arena, layout, 36),  # mmp
        _i8_1(arena, layout, 37),  # mmp_meta
        _i8_2(arena, layout, 38),  # xfr
    )
