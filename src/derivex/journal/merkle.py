"""An incremental binary Merkle tree over a power-of-two array of 32-byte leaf hashes.

Heap layout in one ``bytearray``: node ``i`` (1 = root) has children ``2i`` and ``2i + 1``,
the leaves are nodes ``capacity .. 2 * capacity - 1``. The two children of node ``i`` are the
64 contiguous bytes at ``64 * i``, so an inner node is one ``sha256(0x01 || bytes[64i:64i+64])``.
Capacity is always the next power of two of the leaf count (never more), so the root depends
on the leaves only, never on how the tree grew. Unused leaf slots hold 32 zero bytes.

>>> tree = MerkleTree()
>>> tree.update([0, 1, 2], [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
>>> tree.count, tree.depth
(3, 2)
>>> fold_path(leaf_hash(b"c"), 2, tree.path(2)) == tree.root
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from derivex.journal.verify import EMPTY, NODE_PREFIX, fold_path, leaf_hash, tree_depth

__all__ = ["MerkleTree", "fold_path", "leaf_hash"]


def _zero_hashes(height: int) -> list[bytes]:
    """Hash of an all-empty subtree of each height 0..height."""
    zeros = [EMPTY]
    for _ in range(height):
        zeros.append(hashlib.sha256(NODE_PREFIX + zeros[-1] + zeros[-1]).digest())
    return zeros


class MerkleTree:
    """Leaves are set by index; ``update`` rehashes only the paths above them.

    Cost: ``update`` with k leaves O(k log n) hashes (~1 µs each); growing copies the tree
    once per doubling (O(n) bytes, no hashing but the new top path)."""

    def __init__(self) -> None:
        self._capacity = 1
        self._count = 0
        self._nodes = bytearray(64)  # node 0 unused; node 1 is the single leaf / root

    @property
    def count(self) -> int:
        return self._count

    @property
    def depth(self) -> int:
        return tree_depth(self._count)

    @property
    def root(self) -> bytes:
        return bytes(self._nodes[32:64]) if self._count else EMPTY

    def _grow(self, count: int) -> None:
        capacity = 1 << tree_depth(count)
        if capacity <= self._capacity:
            return
        old, old_capacity = self._nodes, self._capacity
        old_depth = tree_depth(old_capacity)
        depth = tree_depth(capacity)
        zeros = _zero_hashes(depth)
        nodes = bytearray(64 * capacity)
        shift = depth - old_depth
        for level in range(depth + 1):
            start, width = 1 << level, 1 << level
            height = depth - level
            nodes[32 * start : 32 * (start + width)] = zeros[height] * width
            source_level = level - shift
            if source_level >= 0:  # the old tree becomes the leftmost subtree
                source = 1 << source_level
                nodes[32 * start : 32 * (start + source)] = old[32 * source : 64 * source]
        for level in range(shift - 1, -1, -1):  # the new top path above the old root
            node = 1 << level
            nodes[32 * node : 32 * node + 32] = hashlib.sha256(
                NODE_PREFIX + nodes[64 * node : 64 * node + 64]
            ).digest()
        self._nodes, self._capacity = nodes, capacity

    def update(
        self,
        indices: Sequence[int] | np.ndarray,
        hashes: Sequence[bytes] | bytes,
        count: int | None = None,
    ) -> None:
        """Set leaf ``indices[j]`` to ``hashes[j]`` (32 bytes each, or one blob of
        ``32 * len(indices)`` bytes) and rehash their paths. ``count`` (default: enough to
        hold the largest index) grows the leaf count; it never shrinks."""
        index_array = np.asarray(indices, dtype=np.int64)
        needed = int(index_array.max()) + 1 if len(index_array) else 0
        count = max(self._count, needed, count or 0)
        self._grow(count)
        self._count = count
        if not len(index_array):
            return
        blob = hashes if isinstance(hashes, bytes | bytearray) else b"".join(hashes)
        if len(blob) != 32 * len(index_array):
            raise ValueError("one 32-byte hash per index")
        capacity, nodes = self._capacity, self._nodes
        table = np.frombuffer(nodes, dtype=np.uint8).reshape(-1, 32)
        table[capacity + index_array] = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 32)
        del table  # release the export: the bytearray may be replaced later
        parents = np.unique((index_array + capacity) >> 1)
        sha256, prefix = hashlib.sha256, NODE_PREFIX
        while len(parents) and parents[0] >= 1:
            for node in parents.tolist():
                nodes[32 * node : 32 * node + 32] = sha256(
                    prefix + nodes[64 * node : 64 * node + 64]
                ).digest()
            if parents[0] == 1:
                break
            parents = np.unique(parents >> 1)

    def set_all(self, blob: bytes) -> None:
        """Replace every leaf: ``blob`` holds the hashes of leaves 0..n-1 in order. Cost:
        n - 1 inner hashes (~1 µs each)."""
        if len(blob) % 32:
            raise ValueError("blob must hold whole 32-byte hashes")
        count = len(blob) // 32
        self._capacity, self._count = 1, 0
        self._nodes = bytearray(64)
        self._grow(count)
        self._count = count
        if not count:
            return
        capacity, nodes = self._capacity, self._nodes
        nodes[32 * capacity : 32 * (capacity + count)] = blob
        nodes[32 * (capacity + count) :] = EMPTY * (capacity - count)
        sha256, prefix = hashlib.sha256, NODE_PREFIX
        for node in range(capacity - 1, 0, -1):
            nodes[32 * node : 32 * node + 32] = sha256(
                prefix + nodes[64 * node : 64 * node + 64]
            ).digest()

    def leaf(self, index: int) -> bytes:
        position = self._capacity + index
        return bytes(self._nodes[32 * position : 32 * position + 32])

    def path(self, index: int) -> list[bytes]:
        """Sibling hashes from the leaf up to (not including) the root."""
        if not 0 <= index < self._count:
            raise IndexError(index)
        siblings = []
        node = self._capacity + index
        while node > 1:
            sibling = node ^ 1
            siblings.append(bytes(self._nodes[32 * sibling : 32 * sibling + 32]))
            node >>= 1
        return siblings
