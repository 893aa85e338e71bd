"""Canonical leaf encodings of the state root: accounts, instruments, books, globals.

Every encoding is little-endian and packed (no padding); docs/journal.md has the tables.
Account leaves are built for any set of ids at once with numpy (the live position slots
are selected, sorted by (account, instrument) and laid out per account); only the final
SHA-256 per leaf is a Python loop (~1.5 µs per account). A book leaf commits to its full
FIFO content through a digest of its orders walked best level first by a compiled kernel.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from derivex.core import query
from derivex.core.mmp_query import mmp_digest
from derivex.core.state import State, next_order_ids
from derivex.journal.verify import ACCOUNT_HEAD, ACCOUNT_TAG, LEAF_PREFIX, POSITION_ENTRY

ACCOUNT_HEAD_DTYPE = np.dtype(
    [
        ("tag", "u1"),
        ("account", "<u4"),
        ("status", "<i4"),
        ("stp", "<i4"),
        ("balance_units", "<i8"),
        ("open_orders", "<i4"),
        ("positions", "<u4"),
    ]
)
POSITION_DTYPE = np.dtype(
    [
        ("instrument", "<u4"),
        ("qty_lots", "<i8"),
        ("basis_units", "<i8"),
        ("open_buy_lots", "<i8"),
        ("open_sell_lots", "<i8"),
        ("orders", "<i4"),
    ]
)
INSTRUMENT_DTYPE = np.dtype(
    [
        ("tag", "u1"),
        ("instrument", "<u4"),
        ("kind", "<i4"),
        ("option_type", "<i4"),
        ("underlying", "<i4"),
        ("status", "<i4"),
        ("strike_ticks", "<i8"),
        ("expiry_ts_ns", "<i8"),
        ("tick_size_ticks", "<i8"),
        ("min_trade_lots", "<i8"),
        ("contract_value_units", "<i8"),
        ("maker_fee_ppm", "<i8"),
        ("taker_fee_ppm", "<i8"),
        ("max_price_ticks", "<i8"),
        ("resting_orders", "<i4"),
    ]
)
BOOK_DTYPE = np.dtype(
    [
        ("tag", "u1"),
        ("instrument", "<u4"),
        ("bid_orders", "<u8"),
        ("ask_orders", "<u8"),
        ("bid_levels", "<u4"),
        ("ask_levels", "<u4"),
        ("orders_digest", "u1", (32,)),
    ]
)
INSTRUMENT_TAG, BOOK_TAG, GLOBALS_TAG = 0x49, 0x42, 0x47  # "I", "B", "G"
#: counters committed by the globals leaf, in this order (``query.GLOBAL_COUNTER_NAMES``)
GLOBAL_COUNTERS = query.GLOBAL_COUNTER_NAMES

assert ACCOUNT_HEAD_DTYPE.itemsize == ACCOUNT_HEAD.size
assert POSITION_DTYPE.itemsize == POSITION_ENTRY.size


account_count = query.account_count
instrument_count = query.instrument_count


def _account_parts(state: State, ids: np.ndarray) -> tuple[bytes, bytes, list[int]]:
    """Encoded heads, encoded position entries and per-account entry offsets for ``ids``
    (sorted, unique, existing accounts)."""
    heads = np.zeros(len(ids), dtype=ACCOUNT_HEAD_DTYPE)
    heads["tag"] = ACCOUNT_TAG
    heads["account"] = ids
    for name, values in query.account_heads(state, ids).items():
        heads[name] = values
    slots, owners, instruments = query.live_positions(state)
    if len(ids) != account_count(state):  # a subset: keep the positions of ``ids``
        wanted = np.zeros(account_count(state), dtype=bool)
        wanted[ids] = True
        keep = wanted[owners]
        slots, owners, instruments = slots[keep], owners[keep], instruments[keep]
    order = np.lexsort((instruments, owners))
    slots, owners = slots[order], owners[order]
    entries = np.zeros(len(slots), dtype=POSITION_DTYPE)
    entries["instrument"] = instruments[order]
    for name, values in query.position_columns(state, slots).items():
        entries[name] = values
    counts = np.bincount(np.searchsorted(ids, owners), minlength=len(ids))
    heads["positions"] = counts
    starts = np.concatenate(([0], np.cumsum(counts))).tolist()
    return heads.tobytes(), entries.tobytes(), starts


def account_payload(state: State, account: int) -> bytes:
    """The encoded leaf of one account. Raises KeyError if it does not exist."""
    if not 0 <= account < account_count(state):
        raise KeyError(f"no account {account}")
    heads, entries, _ = _account_parts(state, np.array([account], dtype=np.int64))
    return heads + entries


def account_hashes(state: State, ids: np.ndarray) -> bytes:
    """Leaf hashes of ``ids`` (sorted, unique, existing), concatenated. Cost: O(live
    positions) numpy work plus one SHA-256 per account."""
    heads, entries, starts = _account_parts(state, ids)
    head_size, entry_size = ACCOUNT_HEAD.size, POSITION_ENTRY.size
    sha256, prefix = hashlib.sha256, LEAF_PREFIX
    out = bytearray(32 * len(ids))
    for k in range(len(ids)):
        head = heads[head_size * k : head_size * (k + 1)]
        entry = entries[entry_size * starts[k] : entry_size * starts[k + 1]]
        out[32 * k : 32 * k + 32] = sha256(prefix + head + entry).digest()
    return bytes(out)


def instrument_payloads(state: State, ids: np.ndarray) -> list[bytes]:
    records = np.zeros(len(ids), dtype=INSTRUMENT_DTYPE)
    records["tag"] = INSTRUMENT_TAG
    records["instrument"] = ids
    for name, values in query.instrument_columns(state, ids).items():
        records[name] = values
    return [record.tobytes() for record in records]


def book_payload(state: State, instrument: int) -> bytes:
    """The encoded leaf of one book. Cost: O(orders in the book) (one compiled walk and
    one SHA-256 over 48 bytes per order)."""
    resting = query.resting_orders(state, instrument)
    rows = np.empty((resting, 6), dtype=np.int64)
    counts = np.zeros(4, dtype=np.int64)
    n = query.book_rows(state, np.int64(instrument), rows, counts)
    if n != resting:
        raise AssertionError(f"book {instrument}: walked {n} orders, {resting} resting")
    record = np.zeros(1, dtype=BOOK_DTYPE)
    record["tag"] = BOOK_TAG
    record["instrument"] = instrument
    record["bid_orders"], record["ask_orders"] = counts[0], counts[1]
    record["bid_levels"], record["ask_levels"] = counts[2], counts[3]
    digest = hashlib.sha256(rows.astype("<i8", copy=False).tobytes()).digest()
    record["orders_digest"][0] = np.frombuffer(digest, dtype=np.uint8)
    return record.tobytes()


def globals_payload(state: State) -> bytes:
    """Configuration, clock, money totals, pool counters and the next order ids."""
    params = state.params.astype("<i8")
    counters = query.global_counters(state).astype("<i8")
    return (
        struct.pack("<BII", GLOBALS_TAG, len(params), len(counters))
        + params.tobytes()
        + counters.tobytes()
        + struct.pack("<3Q", *next_order_ids(state))
        + trigger_digest(state)
        + query.subaccount_digest(state)
        + mmp_digest(state)
        + transfer_digest(state)
    )


def transfer_digest(state: State) -> bytes:
    """SHA-256 of the transfer table (escrow and processed-transfer sets, core/escrow.py),
    or nothing while the domain never transferred, so older roots stay as they were."""
    rows = query.transfers(state)
    if not rows:
        return b""
    return hashlib.sha256(repr(sorted(rows.items())).encode()).digest()


def trigger_digest(state: State) -> bytes:
    """SHA-256 of the canonical trigger state (trigger books, fire queue, last prices):
    part of the globals leaf, which every checkpoint rehashes. Cost: O(trigger pool)."""
    view = query.canonical_triggers(state)
    return hashlib.sha256(repr(sorted(view.items())).encode()).digest()
