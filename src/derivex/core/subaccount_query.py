"""Readers of the main account / subaccount links (``core/subaccounts.py``): what shells,
the canonical state, the invariants and the state root see of them. Pure numpy over
``st.sub_i4``; no kernels. Costs as stated per function.
"""

from __future__ import annotations

import hashlib

import numpy as np

from derivex.core.layout import Counter, Link4
from derivex.core.records import SYSTEM_ACCOUNTS
from derivex.core.state import State


def parent_of(state: State, account: int) -> int:
    """The main account of ``account``, or 0 if it is not a subaccount (or unknown). O(1)."""
    if not 0 <= account < int(state.counters[Counter.ACCOUNT_HWM]):
        return 0
    return int(state.sub_i4[account, Link4.PARENT])


def subaccounts_of(state: State, account: int) -> list[int]:
    """The subaccounts of main account ``account``, ids ascending. O(accounts)."""
    hwm = int(state.counters[Counter.ACCOUNT_HWM])
    if not SYSTEM_ACCOUNTS <= account < hwm:
        return []
    return [int(a) for a in np.flatnonzero(state.sub_i4[:hwm, Link4.PARENT] == account)]


def subaccount_links(state: State) -> list[tuple[int, int]]:
    """Every ``(subaccount, main account)`` pair, subaccount ascending. O(accounts)."""
    hwm = int(state.counters[Counter.ACCOUNT_HWM])
    parents = state.sub_i4[:hwm, Link4.PARENT]
    return [(int(a), int(parents[a])) for a in np.flatnonzero(parents != 0)]


def subaccount_digest(state: State) -> bytes:
    """SHA-256 of ``subaccount_links`` for the state root's globals leaf; no bytes at all
    when no subaccount exists, so roots of logs without subaccounts are unchanged."""
    pairs = subaccount_links(state)
    if not pairs:
        return b""
    return hashlib.sha256(np.array(pairs, dtype="<i8").tobytes()).digest()


def check_links(state: State) -> None:
    """Every link points at an existing, non-system main account that has no main account
    itself, and each main account's count equals its subaccounts'. Raises AssertionError."""
    hwm = int(state.counters[Counter.ACCOUNT_HWM])
    parents = state.sub_i4[:hwm, Link4.PARENT]
    counts = np.bincount(parents[parents != 0], minlength=hwm)[:hwm]
    for child, parent in subaccount_links(state):
        if not SYSTEM_ACCOUNTS <= parent < hwm or parent == child:
            raise AssertionError(f"subaccount {child}: bad main account {parent}")
        if parents[parent] != 0:
            raise AssertionError(f"subaccount {child}: its main {parent} is a subaccount")
    if not np.array_equal(counts, state.sub_i4[:hwm, Link4.CHILDREN]):
        bad = np.flatnonzero(counts != state.sub_i4[:hwm, Link4.CHILDREN])
        raise AssertionError(f"subaccount counts differ from the links for accounts {bad[:5]}")
    if np.any(state.sub_i4[hwm:] != 0):
        raise AssertionError("links beyond the last account")
