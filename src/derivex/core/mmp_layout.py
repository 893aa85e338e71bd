"""Column groups of the market-maker protection state (``State.mmp*``), private to ``core/``.

Each account has ``MMP_SLOTS`` groups in one row of ``st.mmp`` (``MMP_FIELDS`` int64 columns
per group, group ``g`` at columns ``g * MMP_FIELDS`` onwards). A group is keyed by
(underlying, group code); code 0 is the default group, the one MMP-flagged orders and quotes
without a group belong to. A quote placed for a named group carries the group's slot + 1 in
bits ``QUOTE_TAG_SHIFT`` of its ``Order4.META``. Groups that breached and still have to
cancel their orders are chained (row id ``account * MMP_SLOTS + slot``) from
``MmpMeta.PENDING_HEAD`` until the MMP stage after the command has run.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

#: Groups per account (default and named groups over all underlyings together).
MMP_SLOTS = 6
#: ``Order4.META`` bit where a named-group quote's slot + 1 starts (3 bits; flags end at 8).
QUOTE_TAG_SHIFT = 9
QUOTE_TAG_MASK = 7
#: ``Mmp8.FROZEN_UNTIL`` of a group frozen until RESET_MMP (frozen time 0).
FOREVER = (1 << 63) - 1
#: Bound of the window accumulators (saturating: a sum this large breaches any limit).
SATURATED = 1 << 62
NANOS_PER_SECOND = 1_000_000_000


class Mmp8(IntEnum):
    """One MMP group, int64 columns (offset within the group's block of ``st.mmp``)."""

    UNDERLYING = 0  # 0: the slot is unused
    GROUP = 1  # group code (0: default group)
    INTERVAL = 2  # window length, ns; 0: the config is removed (the group is off)
    FROZEN_TIME = 3  # ns a breach freezes the group for; 0: until RESET_MMP
    QTY_LIMIT = 4  # lots; 0: none
    DELTA_LIMIT = 5  # lots x delta_nano; 0: none
    VEGA_LIMIT = 6  # collateral units; 0: none
    WINDOW_END = 7  # the current window ends (exclusive) at this time; 0: no window open
    QTY = 8  # lots filled in the window
    DELTA = 9  # net delta filled (buys +), lots x delta_nano, saturating
    VEGA = 10  # net vega filled, collateral units, saturating
    FROZEN_UNTIL = 11  # frozen while the clock is below this (0: never frozen)
    PENDING = 12  # CommandKind of the breaching command while its cancels are due, else 0
    PENDING_SEQ = 13  # seq of that command
    NEXT = 14  # next pending row id (-1: last)


class MmpMeta(IntEnum):
    """Counters of the subsystem (``st.mmp_meta``)."""

    PENDING_HEAD = 0  # first pending row id (-1: none)
    PENDING_TAIL = 1
    PENDING = 2  # pending rows
    GROUPS = 3  # slots in use, all accounts (0: the subsystem was never used)


MMP_FIELDS = len(Mmp8)
MMP_META_FIELDS = 8


def mmp_arrays(accounts: int) -> dict[str, Any]:
    """The MMP arrays of a fresh state with room for ``accounts``. O(accounts)."""
    meta = np.zeros(MMP_META_FIELDS, dtype=np.int64)
    meta[MmpMeta.PENDING_HEAD] = -1
    meta[MmpMeta.PENDING_TAIL] = -1
    return {
        "mmp": np.zeros((accounts, MMP_SLOTS * MMP_FIELDS), dtype=np.int64),
        "mmp_meta": meta,
    }
