"""The canonical form of the state (plain Python values, independent of pool capacities
and slot layout, except order ids, which are part of the contract) and its hash. Two
states are the same state exactly when their canonical forms are equal. Cost: O(live
state).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from derivex.core.config import P_INDEX_HISTORY, P_MAX_UNDERLYINGS
from derivex.core.escrow import transfer_rows
from derivex.core.layout import (
    ACCOUNT_BLOCKED,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Order8,
    Pos4,
    Pos8,
    Und8,
)
from derivex.core.mmp_query import canonical_mmp
from derivex.core.records import Side
from derivex.core.state import State, book_side, free_order_slots, next_order_ids
from derivex.core.subaccount_query import subaccount_links
from derivex.core.trigger_query import canonical_triggers


def canonical(state: State) -> dict[str, Any]:
    """The state as plain Python values, independent of pool capacities and slot layout
    (except order ids, which are part of the contract). Cost: O(live state)."""
    c = state.counters
    accounts = []
    for account in range(int(c[Counter.ACCOUNT_HWM])):
        accounts.append(
            (
                account,
                int(state.acc_i8[account, Account8.BALANCE]),
                int(state.acc_i4[account, Account4.STP]),
                int(state.acc_i4[account, Account4.OPEN_ORDERS]),
                int(state.acc_i8[account, Account8.GAS]),
                int(state.acc_i8[account, Account8.GAS_TS]),
                int(state.acc_i4[account, Account4.MARGIN_MODE]),
                int(state.acc_i4[account, Account4.STATE]),
                tuple(int(v) for v in state.acc_risk[account]),
                tuple(int(v) for v in state.acc_scen[account]),
            )
        )
    instruments = []
    books = {}
    for instrument in range(int(c[Counter.INSTRUMENT_HWM])):
        i8, i4 = state.ins_i8[instrument, :], state.ins_i4[instrument, :]
        instruments.append(
            (
                instrument,
                int(i4[Ins4.KIND]),
                int(i4[Ins4.OPTION_TYPE]),
                int(i4[Ins4.UNDERLYING]),
                int(i4[Ins4.STATUS]),
                int(i8[Ins8.STRIKE]),
                int(i8[Ins8.EXPIRY]),
                int(i8[Ins8.TICK]),
                int(i8[Ins8.MIN_LOTS]),
                int(i8[Ins8.CONTRACT_VALUE]),
                int(i8[Ins8.MAKER_FEE]),
                int(i8[Ins8.TAKER_FEE]),
                int(i8[Ins8.MAX_PRICE]),
                int(i4[Ins4.RESTING]),
                tuple(int(v) for v in i8[Ins8.MARK :]),
                int(i4[Ins4.DIRTY]),
                tuple(int(v) for v in state.ins_arr[instrument]),
                tuple(int(v) for v in state.ins_arr_next[instrument]),
            )
        )
        books[instrument] = {
            "bids": book_side(state, instrument, Side.BUY),
            "asks": book_side(state, instrument, Side.SELL),
        }
    positions = []
    for slot in np.flatnonzero(state.pos_i4[:, Pos4.LIVE] == 1):
        positions.append(
            (
                int(state.pos_i4[slot, Pos4.ACCOUNT]),
                int(state.pos_i4[slot, Pos4.INSTRUMENT]),
                int(state.pos_i8[slot, Pos8.QTY]),
                int(state.pos_i8[slot, Pos8.BASIS]),
                int(state.pos_i8[slot, Pos8.OPEN_BUY]),
                int(state.pos_i8[slot, Pos8.OPEN_SELL]),
                int(state.pos_i4[slot, Pos4.ORDERS]),
                int(state.pos_i8[slot, Pos8.BUY_VALUE]),
                int(state.pos_i8[slot, Pos8.SELL_VALUE]),
            )
        )
    positions.sort()
    underlyings = []
    history = int(state.params[P_INDEX_HISTORY])
    for u in range(int(state.params[P_MAX_UNDERLYINGS])):
        row = tuple(int(v) for v in state.und_i8[u])
        if any(row):
            head, length = row[Und8.HIST_HEAD], row[Und8.HIST_LEN]
            rows = [(head - length + k) % history for k in range(length)]
            kept = tuple(tuple(int(v) for v in state.und_hist[u * history + r]) for r in rows)
            underlyings.append((u, row, kept))
    view: dict[str, Any] = {
        "clock_ns": int(c[Counter.CLOCK_NS]),
        "total_deposits": int(c[Counter.TOTAL_DEPOSITS]),
        "total_withdrawals": int(c[Counter.TOTAL_WITHDRAWALS]),
        "accounts": accounts,
        "instruments": instruments,
        "positions": positions,
        "books": books,
        "underlyings": underlyings,
        "risk_dirty": int(c[Counter.RISK_DIRTY]),
        "bad_debt": int(c[Counter.BAD_DEBT]),
        "next_order_ids": next_order_ids(state),
        "triggers": canonical_triggers(state),
    }
    transfers = transfer_rows(state.xfr)
    if transfers:
        # only once a domain transferred, so states of logs without transfers keep their hash
        view["transfers"] = transfers
    hwm = int(c[Counter.ACCOUNT_HWM])
    blocked = np.flatnonzero(state.acc_i4[:hwm, Account4.STATUS] == ACCOUNT_BLOCKED)
    if len(blocked):
        # only when some account is blocked, so states of logs without BLOCK_ACCOUNT keep
        # the hash they had before the kill switch existed
        view["blocked_accounts"] = [int(account) for account in blocked]
    subaccounts = subaccount_links(state)
    if subaccounts:
        # only when a subaccount exists, for the same reason (core/subaccounts.py)
        view["subaccounts"] = subaccounts
    groups = canonical_mmp(state)
    if groups:  # as blocked accounts: states without MMP keep their hash
        view["mmp"] = groups
    return view


def state_hash(state: State) -> str:
    """SHA-256 over the canonical state and the order free stack (which fixes future order
    ids). Identical for identical command logs, across processes and pool growth."""
    digest = hashlib.sha256()
    digest.update(b"derivex-state-v1")
    digest.update(state.params.astype("<i8").tobytes())
    view = canonical(state)
    digest.update(repr(view).encode())
    digest.update(np.array(free_order_slots(state), dtype="<i4").tobytes())
    hwm = int(state.counters[Counter.ORDER_HWM])
    digest.update(state.ord_i8[:hwm, Order8.GENERATION].astype("<i8").tobytes())
    return digest.hexdigest()
