"""Column groups of the conditional-order state (``State.trg_*``), private to ``core/``.

A trigger order lives in one row of ``st.trg_i8`` from placement until it fires or is
cancelled. While untriggered it is linked into its trigger book: one doubly linked list per
(instrument, source) in placement order (``st.trg_book`` row ``instrument * 3 + source``).
Once crossed it moves to the fire queue (one FIFO list, ``TrigMeta.QUEUE_HEAD``), where it
waits for its turn under the per-command cap. Ids: ``TRIGGER_ID_TAG | placed << 24 | slot``,
so ids ascend in placement order (time priority) and name their slot.
"""

from __future__ import annotations

from enum import IntEnum

#: Slot bits of a trigger id (``max_triggers`` is at most 2**24).
SLOT_BITS = 24
SLOT_MASK = (1 << SLOT_BITS) - 1
#: Rows of ``trg_book`` per instrument: one per TriggerSource.
SOURCES = 3
#: ``TrigBook.ABOVE_MIN`` of a book with no fire-above trigger.
NO_ABOVE = (1 << 62) - 1

UNUSED = 0
UNTRIGGERED = 1
QUEUED = 2  # crossed: waits in the fire queue
HELD = 3  # a linked secondary waiting for its primary's fills: in no book, not queued

#: Role bits of ``Trig8.LINK`` (>> 4): a secondary of an OTO primary, a member of an OCO pair.
ROLE_SECONDARY = 1
ROLE_OCO = 2


class Trig8(IntEnum):
    """Trigger orders, int64 columns (``st.trg_i8``)."""

    STATE = 0  # UNUSED, UNTRIGGERED or QUEUED
    PLACED = 1  # placement ordinal (1, 2, ...): time priority; part of the id
    ACCOUNT = 2
    INSTRUMENT = 3
    SPEC = 4  # type | source << 2 | order type << 4 | tif << 5 | flags << 8
    QTY = 5
    PRICE = 6  # limit price of the order it spawns (0: market)
    TRIGGER = 7  # trigger price (trailing: follows the best price seen)
    OFFSET = 8  # trailing offset (0 otherwise)
    REFERENCE = 9  # trailing: the best price seen since placement
    CROSSED = 10  # the source price that crossed the trigger (once QUEUED)
    NEXT = 11  # next in the book, the fire queue or the free list
    PREV = 12  # previous in the book
    # linked orders (core/order_links.py); all 0 for a trigger outside a group
    LINK = 13  # link type | fill condition << 2 | role << 4 (ROLE_* bits)
    PRIMARY = 14  # OTO role: id of the primary it watches (its spawned order once it fired)
    PARTNER = 15  # OCO role: id of the other leg it watches (its spawned order once it fired)
    FULL = 16  # the quantity it was placed with
    BASE = 17  # quantity of the watched order (the pro-rata denominator)
    SEEN = 18  # lots of the watched order filled so far
    # the link index (core/link_index.py): derived from PRIMARY / PARTNER, rebuilt on load
    WATCH_NEXT = 19  # entry after this row's PRIMARY entry in its bucket (+1 for PARTNER's)
    WATCH_NEXT_PARTNER = 20
    WATCH_HEAD = 21  # first entry of bucket 2 x slot (+1 for bucket 2 x slot + 1)
    WATCH_HEAD_ODD = 22


class TrigBook(IntEnum):
    """Trigger books, int64 columns (``st.trg_book``, row ``instrument * 3 + source``)."""

    HEAD = 0
    TAIL = 1
    COUNT = 2
    BELOW_MAX = 3  # >= every trigger price that fires at or below it (0: none); may be stale
    ABOVE_MIN = 4  # <= every trigger price that fires at or above it; may be stale
    TRAILING = 5  # trailing orders in the book (they move with every price)
    LAST_PRICE = 6  # source LAST rows: the instrument's last trade price (0: none yet)


class TrigMeta(IntEnum):
    """Counters of the subsystem (``st.trg_meta``)."""

    FIRE_CAP = 0  # config: orders spawned per command at most
    MAX = 1  # config: max_triggers
    HWM = 2
    FREE_HEAD = 3
    FREE_COUNT = 4
    LIVE = 5  # untriggered + queued
    PLACED = 6  # last placement ordinal
    QUEUE_HEAD = 7
    QUEUE_TAIL = 8
    QUEUE_LEN = 9
    STEP_FIRED = 10  # spawned since the last command ended
    SCAN_FROM = 11  # events of the current / last command: [SCAN_FROM, SCAN_TO)
    SCAN_TO = 12
    SCAN_DUE = 13  # 1: the last command's events are not evaluated yet
    SCAN_SEQ = 14  # seq of the last command (stamped on what the trigger stage emits)
    LINKED = 15  # live trigger orders that belong to a group (order_links)


TRIGGER_FIELDS = len(Trig8)
BOOK_FIELDS = len(TrigBook)
META_FIELDS = 16
