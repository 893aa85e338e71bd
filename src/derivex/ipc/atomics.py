"""Atomic memory operations and low-level OS helpers usable from ``@njit`` code.

numba has no CPU atomics, and LLVM freely hoists plain array loads out of spin
loops (``while a[0] == 0: pass`` may compile to an infinite loop).  This module
emits the LLVM atomic instructions directly through ``numba.extending.intrinsic``:

* :func:`load_acquire` -> ``load atomic i64, ptr %p acquire, align 8``
* :func:`store_release` -> ``store atomic i64 %v, ptr %p release, align 8``
* :func:`compare_exchange` -> ``cmpxchg ptr %p, i64 %old, i64 %new acq_rel acquire``
* :func:`fence_acquire`, :func:`fence_release`, :func:`fence_seq_cst` -> ``fence ...``
* :func:`copy_bytes` -> ``llvm.memcpy`` between uint8 arrays (numba's own
  element loops are not vectorised here because of index wraparound checks)

The memory-ordering guarantees come from the LLVM memory model (== C++11), so
they hold on weakly ordered CPUs (ARM, POWER) too; nothing here relies on x86
TSO.  All operations take a 1-D ``int64`` or ``uint64`` array and an element
index; the element must be 8-byte aligned (every array handed out by
:mod:`derivex.ipc` is).  Inside njit code the index is *not* bounds checked
unless numba's boundscheck is enabled.

OS helpers, also intrinsics (external libc symbols, so ``cache=True`` works):
:func:`cpu_relax` (x86 ``pause`` / ARM ``yield``), :func:`sched_yield`,
:func:`sleep_ns` (``nanosleep``) and :func:`monotonic_ns`
(``clock_gettime(CLOCK_MONOTONIC)``, the same clock as ``time.monotonic_ns``
on Linux).

Python-level access goes through the small njit wrappers :func:`atomic_load`,
:func:`atomic_store`, :func:`atomic_cas`, which validate their arguments first.
"""

from __future__ import annotations

import platform
import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "atomic_cas",
    "atomic_load",
    "atomic_store",
    "compare_exchange",
    "copy_bytes",
    "cpu_relax",
    "fence_acquire",
    "fence_release",
    "fence_seq_cst",
    "load_acquire",
    "monotonic_ns",
    "sched_yield",
    "sleep_ns",
    "store_release",
]

_WORD_TYPES = (types.int64, types.uint64)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_MACHINE = platform.machine().lower()
# CLOCK_MONOTONIC is 1 on Linux; this module targets Linux (POSIX shm + /proc).
_CLOCK_MONOTONIC = 1 if sys.platform.startswith("linux") else 6


def _is_word_array(arr) -> bool:
    return (
        isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype in _WORD_TYPES and arr.mutable
    )


def _element_ptr(context, builder, arrty, arr, idx, idxty):
    ary = context.make_array(arrty)(context, builder, arr)
    index = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(
        context,
        builder,
        arrty,
        ary,
        [index],
        wraparound=False,
        boundscheck=context.enable_boundscheck,
    )


@intrinsic
def load_acquire(typingctx, arr, idx):
    """``arr[idx]`` as an atomic load with acquire ordering."""
    if not _is_word_array(arr) or not isinstance(idx, types.Integer):
        return None
    sig = arr.dtype(arr, idx)

    def codegen(context, builder, signature, args):
        arrty, idxty = signature.args
        ptr = _element_ptr(context, builder, arrty, args[0], args[1], idxty)
        return builder.load_atomic(ptr, ordering="acquire", align=8)

    return sig, codegen


@intrinsic
def store_release(typingctx, arr, idx, val):
    """``arr[idx] = val`` as an atomic store with release ordering."""
    if (
        not _is_word_array(arr)
        or not isinstance(idx, types.Integer)
        or not isinstance(val, types.Integer)
    ):
        return None
    sig = types.void(arr, idx, val)

    def codegen(context, builder, signature, args):
        arrty, idxty, valty = signature.args
        ptr = _element_ptr(context, builder, arrty, args[0], args[1], idxty)
        value = context.cast(builder, args[2], valty, arrty.dtype)
        builder.store_atomic(value, ptr, ordering="release", align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def compare_exchange(typingctx, arr, idx, expected, desired):
    """Strong CAS: if ``arr[idx] == expected`` store ``desired``.

    Returns the value found in ``arr[idx]`` (equal to ``expected`` on
    success).  Ordering: acq_rel on success, acquire on failure.
    """
    if (
        not _is_word_array(arr)
        or not isinstance(idx, types.Integer)
        or not isinstance(expected, types.Integer)
        or not isinstance(desired, types.Integer)
    ):
        return None
    sig = arr.dtype(arr, idx, expected, desired)

    def codegen(context, builder, signature, args):
        arrty, idxty, expty, desty = signature.args
        ptr = _element_ptr(context, builder, arrty, args[0], args[1], idxty)
        exp = context.cast(builder, args[2], expty, arrty.dtype)
        des = context.cast(builder, args[3], desty, arrty.dtype)
        pair = builder.cmpxchg(ptr, exp, des, "acq_rel", "acquire")
        return builder.extract_value(pair, 0)

    return sig, codegen


def _fence_codegen(ordering):
    def codegen(context, builder, signature, args):
        builder.fence(ordering)
        return context.get_dummy_value()

    return codegen


@intrinsic
def fence_acquire(typingctx):
    """Acquire fence: earlier loads are ordered before later loads and stores."""
    return types.void(), _fence_codegen("acquire")


@intrinsic
def fence_release(typingctx):
    """Release fence: earlier loads and stores are ordered before later stores."""
    return types.void(), _fence_codegen("release")


@intrinsic
def fence_seq_cst(typingctx):
    """Full, sequentially consistent fence."""
    return types.void(), _fence_codegen("seq_cst")


@intrinsic
def cpu_relax(typingctx):
    """Spin-loop hint: x86 ``pause``, AArch64 ``yield``; a no-op elsewhere."""

    def codegen(context, builder, signature, args):
        if _MACHINE in ("x86_64", "amd64", "i686", "i386"):
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        elif _MACHINE in ("aarch64", "arm64"):
            fnty = ir.FunctionType(ir.VoidType(), [_I32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.aarch64.hint")
            builder.call(fn, [ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def sched_yield(typingctx):
    """Call libc ``sched_yield()``; returns its int result."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(_I32, [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        return builder.call(fn, [])

    return types.int32(), codegen


_TIMESPEC = ir.LiteralStructType([_I64, _I64])  # struct timespec on LP64


@intrinsic
def sleep_ns(typingctx, ns):
    """``nanosleep`` for ``ns`` nanoseconds (non-positive: return immediately)."""
    if not isinstance(ns, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        (nsty,) = signature.args
        value = context.cast(builder, args[0], nsty, types.int64)
        fnty = ir.FunctionType(_I32, [_TIMESPEC.as_pointer(), _TIMESPEC.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "nanosleep")
        with builder.if_then(builder.icmp_signed(">", value, ir.Constant(_I64, 0))):
            ts = cgutils.alloca_once(builder, _TIMESPEC)
            billion = ir.Constant(_I64, 1_000_000_000)
            builder.store(builder.sdiv(value, billion), cgutils.gep_inbounds(builder, ts, 0, 0))
            builder.store(builder.srem(value, billion), cgutils.gep_inbounds(builder, ts, 0, 1))
            builder.call(fn, [ts, ir.Constant(_TIMESPEC.as_pointer(), None)])
        return context.get_dummy_value()

    return types.void(ns), codegen


@intrinsic
def monotonic_ns(typingctx):
    """``clock_gettime(CLOCK_MONOTONIC)`` in nanoseconds (== ``time.monotonic_ns()``)."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(_I32, [_I32, _TIMESPEC.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, _TIMESPEC)
        builder.call(fn, [ir.Constant(_I32, _CLOCK_MONOTONIC), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(_I64, 1_000_000_000)), nsec)

    return types.int64(), codegen


@intrinsic
def copy_bytes(typingctx, dst, dst_off, src, src_off, nbytes):
    """``dst[dst_off:dst_off+nbytes] = src[src_off:src_off+nbytes]`` as one ``llvm.memcpy``.

    ``dst`` and ``src`` are 1-D C-contiguous uint8 arrays that must not
    overlap in the copied range.  Not bounds checked: callers guarantee the
    ranges (the ring kernels derive them from the array shapes).
    """
    if (
        not (isinstance(dst, types.Array) and dst.dtype == types.uint8 and dst.ndim == 1)
        or not (isinstance(src, types.Array) and src.dtype == types.uint8 and src.ndim == 1)
        or dst.layout != "C"
        or src.layout != "C"
        or not all(isinstance(t, types.Integer) for t in (dst_off, src_off, nbytes))
    ):
        return None

    def codegen(context, builder, signature, args):
        dty, doty, sty, soty, nty = signature.args
        dptr = _element_ptr(context, builder, dty, args[0], args[1], doty)
        sptr = _element_ptr(context, builder, sty, args[2], args[3], soty)
        count = context.cast(builder, args[4], nty, types.intp)
        with builder.if_then(builder.icmp_signed(">", count, ir.Constant(count.type, 0))):
            cgutils.raw_memcpy(builder, dptr, sptr, count, 1)
        return context.get_dummy_value()

    return types.void(dst, dst_off, src, src_off, nbytes), codegen


# --------------------------------------------------------------------------
# Python-level access
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _load(arr, idx):
    return load_acquire(arr, idx)


@njit(cache=True, nogil=True)
def _store(arr, idx, val):
    store_release(arr, idx, val)


@njit(cache=True, nogil=True)
def _cas(arr, idx, expected, desired):
    return compare_exchange(arr, idx, expected, desired)


def _check(arr: np.ndarray, idx: int) -> int:
    if (
        not isinstance(arr, np.ndarray)
        or arr.ndim != 1
        or arr.dtype
        not in (
            np.dtype(np.int64),
            np.dtype(np.uint64),
        )
    ):
        raise TypeError("atomics need a 1-D int64/uint64 numpy array")
    if not arr.flags.writeable:
        raise ValueError("atomics need a writeable array")
    idx = int(idx)
    if not 0 <= idx < arr.shape[0]:
        raise IndexError(f"index {idx} out of range for length {arr.shape[0]}")
    if not arr.flags.aligned or arr.dtype.alignment < 8:
        raise ValueError("atomic element is not 8-byte aligned")
    return idx


def atomic_load(arr: np.ndarray, idx: int) -> int:
    """Load-acquire ``arr[idx]`` from Python."""
    return int(_load(arr, _check(arr, idx)))


def atomic_store(arr: np.ndarray, idx: int, value: int) -> None:
    """Store-release ``arr[idx] = value`` from Python."""
    _store(arr, _check(arr, idx), arr.dtype.type(value))


def atomic_cas(arr: np.ndarray, idx: int, expected: int, desired: int) -> int:
    """Compare-and-swap from Python; returns the previous value."""
    t = arr.dtype.type
    return int(_cas(arr, _check(arr, idx), t(expected), t(desired)))
