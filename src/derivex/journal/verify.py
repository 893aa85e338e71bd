"""Verifying an account inclusion proof: standard library only, no engine, no numpy.

This module is self-contained on purpose: a client (or an auditor) can copy this one file
and check a proof from ``derivex.journal.prove`` against a published state root. The exact
encoding is in docs/journal.md ("State root").

>>> proof = {"format": "nothing"}
>>> verify_proof(proof, "00" * 32)
False
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

PROOF_FORMAT = "derivex-account-proof-v1"
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
ROOT_PREFIX = b"\x02derivex-root-v1"
EMPTY = bytes(32)  # an unused leaf slot (no known preimage)
ACCOUNT_TAG = 0x41  # "A"
ACCOUNT_HEAD = struct.Struct("<BIiiqiI")  # tag, id, status, stp, balance, open orders, n
POSITION_ENTRY = struct.Struct("<Iqqqqi")  # instrument, qty, basis, open buy, open sell, orders


def leaf_hash(payload: bytes | memoryview) -> bytes:
    """SHA-256(0x00 || payload): a leaf can never be mistaken for an inner node."""
    return hashlib.sha256(LEAF_PREFIX + bytes(payload)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def tree_depth(count: int) -> int:
    """Height of the tree over ``count`` leaves: capacity is the next power of two."""
    return (count - 1).bit_length() if count > 1 else 0


def state_root(
    accounts: int,
    accounts_root: bytes,
    instruments: int,
    instruments_root: bytes,
    books_root: bytes,
    globals_hash: bytes,
) -> bytes:
    """The state root: SHA-256 over the three subtree roots, their leaf counts and the hash
    of the globals leaf."""
    return hashlib.sha256(
        ROOT_PREFIX
        + struct.pack("<Q", accounts)
        + accounts_root
        + struct.pack("<Q", instruments)
        + instruments_root
        + books_root
        + globals_hash
    ).digest()


def decode_account(payload: bytes) -> dict[str, Any]:
    """The fields of an account leaf. Raises ValueError if it is not one."""
    tag, account, status, stp, balance, open_orders, count = ACCOUNT_HEAD.unpack_from(payload)
    if tag != ACCOUNT_TAG or len(payload) != ACCOUNT_HEAD.size + count * POSITION_ENTRY.size:
        raise ValueError("not an account leaf")
    positions = []
    for index in range(count):
        values = POSITION_ENTRY.unpack_from(
            payload, ACCOUNT_HEAD.size + index * POSITION_ENTRY.size
        )
        positions.append(
            dict(
                zip(
                    (
                        "instrument",
                        "qty_lots",
                        "basis_units",
                        "open_buy_lots",
                        "open_sell_lots",
                        "orders",
                    ),
                    values,
                    strict=True,
                )
            )
        )
    return {
        "id": account,
        "status": status,
        "stp": stp,
        "balance_units": balance,
        "open_orders": open_orders,
        "positions": positions,
    }


def fold_path(leaf: bytes, index: int, siblings: list[bytes]) -> bytes:
    """Root of the subtree from a leaf hash, its index and its siblings (leaf level first)."""
    node = leaf
    for level, sibling in enumerate(siblings):
        if (index >> level) & 1:
            node = node_hash(sibling, node)
        else:
            node = node_hash(node, sibling)
    return node


def _hex32(value: Any) -> bytes:
    raw = bytes.fromhex(value)
    if len(raw) != 32:
        raise ValueError("expected 32 bytes")
    return raw


def verify_proof(proof: dict[str, Any], root: str | bytes) -> bool:
    """True iff ``proof`` shows its account leaf under ``root`` (hex string or 32 bytes):
    the readable fields equal the encoded leaf, the index is the account id and inside the
    tree, the path has the tree's depth, and folding it gives ``root``. Never raises on a
    malformed proof: anything unexpected is False. Cost: O(log accounts) hashes."""
    try:
        trusted = root if isinstance(root, bytes) else bytes.fromhex(root)
        if proof.get("format") != PROOF_FORMAT or proof.get("hash") != "sha256":
            return False
        payload = bytes.fromhex(proof["leaf"])
        fields = decode_account(payload)
        index, accounts = proof["index"], proof["accounts"]
        if (
            fields != proof["account"]
            or type(index) is not int
            or type(accounts) is not int
            or index != fields["id"]
            or not 0 <= index < accounts
        ):
            return False
        siblings = [_hex32(sibling) for sibling in proof["siblings"]]
        if len(siblings) != tree_depth(accounts):
            return False
        accounts_root = fold_path(leaf_hash(payload), index, siblings)
        computed = state_root(
            accounts,
            accounts_root,
            int(proof["instruments"]),
            _hex32(proof["instruments_root"]),
            _hex32(proof["books_root"]),
            _hex32(proof["globals_hash"]),
        )
        return computed == trusted and computed == _hex32(proof["root"])
    except (KeyError, TypeError, ValueError, AttributeError, struct.error):
        return False
