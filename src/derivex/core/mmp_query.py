"""Reading the market-maker protection state (``core/mmp.py``) for shells, the canonical
form and the state root. Cost: O(accounts x MMP_SLOTS) numpy for the whole-state views,
O(MMP_SLOTS) for one account.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from derivex.core.layout import Counter, Ins4, Order4, Pos4
from derivex.core.mmp_layout import (
    FOREVER,
    MMP_FIELDS,
    MMP_SLOTS,
    QUOTE_TAG_MASK,
    QUOTE_TAG_SHIFT,
    SATURATED,
    Mmp8,
    MmpMeta,
)
from derivex.core.state import State

__all__ = [
    "FOREVER",
    "MMP_SLOTS",
    "MmpGroup",
    "canonical_mmp",
    "check_mmp_invariants",
    "mmp_digest",
    "mmp_groups",
]


class MmpGroup(NamedTuple):
    """One configured MMP group of an account (times in ns, limits in core units)."""

    slot: int
    underlying: int
    group: int  # group code, 0 = default
    interval_ns: int  # 0: removed
    frozen_time_ns: int  # 0: frozen until reset
    qty_limit_lots: int
    delta_limit: int
    vega_limit: int
    window_end_ns: int
    qty_lots: int
    delta: int
    vega: int
    frozen_until_ns: int  # frozen while the clock is below it (FOREVER: until reset)
    frozen: bool  # at the engine clock


def mmp_groups(state: State, account: int) -> list[MmpGroup]:
    """The account's groups in slot order (removed ones too, interval 0); [] for an
    unknown account. O(MMP_SLOTS)."""
    if not 0 <= account < int(state.counters[Counter.ACCOUNT_HWM]):
        return []
    now = int(state.counters[Counter.CLOCK_NS])
    row = state.mmp[account]
    groups = []
    for slot in range(MMP_SLOTS):
        block = [int(v) for v in row[slot * MMP_FIELDS : (slot + 1) * MMP_FIELDS]]
        if block[Mmp8.UNDERLYING] == 0:
            continue
        enabled = block[Mmp8.INTERVAL] > 0
        groups.append(
            MmpGroup(
                slot,
                block[Mmp8.UNDERLYING],
                block[Mmp8.GROUP],
                block[Mmp8.INTERVAL],
                block[Mmp8.FROZEN_TIME],
                block[Mmp8.QTY_LIMIT],
                block[Mmp8.DELTA_LIMIT],
                block[Mmp8.VEGA_LIMIT],
                block[Mmp8.WINDOW_END],
                block[Mmp8.QTY],
                block[Mmp8.DELTA],
                block[Mmp8.VEGA],
                block[Mmp8.FROZEN_UNTIL],
                enabled and block[Mmp8.FROZEN_UNTIL] > now,
            )
        )
    return groups


def canonical_mmp(state: State) -> list[tuple[int, ...]]:
    """Every used group as ``(account, slot, field values...)``, account and slot
    ascending: part of the canonical state."""
    hwm = int(state.counters[Counter.ACCOUNT_HWM])
    table = state.mmp[:hwm].reshape(hwm, MMP_SLOTS, MMP_FIELDS)
    accounts, slots = np.nonzero(table[:, :, Mmp8.UNDERLYING] != 0)
    return [
        (int(a), int(s), *(int(v) for v in table[a, s]))
        for a, s in zip(accounts, slots, strict=True)
    ]


def mmp_digest(state: State) -> bytes:
    """SHA-256 of ``canonical_mmp`` for the state root's globals leaf, or b"" when no
    account ever configured MMP (so roots of logs without MMP are unchanged)."""
    groups = canonical_mmp(state)
    if not groups:
        return b""
    return hashlib.sha256(repr(groups).encode()).digest()


def check_mmp_invariants(state: State) -> None:
    """Between batches: no group is pending, the used-slot count is right, every group's
    sums are within the saturation bound, and every quote that names a group names a used
    slot of its account on its instrument's underlying. Raises ``AssertionError``.
    Cost: O(accounts x MMP_SLOTS + live orders)."""
    hwm = int(state.counters[Counter.ACCOUNT_HWM])
    table = state.mmp[:hwm].reshape(hwm, MMP_SLOTS, MMP_FIELDS)
    meta = state.mmp_meta
    assert int(meta[MmpMeta.PENDING]) == 0 and int(meta[MmpMeta.PENDING_HEAD]) == -1, "mmp pending"
    used = table[:, :, Mmp8.UNDERLYING] != 0
    assert int(meta[MmpMeta.GROUPS]) == int(used.sum()), "mmp group count"
    assert not table[:, :, Mmp8.PENDING].any(), "mmp group left pending"
    for field in (Mmp8.QTY, Mmp8.DELTA, Mmp8.VEGA):
        assert int(np.abs(table[:, :, field]).max(initial=0)) <= SATURATED, f"mmp {field.name}"
    assert int(table[:, :, Mmp8.QTY].min(initial=0)) >= 0, "mmp negative lots"
    live = np.flatnonzero(state.ord_i4[:, Order4.POSITION] >= 0)
    tags = (state.ord_i4[live, Order4.META] >> QUOTE_TAG_SHIFT) & QUOTE_TAG_MASK
    for slot, tag in zip(live[tags != 0].tolist(), tags[tags != 0].tolist(), strict=True):
        position = int(state.ord_i4[slot, Order4.POSITION])
        account = int(state.pos_i4[position, Pos4.ACCOUNT])
        underlying = int(
            state.ins_i4[int(state.pos_i4[position, Pos4.INSTRUMENT]), Ins4.UNDERLYING]
        )
        assert tag <= MMP_SLOTS, f"order slot {slot}: mmp tag {tag}"
        assert int(table[account, tag - 1, Mmp8.UNDERLYING]) == underlying, f"order {slot} tag"
