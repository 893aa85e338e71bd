"""The signatures already accepted, in a file every process serving a data directory
shares (``<data>/signatures``): the gateway workers of ``derivex serve --workers N``, and
a server restarted within the timestamp window. A signature accepted by one of them is a
replay for all.

The file is a hash table of ``SLOTS`` slots of three little-endian uint64: the first 16
bytes of the signature (an HMAC-SHA256, so uniformly distributed: its own hash) and the
millisecond after which it may be forgotten (0: never used). A signature lives in one of
the ``PROBE`` slots after its home slot; a slot whose time has passed is free again. Each
``use`` reads and writes that window under an exclusive ``flock`` of the file (one
writer at a time, across processes). The file is sparse: 24 MiB addressed, pages
allocated as slots are first used.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "signatures"
>>> one, other = SharedSignatureCache(path), SharedSignatureCache(path)
>>> one.use(bytes(range(32)), ts_ms=5_000, now_ms=5_000)
True
>>> other.use(bytes(range(32)), ts_ms=5_000, now_ms=5_001)  # another process: a replay
False
"""

from __future__ import annotations

import fcntl
import mmap
import os
from pathlib import Path

import numpy as np

from derivex.gateway.auth_limits import CacheFull

SLOTS = 1 << 20
PROBE = 32
SIGNATURES_FILE = "signatures"
_OFFSETS = np.arange(PROBE, dtype=np.int64)


class SharedSignatureCache:
    """``SignatureCache``'s interface over a shared file. ``use`` costs one ``flock``
    pair and O(``PROBE``) vectorised work; it raises ``CacheFull`` when the ``PROBE``
    slots of a signature hold live signatures (never forgets a live one)."""

    def __init__(self, path: Path | str, window_ms: int = 60_000) -> None:
        self.path = Path(path)
        self.window_ms = window_ms
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        size = SLOTS * 24
        if os.fstat(self._fd).st_size < size:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size < size:
                    os.ftruncate(self._fd, size)  # sparse: zero slots cost no disk
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size)
        self._table = np.frombuffer(self._map, dtype="<u8").reshape(SLOTS, 3)

    def use(self, signature: bytes, ts_ms: int, now_ms: int) -> bool:
        """Record ``signature`` (its timestamp ``ts_ms`` already checked to be within the
        window); False if any process sharing the file recorded it before."""
        head = np.frombuffer(signature[:16], dtype="<u8")
        slots = ((int(head[0]) & (SLOTS - 1)) + _OFFSETS) & (SLOTS - 1)
        table = self._table
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            window = table[slots]
            live = window[:, 2] >= now_ms
            if (live & (window[:, 0] == head[0]) & (window[:, 1] == head[1])).any():
                return False
            free = np.flatnonzero(~live)
            if not len(free):
                raise CacheFull
            table[slots[free[0]]] = (head[0], head[1], ts_ms + self.window_ms)
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Unmap and close the file (idempotent)."""
        if self._fd < 0:
            return
        del self._table
        self._map.close()
        os.close(self._fd)
        self._fd = -1
