"""The arena: the whole ``State`` in one byte buffer. ``pack`` copies a state into a fresh
arena (between batches, O(state size)); ``unpack`` rebuilds the ``State`` views from it
inside a kernel (O(number of State fields): no copy, no allocation, no checks: a few
instructions per field, and LLVM drops those of the fields a kernel never reads). A call
hands a kernel two arrays (arena and layout) instead of two dozen, which is what a
per-command call pays for.

The layout is trusted inside the kernels: ``pack`` builds it, and ``check_layout``
validates one read from elsewhere (a snapshot) before an engine adopts it.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

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


def check_layout(arena: np.ndarray, layout: np.ndarray) -> None:
    """Raise ValueError unless ``layout`` describes ``len(State._fields)`` sections of the
    right sizes, each inside ``arena`` and aligned for its dtype (what ``unpack`` assumes
    without checking). ``arena`` must be a C-contiguous uint8 vector. O(fields)."""
    if arena.dtype != np.uint8 or arena.ndim != 1 or not arena.flags.c_contiguous:
        raise ValueError("the arena must be a C-contiguous uint8 vector")
    if layout.shape != (len(State._fields), 3) or layout.dtype != np.int64:
        raise ValueError(f"the layout must be int64 [{len(State._fields)}, 3]")
    for index, name in enumerate(State._fields):
        begin, rows, columns = (int(value) for value in layout[index])
        itemsize = np.dtype(FIELD_DTYPES[name]).itemsize
        nbytes = (rows * columns if columns > 0 else rows) * itemsize
        if begin < 0 or rows < 0 or columns < 0 or begin + nbytes > arena.shape[0]:
            raise ValueError(f"layout row {index} ({name}) lies outside the arena")
        if (arena.ctypes.data + begin) % itemsize:
            raise ValueError(f"layout row {index} ({name}) is not aligned")


@intrinsic
def view_at(typingctx, base, offset, shape, dtype):
    """A C-contiguous array of ``dtype`` and ``shape`` (an integer or a pair) over the
    memory at byte ``offset`` from ``base`` (an array's first byte, or an address as an
    integer or ``void*``). No checks and no reference counting (the view owns nothing: its
    memory must outlive it), so it needs no NRT, unlike ``numba.carray``. Compiled code
    only."""
    if isinstance(shape, types.Integer):
        ndim = 1
    elif isinstance(shape, types.UniTuple) and isinstance(shape.dtype, types.Integer):
        ndim = shape.count
    else:
        raise TypingError("view_at: shape must be an integer or a tuple of integers")
    if not isinstance(base, (types.Array, types.Integer, types.RawPointer, types.CPointer)):
        raise TypingError("view_at: base must be an array or an address")
    element = dtype.dtype
    result = types.Array(element, ndim, "C")

    def codegen(context, builder, signature, args):
        base_value, offset_value, shape_value, _ = args
        byte_pointer = ir.IntType(8).as_pointer()
        base_type = signature.args[0]
        if isinstance(base_type, types.Array):
            start = context.make_array(base_type)(context, builder, base_value).data
            start = builder.bitcast(start, byte_pointer)
        elif isinstance(base_type, types.Integer):
            start = builder.inttoptr(base_value, byte_pointer)
        else:
            start = builder.bitcast(base_value, byte_pointer)
        offset_value = context.cast(builder, offset_value, signature.args[1], types.intp)
        data_type = context.get_data_type(element)
        data = builder.bitcast(builder.gep(start, [offset_value]), data_type.as_pointer())
        if ndim == 1:
            dims = [context.cast(builder, shape_value, signature.args[2], types.intp)]
        else:
            dims = [
                context.cast(builder, value, signature.args[2].dtype, types.intp)
                for value in cgutils.unpack_tuple(builder, shape_value, ndim)
            ]
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(data_type))
        strides = [itemsize]
        for dim in reversed(dims[1:]):
            strides.insert(0, builder.mul(strides[0], dim))
        view = context.make_array(result)(context, builder)
        populate_array(
            view,
            data=data,
            shape=cgutils.pack_array(builder, dims),
            strides=cgutils.pack_array(builder, strides),
            itemsize=itemsize,
            meminfo=None,
        )
        return view._getvalue()

    return result(base, offset, shape, dtype), codegen


if numba.config.DISABLE_JIT:
    # the plain-Python pass (NUMBA_DISABLE_JIT=1) cannot call an intrinsic: numpy views
    # of the same bytes, with numpy's checks

    def _section(arena, layout, index, dtype, ndim):
        rows, columns = int(layout[index, 1]), int(layout[index, 2])
        shape = (rows, columns) if ndim == 2 else (rows,)
        return np.ndarray(shape, dtype, buffer=arena, offset=int(layout[index, 0]))

    def _i8_1(arena, layout, index):
        return _section(arena, layout, index, np.int64, 1)

    def _i8_2(arena, layout, index):
        return _section(arena, layout, index, np.int64, 2)

    def _i4_1(arena, layout, index):
        return _section(arena, layout, index, np.int32, 1)

    def _i4_2(arena, layout, index):
        return _section(arena, layout, index, np.int32, 2)

    def _u8_1(arena, layout, index):
        return _section(arena, layout, index, np.uint64, 1)

else:

    @inline_kernel
    def _i8_1(arena, layout, index):
        return view_at(arena, layout[index, 0], layout[index, 1], np.int64)

    @inline_kernel
    def _i8_2(arena, layout, index):
        return view_at(arena, layout[index, 0], (layout[index, 1], layout[index, 2]), np.int64)

    @inline_kernel
    def _i4_1(arena, layout, index):
        return view_at(arena, layout[index, 0], layout[index, 1], np.int32)

    @inline_kernel
    def _i4_2(arena, layout, index):
        return view_at(arena, layout[index, 0], (layout[index, 1], layout[index, 2]), np.int32)

    @inline_kernel
    def _u8_1(arena, layout, index):
        return view_at(arena, layout[index, 0], layout[index, 1], np.uint64)


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
