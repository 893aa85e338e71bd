"""Market-maker protection (MMP): per account and group, the lots, net delta and net vega
filled in a window of command time; a breach freezes the group, cancels its quotes and MMP
orders, and refuses new ones until the frozen time has passed or RESET_MMP.

A group is (account, underlying, group code); code 0 is the default group. What counts:
fills of mass-quote orders (the quote's named group, or the default group when the mass
quote named none) and of orders placed with ``OrderFlag.MMP`` (the default group), as maker
or taker. A fill at time ``t`` (the command's ``ts_ns``, i.e. the engine clock) opens a
window ``[t, t + interval)`` if none is open, then adds ``lots``, ``lots x delta_nano``
(buys +, sells -) and ``lots x vega_nano / 1e9`` (truncated toward zero) of the
instrument's RISK_GREEKS; the group breaches when the lots reach ``QTY_LIMIT`` or the
absolute delta / vega reaches its limit (limits of 0 are off). A breach sets
``FROZEN_UNTIL = t + frozen time`` (frozen time 0: ``FOREVER``, until RESET_MMP), closes
the window and marks the group pending: the MMP stage (``core/mmp_stage.py``), which the
batch loop runs after each command and its trigger stage, emits MMP_TRIGGERED and cancels
the group's orders. The breaching command itself completes (a sweep fills every quote it
reaches); fills of a frozen group do not count.

This module holds what the order paths call (matching, order validation, mass quotes); it
imports none of them. Cost: O(MMP_SLOTS) per flagged fill or check; O(1) otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from derivex.core.batch_symbol import I64, register
from derivex.core.jit import cold_kernel, inline_kernel, kernel
from derivex.core.layout import Counter, Ins4, Ins8, Order4, Pos8
from derivex.core.mmp_layout import (
    FOREVER,
    MMP_FIELDS,
    MMP_SLOTS,
    NANOS_PER_SECOND,
    QUOTE_TAG_MASK,
    QUOTE_TAG_SHIFT,
    SATURATED,
    Mmp8,
    MmpMeta,
)
from derivex.core.records import OrderFlag, OrderType, Reason, Side

_COUNTED = OrderFlag.QUOTE | OrderFlag.MMP


@kernel
def mmp_col(slot, field):
    """Column of ``field`` of group ``slot`` in an account's row of ``st.mmp``."""
    return slot * MMP_FIELDS + field


@kernel
def mmp_find(st, account, underlying, group):
    """Slot of the account's group (underlying, group code), or -1. O(MMP_SLOTS)."""
    for slot in range(MMP_SLOTS):
        if (
            st.mmp[account, mmp_col(slot, Mmp8.UNDERLYING)] == underlying
            and st.mmp[account, mmp_col(slot, Mmp8.GROUP)] == group
        ):
            return slot
    return -1


@kernel
def mmp_enabled(st, account, slot):
    return slot >= 0 and st.mmp[account, mmp_col(slot, Mmp8.INTERVAL)] > 0


@kernel
def mmp_frozen(st, account, slot, now):
    """Whether an enabled group is frozen at ``now``."""
    return (
        mmp_enabled(st, account, slot) and st.mmp[account, mmp_col(slot, Mmp8.FROZEN_UNTIL)] > now
    )


@kernel
def saturating_add(a, b):
    """``a + b`` clamped to [-SATURATED, SATURATED] (both within it already)."""
    total = a + b
    if total > SATURATED:
        return np.int64(SATURATED)
    if total < -SATURATED:
        return np.int64(-SATURATED)
    return total


@kernel
def saturating_product(lots, per_lot):
    """``lots * per_lot`` (lots > 0) clamped to [-SATURATED, SATURATED]."""
    magnitude = per_lot if per_lot >= 0 else -per_lot
    if magnitude != 0 and lots > SATURATED // magnitude:
        return np.int64(SATURATED) if per_lot > 0 else np.int64(-SATURATED)
    return lots * per_lot


@kernel
def time_after(now, span):
    """``now + span`` (span >= 0), FOREVER where it would overflow."""
    if span > FOREVER - now:
        return np.int64(FOREVER)
    return now + span


@kernel
def mmp_order_reason(st, account, instrument, order_type, flags):
    """Reason an order with ``flags`` may not be placed for MMP: BAD_FLAGS for a market
    order with the MMP flag, MMP_FROZEN while the account's default group of the
    instrument's underlying is frozen; OK otherwise (also without any MMP config)."""
    if not flags & OrderFlag.MMP:
        return Reason.OK
    if order_type == OrderType.MARKET:
        return Reason.BAD_FLAGS
    if st.mmp_meta[MmpMeta.GROUPS] == 0:
        return Reason.OK
    slot = mmp_find(st, account, np.int64(st.ins_i4[instrument, Ins4.UNDERLYING]), 0)
    if mmp_frozen(st, account, slot, st.counters[Counter.CLOCK_NS]):
        return Reason.MMP_FROZEN
    return Reason.OK


@kernel
def mmp_quote_reason(st, cmds, i, count, account):
    """``(reason, leg)`` refusing a mass quote for MMP: a leg that quotes (some side has
    lots) in a named group the account has not configured (or removed) for the leg's
    underlying is MMP_GROUP_UNKNOWN; in a frozen group, MMP_FROZEN. Legs that only withdraw
    are never refused. O(count x MMP_SLOTS)."""
    group = np.int64(cmds[i]["mmp_group"])
    if group == 0 and st.mmp_meta[MmpMeta.GROUPS] == 0:
        return Reason.OK, 0
    now = st.counters[Counter.CLOCK_NS]
    for j in range(count):
        leg = cmds[i + 1 + j]
        if leg["bid_qty_lots"] == 0 and leg["ask_qty_lots"] == 0:
            continue
        underlying = np.int64(st.ins_i4[np.int64(leg["instrument"]), Ins4.UNDERLYING])
        slot = mmp_find(st, account, underlying, group)
        if group != 0 and not mmp_enabled(st, account, slot):
            return Reason.MMP_GROUP_UNKNOWN, j + 1
        if mmp_frozen(st, account, slot, now):
            return Reason.MMP_FROZEN, j + 1
    return Reason.OK, 0


@kernel
def mmp_tag_quotes(st, cmds, i, account, instrument, position):
    """After a leg of a mass quote naming a group: mark the position's new quotes with the
    group's slot (so a breach of that group finds them). O(MMP_SLOTS)."""
    group = np.int64(cmds[i]["mmp_group"])
    if group == 0:
        return
    slot = mmp_find(st, account, np.int64(st.ins_i4[instrument, Ins4.UNDERLYING]), group)
    tag = np.int32((slot + 1) << QUOTE_TAG_SHIFT)
    bid = st.pos_i8[position, Pos8.QUOTE_BID]
    if bid != 0:
        order = np.int64(bid & 0xFFFFFFFF)
        st.ord_i4[order, Order4.META] = st.ord_i4[order, Order4.META] | tag
    ask = st.pos_i8[position, Pos8.QUOTE_ASK]
    if ask != 0:
        order = np.int64(ask & 0xFFFFFFFF)
        st.ord_i4[order, Order4.META] = st.ord_i4[order, Order4.META] | tag


@kernel
def mmp_group_of(st, account, meta, instrument):
    """The slot of the enabled group an order with ``meta`` counts toward, or -1."""
    flags = (meta >> 1) & 0xFF
    if not flags & _COUNTED or st.mmp_meta[MmpMeta.GROUPS] == 0:
        return -1
    tag = (meta >> QUOTE_TAG_SHIFT) & QUOTE_TAG_MASK
    if tag != 0 and flags & OrderFlag.QUOTE:
        slot = np.int64(tag - 1)
    else:
        slot = mmp_find(st, account, np.int64(st.ins_i4[instrument, Ins4.UNDERLYING]), 0)
    if not mmp_enabled(st, account, slot):
        return -1
    return slot


@kernel
def mmp_fill(st, account, meta, instrument, side, lots, seq, command):
    """A fill of ``lots`` of an order with ``meta`` (``Order4.META``) of ``account``: count
    it toward its MMP group, if any (O(1) for orders that are neither quotes nor MMP)."""
    if not ((meta >> 1) & _COUNTED) or st.mmp_meta[MmpMeta.GROUPS] == 0:
        return
    # a call of its own by its C symbol with the five arrays it reads (not the State: a
    # call with the State makes every caller build all its views)
    call_mmp_count(
        st.counters, st.ins_i8, st.ins_i4, st.mmp, st.mmp_meta,
        account, meta, instrument, side, lots, seq, command,
    )  # fmt: skip


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def _mmp_count(st, account, meta, instrument, side, lots, seq, command):
    slot = mmp_group_of(st, account, meta, instrument)
    now = st.counters[Counter.CLOCK_NS]
    if slot < 0 or mmp_frozen(st, account, slot, now):
        return
    row = st.mmp[account]
    base = slot * MMP_FIELDS
    if now >= row[base + Mmp8.WINDOW_END]:
        row[base + Mmp8.WINDOW_END] = time_after(now, row[base + Mmp8.INTERVAL])
        row[base + Mmp8.QTY] = 0
        row[base + Mmp8.DELTA] = 0
        row[base + Mmp8.VEGA] = 0
    sign = np.int64(1) if side == Side.BUY else np.int64(-1)
    delta = saturating_product(lots, st.ins_i8[instrument, Ins8.DELTA])
    vega = saturating_product(lots, st.ins_i8[instrument, Ins8.VEGA])
    vega_units = vega // NANOS_PER_SECOND if vega >= 0 else -((-vega) // NANOS_PER_SECOND)
    row[base + Mmp8.QTY] = saturating_add(row[base + Mmp8.QTY], lots)
    row[base + Mmp8.DELTA] = saturating_add(row[base + Mmp8.DELTA], sign * delta)
    row[base + Mmp8.VEGA] = saturating_add(row[base + Mmp8.VEGA], sign * vega_units)
    if _breached(row, base):
        frozen = row[base + Mmp8.FROZEN_TIME]
        row[base + Mmp8.FROZEN_UNTIL] = time_after(now, frozen) if frozen > 0 else FOREVER
        row[base + Mmp8.WINDOW_END] = 0
        row[base + Mmp8.PENDING] = command
        row[base + Mmp8.PENDING_SEQ] = np.int64(seq)
        row[base + Mmp8.NEXT] = -1
        rid = account * MMP_SLOTS + slot
        m = st.mmp_meta
        tail = m[MmpMeta.PENDING_TAIL]
        if tail < 0:
            m[MmpMeta.PENDING_HEAD] = rid
        else:
            st.mmp[tail // MMP_SLOTS, mmp_col(tail % MMP_SLOTS, Mmp8.NEXT)] = rid
        m[MmpMeta.PENDING_TAIL] = rid
        m[MmpMeta.PENDING] += 1


@kernel
def _breached(row, base):
    qty_limit = row[base + Mmp8.QTY_LIMIT]
    delta_limit = row[base + Mmp8.DELTA_LIMIT]
    vega_limit = row[base + Mmp8.VEGA_LIMIT]
    delta = row[base + Mmp8.DELTA]
    vega = row[base + Mmp8.VEGA]
    return (
        (qty_limit > 0 and row[base + Mmp8.QTY] >= qty_limit)
        or (delta_limit > 0 and (delta if delta >= 0 else -delta) >= delta_limit)
        or (vega_limit > 0 and (vega if vega >= 0 else -vega) >= vega_limit)
    )


class MmpViews(NamedTuple):
    """The State fields ``_mmp_count`` reads, under their State names (the kernels it
    calls read them as attributes of ``st``)."""

    counters: np.ndarray
    ins_i8: np.ndarray
    ins_i4: np.ndarray
    mmp: np.ndarray
    mmp_meta: np.ndarray


@cold_kernel
def _mmp_count_symbol(
    counters, ins_i8, ins_i4, mmp, mmp_meta, account, meta, instrument, side, lots, seq, command
):
    _mmp_count(
        MmpViews(counters, ins_i8, ins_i4, mmp, mmp_meta),
        account, meta, instrument, side, lots, seq, command,
    )  # fmt: skip
    return np.int64(0)  # (a value: the symbol's C wrapper returns one)


_I8_1 = numba.typeof(np.zeros(1, np.int64))
_I8_2 = numba.typeof(np.zeros((1, 1), np.int64))
call_mmp_count = register(
    "derivex_mmp_count",
    _mmp_count_symbol,
    (
        _I8_1,  # counters
        _I8_2,  # ins_i8
        numba.typeof(np.zeros((1, 1), np.int32)),  # ins_i4
        _I8_2,  # mmp
        _I8_1,  # mmp_meta
        *(I64, I64, I64, I64, I64, I64, I64),  # account, meta, ..., seq (int64), command
    ),
    __file__,
)
