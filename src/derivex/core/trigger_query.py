"""Reading the conditional-order state from Python: the canonical form of the trigger
books (part of ``canonical``/``state_hash``), the live trigger orders for shells, and the
invariants. Cost: O(trigger pool high-water mark + instruments).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from derivex.core.layout import NIL, Counter
from derivex.core.records import TRIGGER_ID_TAG
from derivex.core.state import State
from derivex.core.trigger_layout import (
    HELD,
    QUEUED,
    SLOT_BITS,
    SOURCES,
    TRIGGER_FIELDS,
    UNTRIGGERED,
    UNUSED,
    Trig8,
    TrigBook,
    TrigMeta,
)


def widen_trigger_rows(values: dict[str, np.ndarray]) -> bool:
    """Pad the trigger rows of a snapshot written before the linked-order columns
    (``Trig8.LINK`` on) with zeros, which mean "in no group" (``values``: the arrays by
    State field name). Returns whether it did. O(trigger pool)."""
    rows = values.get("trg_i8")
    if rows is None or rows.shape[1] >= TRIGGER_FIELDS:
        return False
    wide = np.zeros((rows.shape[0], TRIGGER_FIELDS), dtype=rows.dtype)
    wide[:, : rows.shape[1]] = rows
    values["trg_i8"] = wide
    return True


def _id(state: State, slot: int) -> int:
    return TRIGGER_ID_TAG | (int(state.trg_i8[slot, Trig8.PLACED]) << SLOT_BITS) | slot


def trigger_count(state: State, account: int) -> int:
    """Live trigger orders of ``account`` (untriggered or queued). O(1)."""
    if not 0 <= account < state.trg_acct.shape[0]:
        return 0
    return int(state.trg_acct[account])


def trigger_orders(state: State) -> list[dict[str, int]]:
    """Every live trigger order, by id (= placement order): its terms and state
    (``queued``: crossed, waiting for its turn to fire)."""
    rows = []
    for slot in range(int(state.trg_meta[TrigMeta.HWM])):
        t = state.trg_i8[slot]
        if int(t[Trig8.STATE]) == UNUSED:
            continue
        spec = int(t[Trig8.SPEC])
        row = {
            "trigger_id": _id(state, slot),
            "account": int(t[Trig8.ACCOUNT]),
            "instrument": int(t[Trig8.INSTRUMENT]),
            "side": (spec >> 16) & 1,
            "trigger_type": spec & 3,
            "trigger_source": (spec >> 2) & 3,
            "order_type": (spec >> 4) & 1,
            "tif": (spec >> 5) & 3,
            "flags": (spec >> 8) & 0xFF,
            "qty_lots": int(t[Trig8.QTY]),
            "price_ticks": int(t[Trig8.PRICE]),
            "trigger_price_ticks": int(t[Trig8.TRIGGER]),
            "trigger_offset_ticks": int(t[Trig8.OFFSET]),
            "reference_ticks": int(t[Trig8.REFERENCE]),
            "crossed_ticks": int(t[Trig8.CROSSED]),
            "queued": int(t[Trig8.STATE]) == QUEUED,
            "label": int(state.trg_label[slot]),
        }
        if int(t[Trig8.LINK]):  # only grouped rows carry these (older state roots unchanged)
            row.update(
                held=int(t[Trig8.STATE]) == HELD,
                link=int(t[Trig8.LINK]),
                primary=int(t[Trig8.PRIMARY]),
                partner=int(t[Trig8.PARTNER]),
                full_lots=int(t[Trig8.FULL]),
                base_lots=int(t[Trig8.BASE]),
                seen_lots=int(t[Trig8.SEEN]),
            )
        rows.append(row)
    rows.sort(key=lambda row: row["trigger_id"])
    return rows


def _walk(state: State, head: int) -> list[int]:
    slots = []
    slot = head
    while slot != NIL:
        slots.append(slot)
        if len(slots) > state.trg_i8.shape[0]:
            raise AssertionError("trigger list has a cycle")
        slot = int(state.trg_i8[slot, Trig8.NEXT])
    return slots


def last_prices(state: State) -> list[tuple[int, int]]:
    """(instrument, last trade price) of every instrument that has traded."""
    out = []
    for instrument in range(int(state.counters[Counter.INSTRUMENT_HWM])):
        price = int(state.trg_book[instrument * SOURCES, TrigBook.LAST_PRICE])
        if price:
            out.append((instrument, price))
    return out


def canonical_triggers(state: State) -> dict[str, Any]:
    """The trigger state as plain values: live orders, the fire queue, last prices, and
    what fixes future trigger ids (the free slots and the placement counter)."""
    m = state.trg_meta
    free = _walk(state, int(m[TrigMeta.FREE_HEAD]))[: int(m[TrigMeta.FREE_COUNT])]
    return {
        "orders": [tuple(row.values()) for row in trigger_orders(state)],
        "queue": [_id(state, s) for s in _walk(state, int(m[TrigMeta.QUEUE_HEAD]))],
        "last_prices": last_prices(state),
        "placed": int(m[TrigMeta.PLACED]),
        "hwm": int(m[TrigMeta.HWM]),
        "free": free,
        "fire_cap": int(m[TrigMeta.FIRE_CAP]),
    }


def check_trigger_invariants(state: State) -> None:
    """Books hold exactly the UNTRIGGERED triggers of their (instrument, source), in
    placement order; the queue exactly the QUEUED ones; counts per account and in total
    match; the free list holds the rest. Raises AssertionError."""
    m = state.trg_meta
    hwm = int(m[TrigMeta.HWM])
    seen: dict[int, str] = {}
    for row in range(int(state.counters[Counter.INSTRUMENT_HWM]) * SOURCES):
        b = state.trg_book[row]
        slots = _walk(state, int(b[TrigBook.HEAD]))
        assert len(slots) == int(b[TrigBook.COUNT]), f"book {row} count"
        assert (slots[-1] if slots else NIL) == int(b[TrigBook.TAIL]), f"book {row} tail"
        placed = [int(state.trg_i8[s, Trig8.PLACED]) for s in slots]
        assert placed == sorted(placed), f"book {row} not in placement order"
        for s in slots:
            t = state.trg_i8[s]
            assert int(t[Trig8.STATE]) == UNTRIGGERED, f"slot {s} in a book but not untriggered"
            spec = int(t[Trig8.SPEC])
            assert int(t[Trig8.INSTRUMENT]) * SOURCES + ((spec >> 2) & 3) == row
            seen[s] = "book"
    queue = _walk(state, int(m[TrigMeta.QUEUE_HEAD]))
    assert len(queue) == int(m[TrigMeta.QUEUE_LEN]), "queue length"
    for s in queue:
        assert int(state.trg_i8[s, Trig8.STATE]) == QUEUED and s not in seen
        seen[s] = "queue"
    for s in range(hwm):
        if int(state.trg_i8[s, Trig8.STATE]) == HELD:
            assert int(state.trg_i8[s, Trig8.LINK]) != 0, f"slot {s} held outside a group"
            seen[s] = "held"
    live = [s for s in range(hwm) if int(state.trg_i8[s, Trig8.STATE]) != UNUSED]
    linked = [s for s in live if int(state.trg_i8[s, Trig8.LINK]) != 0]
    assert len(linked) == int(m[TrigMeta.LINKED]), "linked count"
    assert sorted(seen) == live, "a live trigger is in no book and not queued"
    assert len(live) == int(m[TrigMeta.LIVE]), "live count"
    assert int(m[TrigMeta.FREE_COUNT]) == hwm - len(live), "free count"
    per_account: dict[int, int] = {}
    for s in live:
        account = int(state.trg_i8[s, Trig8.ACCOUNT])
        per_account[account] = per_account.get(account, 0) + 1
    for account in range(int(state.counters[Counter.ACCOUNT_HWM])):
        assert int(state.trg_acct[account]) == per_account.get(account, 0), f"account {account}"
