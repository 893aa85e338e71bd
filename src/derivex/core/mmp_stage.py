"""Market-maker protection commands (SET_MMP_CONFIG, RESET_MMP) and the MMP stage that
cancels a breached group's orders after the command (see ``core/mmp.py`` for the rules).

SET_MMP_CONFIG sets an account's group (underlying, group code): interval and frozen time in
seconds, the lot, delta and vega limits; it resets the group (unfrozen, no window). Interval
0 removes the config (the group is off; its slot can be reused once no quote names it).
Rejects, in this order: the trading gate (UNKNOWN_ACCOUNT, ACCOUNT_BLOCKED, SYSTEM_ACCOUNT,
ACCOUNT_IN_LIQUIDATION, GAS_EXHAUSTED), UNKNOWN_UNDERLYING, BAD_MMP_CONFIG (a negative limit;
an enabled group with no limit), MMP_GROUP_UNKNOWN (removing a group that has no config),
MMP_GROUPS_FULL (no free slot). RESET_MMP unfreezes the group and closes its window:
MMP_GROUP_UNKNOWN unless it is configured. Both answer ACCEPTED (instrument = underlying,
qty_lots = slot, label = group code).

Cost: O(MMP_SLOTS) per command, O(account's orders on the underlying) to find a reusable
slot; the stage O(positions^2 + orders cancelled) per breached group, as CANCEL_ALL.
"""

from __future__ import annotations

import numpy as np

from derivex.core.arena import unpack
from derivex.core.batch_symbol import ARENA, EVENTS, I64, LAYOUT, register
from derivex.core.config import P_MAX_UNDERLYINGS
from derivex.core.emit import accepted, set_label
from derivex.core.jit import cold_kernel, inline_kernel, kernel
from derivex.core.layout import (
    NIL,
    STATUS_DONE,
    STATUS_EVENTS,
    Account4,
    Counter,
    Ins4,
    Order4,
    Pos4,
)
from derivex.core.matching import cancel_resting
from derivex.core.mmp import mmp_col, mmp_enabled, mmp_find
from derivex.core.mmp_layout import (
    MMP_FIELDS,
    MMP_SLOTS,
    NANOS_PER_SECOND,
    QUOTE_TAG_MASK,
    QUOTE_TAG_SHIFT,
    Mmp8,
    MmpMeta,
)
from derivex.core.order_checks import admit_trader, reject
from derivex.core.pools import position_release_if_idle
from derivex.core.records import CommandKind, EventKind, Liquidity, OrderFlag, Reason


@kernel
def _tag_in_use(st, account, slot):
    """Whether a resting quote of the account names group ``slot``. O(account's orders)."""
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        order = st.pos_i4[position, Pos4.ORDER_HEAD]
        while order != NIL:
            tag = (st.ord_i4[order, Order4.META] >> QUOTE_TAG_SHIFT) & QUOTE_TAG_MASK
            if tag == slot + 1:
                return True
            order = st.ord_i4[order, Order4.POSITION_NEXT]
        position = st.pos_i4[position, Pos4.NEXT]
    return False


@kernel
def _free_slot(st, account):
    """Lowest slot that is unused, or removed (interval 0) and named by no resting quote."""
    for slot in range(MMP_SLOTS):
        if st.mmp[account, mmp_col(slot, Mmp8.UNDERLYING)] == 0:
            return slot
    for slot in range(MMP_SLOTS):
        if not mmp_enabled(st, account, slot) and not _tag_in_use(st, account, slot):
            return slot
    return -1


@kernel
def _reset(st, account, slot):
    base = slot * MMP_FIELDS
    st.mmp[account, base + Mmp8.WINDOW_END] = 0
    st.mmp[account, base + Mmp8.QTY] = 0
    st.mmp[account, base + Mmp8.DELTA] = 0
    st.mmp[account, base + Mmp8.VEGA] = 0
    st.mmp[account, base + Mmp8.FROZEN_UNTIL] = 0


@kernel
def _answer(ev, n, seq, kind, account, underlying, slot, group):
    n = accepted(ev, n, seq, kind, account, underlying, 0, slot, 0)
    set_label(ev, n, group)
    return n


@kernel
def set_mmp_config(st, ev, n, cmds, i):
    """SET_MMP_CONFIG (module docstring)."""
    c = cmds[i]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    underlying = np.int64(c["mmp_underlying"])
    if underlying < 1 or underlying >= st.params[P_MAX_UNDERLYINGS]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_UNDERLYING, 0)
    group = np.int64(c["mmp_group"])
    interval = np.int64(c["mmp_interval_s"]) * NANOS_PER_SECOND
    qty_limit = c["mmp_qty_limit_lots"]
    delta_limit = c["mmp_delta_limit"]
    vega_limit = c["mmp_vega_limit"]
    if qty_limit < 0 or delta_limit < 0 or vega_limit < 0:
        return reject(st, ev, n, cmds, i, Reason.BAD_MMP_CONFIG, 0)
    if interval > 0 and qty_limit == 0 and delta_limit == 0 and vega_limit == 0:
        return reject(st, ev, n, cmds, i, Reason.BAD_MMP_CONFIG, 0)
    slot = mmp_find(st, account, underlying, group)
    if slot < 0 and interval == 0:
        return reject(st, ev, n, cmds, i, Reason.MMP_GROUP_UNKNOWN, 0)
    if slot < 0:
        slot = _free_slot(st, account)
        if slot < 0:
            return reject(st, ev, n, cmds, i, Reason.MMP_GROUPS_FULL, 0)
        if st.mmp[account, mmp_col(slot, Mmp8.UNDERLYING)] == 0:
            st.mmp_meta[MmpMeta.GROUPS] += 1
    base = slot * MMP_FIELDS
    st.mmp[account, base + Mmp8.UNDERLYING] = underlying
    st.mmp[account, base + Mmp8.GROUP] = group
    st.mmp[account, base + Mmp8.INTERVAL] = interval
    st.mmp[account, base + Mmp8.FROZEN_TIME] = np.int64(c["mmp_frozen_s"]) * NANOS_PER_SECOND
    st.mmp[account, base + Mmp8.QTY_LIMIT] = qty_limit
    st.mmp[account, base + Mmp8.DELTA_LIMIT] = delta_limit
    st.mmp[account, base + Mmp8.VEGA_LIMIT] = vega_limit
    _reset(st, account, slot)
    return _answer(ev, n, c["seq"], CommandKind.SET_MMP_CONFIG, account, underlying, slot, group)


@kernel
def reset_mmp(st, ev, n, cmds, i):
    """RESET_MMP (module docstring)."""
    c = cmds[i]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    underlying = np.int64(c["mmp_underlying"])
    group = np.int64(c["mmp_group"])
    slot = mmp_find(st, account, underlying, group)
    if not mmp_enabled(st, account, slot):
        return reject(st, ev, n, cmds, i, Reason.MMP_GROUP_UNKNOWN, 0)
    _reset(st, account, slot)
    return _answer(ev, n, c["seq"], CommandKind.RESET_MMP, account, underlying, slot, group)


@kernel
def mmp_stage(st, ev, n, arena, layout):
    """After a command, its trigger stage and any TIME command's phases: for each group
    that breached (in breach order), MMP_TRIGGERED and the cancels of its orders. Returns
    ``(n, status, need)``; on EVENTS the loop returns and the stage resumes at the group it
    stopped at. O(1) when no group breached; otherwise a call of its own by its C symbol,
    on ``arena`` and ``layout`` (``st``'s memory: ``core/batch_symbol.py``)."""
    if st.mmp_meta[MmpMeta.PENDING] == 0 or st.counters[Counter.TIME_PHASE] != 0:
        return n, STATUS_DONE, 0
    return call_mmp_stage_full(arena, layout, ev, n)


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def _mmp_stage_full(st, ev, n):
    m = st.mmp_meta
    while m[MmpMeta.PENDING] > 0:
        rid = m[MmpMeta.PENDING_HEAD]
        account = rid // MMP_SLOTS
        slot = rid % MMP_SLOTS
        room = 2 + np.int64(st.acc_i4[account, Account4.OPEN_ORDERS])
        if n + room > ev.shape[0]:
            return n, STATUS_EVENTS, room
        base = slot * MMP_FIELDS
        row = st.mmp[account]
        n = _triggered(ev, n, row, base, account, slot)
        n = _cancel_group(st, ev, n, row, base, account, slot)
        m[MmpMeta.PENDING_HEAD] = row[base + Mmp8.NEXT]
        m[MmpMeta.PENDING] -= 1
        if m[MmpMeta.PENDING] == 0:
            m[MmpMeta.PENDING_TAIL] = -1
        row[base + Mmp8.PENDING] = 0
        row[base + Mmp8.PENDING_SEQ] = 0
        row[base + Mmp8.NEXT] = 0
    return n, STATUS_DONE, 0


@kernel
def _triggered(ev, n, row, base, account, slot):
    e = ev[n]
    e["seq"] = row[base + Mmp8.PENDING_SEQ]
    e["kind"] = EventKind.MMP_TRIGGERED
    e["command"] = row[base + Mmp8.PENDING]
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = slot
    e["account"] = account
    e["instrument"] = row[base + Mmp8.UNDERLYING]
    e["order_id"] = row[base + Mmp8.GROUP]
    e["price_ticks"] = row[base + Mmp8.DELTA]
    e["qty_lots"] = row[base + Mmp8.QTY]
    e["a"] = row[base + Mmp8.FROZEN_UNTIL]
    e["b"] = row[base + Mmp8.VEGA]
    return n + 1


@kernel
def _in_group(meta, slot, default):
    """Whether an order with ``meta`` belongs to group ``slot`` (``default``: code 0)."""
    flags = (meta >> 1) & 0xFF
    tag = (meta >> QUOTE_TAG_SHIFT) & QUOTE_TAG_MASK
    if flags & OrderFlag.QUOTE:
        return tag == slot + 1 or (tag == 0 and default)
    return default and (flags & OrderFlag.MMP) != 0


@kernel
def _cancel_group(st, ev, n, row, base, account, slot):
    """Cancel the group's orders: instrument ascending (the instruments of its underlying),
    each position's orders in list order, as CANCEL_ALL orders them."""
    # as a command's seq (uint64): cancel_resting compiles once, for the commands' type
    seq = np.uint64(row[base + Mmp8.PENDING_SEQ])
    command = row[base + Mmp8.PENDING]
    underlying = row[base + Mmp8.UNDERLYING]
    default = row[base + Mmp8.GROUP] == 0
    last = np.int64(-1)
    while True:
        chosen = NIL
        chosen_instrument = np.int64(0)
        position = st.acc_i4[account, Account4.POSITION_HEAD]
        while position != NIL:
            candidate = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
            if (
                st.pos_i4[position, Pos4.ORDERS] > 0
                and candidate > last
                and st.ins_i4[candidate, Ins4.UNDERLYING] == underlying
                and (chosen == NIL or candidate < chosen_instrument)
            ):
                chosen = position
                chosen_instrument = candidate
            position = st.pos_i4[position, Pos4.NEXT]
        if chosen == NIL:
            return n
        order = st.pos_i4[chosen, Pos4.ORDER_HEAD]
        while order != NIL:
            following = st.ord_i4[order, Order4.POSITION_NEXT]
            meta = st.ord_i4[order, Order4.META]
            if _in_group(meta, slot, default):
                n, _ = cancel_resting(
                    st,
                    ev,
                    n,
                    seq,
                    command,
                    order,
                    chosen_instrument,
                    meta & 1,
                    Reason.CANCEL_MMP_TRIGGERED,
                    0,
                )
            order = following
        position_release_if_idle(st, chosen)
        last = chosen_instrument


@cold_kernel
def _mmp_stage_symbol(arena, layout, ev, n):
    """``_mmp_stage_full`` on the State over ``arena`` (the caller's memory)."""
    return _mmp_stage_full(unpack(arena, layout), ev, n)


call_mmp_stage_full = register(
    "derivex_mmp_stage", _mmp_stage_symbol, (ARENA, LAYOUT, EVENTS, I64), __file__
)
