"""The signatures already accepted, in a file every process serving a data directory
shares (``<data>/signatures``): the gateway workers of ``derivex serve --workers N``, and
a server restarted within the timestamp window. A signature accepted by one of them is a
replay for all.

The file is a hash table of ``SLOTS`` slots of three little-endian uint64: the first 16
bytes of the signature (an HMAC-SHA256, so uniformly distributed: its own hash) and the
millisecond after which it may be forgotten (0: never used). A signature lives in one of
the ``PROBE`` slots from its home slot on; a slot whose time has passed is free again.
Slots never return to 0, so a never-used slot ends every chain through it: a look-up
stops there (usually at the first or second slot). Each ``use`` reads and writes under an
exclusive ``flock`` of the file (one writer at a time, across processes). The file is
sparse: 24 MiB addressed, pages allocated as slots are first used.

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
import struct
from pathlib import Path

from derivex.gateway.auth_limits import CacheFull

SLOTS = 1 << 20
PROBE = 32
SIGNATURES_FILE = "signatures"
_SLOT = struct.Struct("<QQQ")


class SharedSignatureCache:
    """``SignatureCache``'s interface over a shared file. ``use`` costs one ``flock``
    pair and reads slots up to the first never-used one (at most ``PROBE``); it raises
    ``CacheFull`` when the ``PROBE`` slots of a signature hold live signatures (never
    forgets a live one)."""

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

    def use(self, signature: bytes, ts_ms: int, now_ms: int) -> bool:
        """Record ``signature`` (its timestamp ``ts_ms`` already checked to be within the
        window); False if any process sharing the file recorded it before."""
        first, second = struct.unpack_from("<QQ", signature)
        home = first & (SLOTS - 1)
        table, read = self._map, _SLOT.unpack_from
        latest = now_ms + 2 * self.window_ms  # a timestamp up to one window ahead, + window
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            free = -1
            for step in range(PROBE):
                offset = ((home + step) & (SLOTS - 1)) * 24
                held_first, held_second, until = read(table, offset)
                # live: not yet expired, and no later than a signature the window admits
                # (a damaged file's garbage times never hold a slot for ever)
                if now_ms <= until <= latest:
                    if held_first == first and held_second == second:
                        return False
                    continue
                if free < 0:
                    free = offset
                if until == 0:
                    break  # the chain ends here: nothing further can match
            if free < 0:
                raise CacheFull
            _SLOT.pack_into(table, free, first, second, ts_ms + self.window_ms)
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Unmap and close the file (idempotent)."""
        if self._fd < 0:
            return
        self._map.close()
        os.close(self._fd)
        self._fd = -1
