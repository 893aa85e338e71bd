"""The journal's on-disk format: batch headers, checksums and the errors readers raise.

A journal is a directory of append-only files named by the sequence number of their first
command (``00000000000000000001.journal``), so ``ls`` shows them in log order. A file is a
run of *batch records*: a 64-byte header, then ``count`` 64-byte command records exactly as
the sequencer stamped them. Headers are 64 bytes so every payload starts 64-byte aligned
and can be mapped as a ``COMMAND_DTYPE`` array without copying.

Header (little-endian)::

    0  4s   magic b"DXJB"
    4  u16  format version (1)
    6  u16  checksum algorithm (1 = CRC32C, 2 = BLAKE2b-128)
    8  u64  first seq
    16 u32  count (>= 1)
    20 u32  record bytes (64)
    24 u64  payload bytes (= count * 64)
    32 16x  reserved, zero
    48 16s  checksum of header bytes [0, 48) followed by the payload
            (CRC32C: 4 bytes little-endian then 12 zero bytes)

CRC32C is used when the ``crc32c`` (or ``google-crc32c``) package is importable: it is what
storage systems use for exactly this job (iSCSI, ext4 metadata, RocksDB, Kafka), catches
every burst error up to 32 bits, and runs at memory speed with the SSE4.2 instruction
(~12 GB/s measured here). Without it the writer falls back to BLAKE2b-128 from ``hashlib``
(~0.9 GB/s). Each batch names its algorithm, so either reader reads both.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

_crc32c_extend: Callable[..., int] | None
try:  # the ICRAR binding: hardware CRC32C, releases the GIL on large buffers
    from crc32c import crc32c as _crc32c_extend
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import google_crc32c as _google_crc32c

        def _crc32c_extend(data: Any, value: int = 0) -> int:
            return int(_google_crc32c.extend(value, bytes(data)))

    except ImportError:
        _crc32c_extend = None

MAGIC = b"DXJB"
VERSION = 1
RECORD_BYTES = 64
HEADER = struct.Struct("<4sHHQIIQ16x16s")
HEADER_BYTES = HEADER.size
CHECKED_HEADER_BYTES = 48  # the checksum covers the header up to the checksum field
SUFFIX = ".journal"
CONFIG_FILE = "config.json"
LOCK_FILE = "LOCK"

CHECKSUM_CRC32C = 1
CHECKSUM_BLAKE2B = 2
CHECKSUM_NAMES = {CHECKSUM_CRC32C: "crc32c", CHECKSUM_BLAKE2B: "blake2b-128"}
DEFAULT_CHECKSUM = CHECKSUM_CRC32C if _crc32c_extend is not None else CHECKSUM_BLAKE2B

assert HEADER_BYTES == 64


class JournalError(Exception):
    """A journal or snapshot cannot be used as asked (misuse, missing data, gaps)."""


class IncompatibleSnapshot(JournalError):
    """A sound snapshot of another state layout (written before the engine gained or
    changed an array or a parameter): not damage, not usable by this version. Recovery
    passes over it to an older snapshot or a full replay of the journal."""


class CorruptionError(JournalError):
    """Damaged bytes: names the file and the byte offset of the damaged record."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: {reason} at byte offset {offset}")


def checksum(algorithm: int, *parts: bytes | memoryview) -> bytes:
    """16-byte checksum of the concatenated ``parts``. Cost: O(bytes)."""
    if algorithm == CHECKSUM_CRC32C:
        if _crc32c_extend is None:
            raise JournalError("data is checksummed with CRC32C: install the crc32c package")
        value = 0
        for part in parts:
            value = _crc32c_extend(part, value)
        return value.to_bytes(4, "little") + bytes(12)
    if algorithm == CHECKSUM_BLAKE2B:
        digest = hashlib.blake2b(digest_size=16)
        for part in parts:
            digest.update(part)
        return digest.digest()
    raise JournalError(f"unknown checksum algorithm {algorithm}")


def file_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def journal_files(directory: Path | str) -> list[Path]:
    """Journal files of ``directory`` in log order (names are zero-padded first seqs)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.suffix == SUFFIX and p.stem.isdigit() and p.is_file()
    )


def pack_header(algorithm: int, first_seq: int, count: int, payload: memoryview) -> bytes:
    """The 64-byte header of a batch, checksum included."""
    head = HEADER.pack(
        MAGIC, VERSION, algorithm, first_seq, count, RECORD_BYTES, count * RECORD_BYTES, bytes(16)
    )
    return head[:CHECKED_HEADER_BYTES] + checksum(algorithm, head[:CHECKED_HEADER_BYTES], payload)


def header_problem(fields: tuple) -> str | None:
    """Why an unpacked header is not a plausible batch header, or None."""
    magic, version, algorithm, first_seq, count, record_bytes, payload_bytes, _ = fields
    if magic != MAGIC:
        return "bad batch magic"
    if version != VERSION:
        return f"unknown journal format version {version}"
    if algorithm not in CHECKSUM_NAMES:
        return f"unknown checksum algorithm {algorithm}"
    if record_bytes != RECORD_BYTES or count < 1 or payload_bytes != count * RECORD_BYTES:
        return "inconsistent batch header (count / record size / length)"
    if first_seq < 1:
        return "batch header with seq 0"
    return None


def fsync_directory(directory: Path) -> None:
    """Make created, renamed or removed names in ``directory`` durable."""
    import os

    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
