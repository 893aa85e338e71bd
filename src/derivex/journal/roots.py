"""``StateRoots``: the state root, kept up to date incrementally from the engine's events.

Three trees (accounts by id, instruments by id, books by instrument id) and a globals leaf;
the root is ``verify.state_root`` over them. Between checkpoints the tracker is handed the
events of every processed batch and marks the accounts and instruments they name; a
checkpoint rehashes only those leaves (plus the three system accounts, which take fees and
P&L without being named, the accounts and instruments created since, and the globals leaf).

Why events suffice: every change of a balance, position, open order or book produces an
event naming the account and the instrument (docs/core-semantics.md, event table) — fills
name both sides, cancels and expiries name the owner, instrument status changes name the
instrument. Rejections change only gas, which no leaf holds. The tests compare the
incremental root with a full rebuild after every batch of varied command streams.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from derivex.core.records import SYSTEM_ACCOUNTS
from derivex.core.state import State
from derivex.journal import leaves
from derivex.journal.merkle import MerkleTree
from derivex.journal.verify import PROOF_FORMAT, decode_account, leaf_hash, state_root

_FOLD_ARRAYS = 4096  # pending event arrays kept before folding them into the dirty masks


def full_root(state: State) -> bytes:
    """The state root computed from scratch. Cost: O(accounts + live positions + orders)
    (~2 µs per account)."""
    return StateRoots().update(state)


class StateRoots:
    """Incremental state root. ``update(state)`` after ``observe``/``mark`` of every batch
    processed since the previous update gives the same root as ``full_root(state)``.

    Cost of ``update``: O(dirty × log n) hashes plus a scan of the live position slots
    and, per dirty book, a walk of that book; the first call is a full build."""

    def __init__(self) -> None:
        self.accounts = MerkleTree()
        self.instruments = MerkleTree()
        self.books = MerkleTree()
        self.globals_hash = leaf_hash(b"")
        self.built = False
        self._dirty_accounts = np.zeros(0, dtype=bool)
        self._dirty_instruments = np.zeros(0, dtype=bool)
        self._pending: list[np.ndarray] = []

    # ---- dirty tracking ----

    def mark(self, events: np.ndarray) -> None:
        """Mark what ``events`` name, now (use this with ``Engine.process_into``, whose
        result is overwritten by the next call). Ids beyond the last update are ignored:
        they are new and rehashed anyway, or garbage echoed by a rejection."""
        if not self.built or not len(events):
            return
        accounts = events["account"]
        self._dirty_accounts[accounts[accounts < len(self._dirty_accounts)]] = True
        instruments = events["instrument"]
        mask = self._dirty_instruments
        mask[instruments[instruments < len(mask)]] = True

    def observe(self, events: np.ndarray) -> None:
        """Keep a reference to an events array that will not change (``Engine.process``
        returns a copy); cheaper per call than ``mark`` for single-command batches."""
        if not self.built:
            return
        self._pending.append(events)
        if len(self._pending) >= _FOLD_ARRAYS:
            self._fold()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        for events in pending:
            self.mark(events)

    # ---- updates ----

    def update(self, state: State) -> bytes:
        """Rehash what changed since the last update; return the root."""
        if not self.built:
            return self.rebuild(state)
        self._fold()
        accounts = leaves.account_count(state)
        instruments = leaves.instrument_count(state)
        old_accounts, old_instruments = self.accounts.count, self.instruments.count
        dirty = self._dirty_accounts
        dirty[: min(SYSTEM_ACCOUNTS, len(dirty))] = True
        ids = np.concatenate((np.flatnonzero(dirty), np.arange(old_accounts, accounts)))
        self.accounts.update(ids, leaves.account_hashes(state, ids), accounts)
        ids = np.concatenate(
            (np.flatnonzero(self._dirty_instruments), np.arange(old_instruments, instruments))
        )
        self._set_instruments(state, ids, instruments)
        self._reset_masks(accounts, instruments)
        return self._finish(state)

    def rebuild(self, state: State) -> bytes:
        """Recompute every leaf. Cost: see ``full_root``."""
        accounts = leaves.account_count(state)
        instruments = leaves.instrument_count(state)
        self.accounts = MerkleTree()
        self.accounts.set_all(leaves.account_hashes(state, np.arange(accounts)))
        self.instruments, self.books = MerkleTree(), MerkleTree()
        self._set_instruments(state, np.arange(instruments), instruments)
        self._pending = []
        self._reset_masks(accounts, instruments)
        self.built = True
        return self._finish(state)

    def _set_instruments(self, state: State, ids: np.ndarray, count: int) -> None:
        payloads = leaves.instrument_payloads(state, ids)
        self.instruments.update(ids, [leaf_hash(p) for p in payloads], count)
        books = [leaf_hash(leaves.book_payload(state, int(i))) for i in ids]
        self.books.update(ids, books, count)

    def _reset_masks(self, accounts: int, instruments: int) -> None:
        self._dirty_accounts = np.zeros(accounts, dtype=bool)
        self._dirty_instruments = np.zeros(instruments, dtype=bool)

    def _finish(self, state: State) -> bytes:
        self.globals_hash = leaf_hash(leaves.globals_payload(state))
        return self.root

    @property
    def root(self) -> bytes:
        return state_root(
            self.accounts.count,
            self.accounts.root,
            self.instruments.count,
            self.instruments.root,
            self.books.root,
            self.globals_hash,
        )

    # ---- proofs ----

    def prove(self, state: State, account: int, seq: int | None = None) -> dict[str, Any]:
        """Inclusion proof of ``account`` in the root of ``state`` (updates first).
        JSON-serialisable; check it with ``verify_proof``. Raises KeyError for an unknown
        account."""
        root = self.update(state)
        payload = leaves.account_payload(state, account)
        if leaf_hash(payload) != self.accounts.leaf(account):
            raise AssertionError(f"account {account}: tracked leaf is stale")
        return {
            "format": PROOF_FORMAT,
            "hash": "sha256",
            "seq": seq,
            "root": root.hex(),
            "index": account,
            "leaf": payload.hex(),
            "account": decode_account(payload),
            "siblings": [sibling.hex() for sibling in self.accounts.path(account)],
            "accounts": self.accounts.count,
            "instruments": self.instruments.count,
            "instruments_root": self.instruments.root.hex(),
            "books_root": self.books.root.hex(),
            "globals_hash": self.globals_hash.hex(),
        }
