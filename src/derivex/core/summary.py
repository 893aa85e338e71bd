"""Layouts shared by the per-command door's two halves (``core/entry.py``, compiled, and
``derivex.door``, Python): the context vector and the summary row of one order command.
Constants only, so that importing them compiles nothing."""

from __future__ import annotations

from enum import IntEnum


class Ctx(IntEnum):
    """Slots of the context vector (int64) shared by the caller and the entry points."""

    ARENA = 0  # address of the arena's first byte
    ARENA_BYTES = 1
    LAYOUT = 2  # address of the layout (int64 [LAYOUT_ROWS, 3])
    LAYOUT_ROWS = 3
    COMMAND = 4  # address of a one-record command buffer
    EVENTS = 5  # address of the event buffer
    EVENT_CAPACITY = 6
    CURSOR = 7  # next free event index
    LOG = 8  # address of the summary log (int64 [LOG_CAPACITY, ROW_WIDTH])
    LOG_CAPACITY = 9
    LOG_NEXT = 10  # next free row


CTX_WIDTH = 16


class Row(IntEnum):
    """Columns of one summary row (int64)."""

    START = 0  # the command's events are events[START:END] of the buffer it was given
    END = 1
    OUTCOME = 2  # Outcome
    REASON = 3  # Reason of a reject, else 0
    ORDER_ID = 4
    PRICE_TICKS = 5  # the order's price as accepted
    ORDERED_LOTS = 6  # quantity as accepted
    FILLED_LOTS = 7  # filled by this command
    NOTIONAL = 8  # sum of price x lots over its fills (average price = NOTIONAL / FILLED)


ROW_WIDTH = 9


class Outcome(IntEnum):
    REJECTED = 0
    RESTING = 1
    FILLED = 2
    EXPIRED = 3
    CANCELLED = 4
