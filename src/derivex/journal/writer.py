"""``Journal``: the write-ahead log of sequenced command batches, with group commit.

Durability policies (``fsync=``):

- ``"batch"``: every ``append`` ends with ``fdatasync``; it returns only once the batch is on
  stable storage. An ``Exchange`` acknowledges a command only after that.
- ``"interval"``: ``append`` writes (the batch is in the OS page cache, so it survives a crash
  of the process) and returns; a background thread ``fdatasync``s every ``interval_ms``
  if anything is pending (group commit: one flush covers every batch written since the
  last). Window: a power loss or kernel crash can lose the batches acknowledged during the
  last ``interval_ms`` (plus one flush time). ``durable_seq`` says how far is safe.
- ``"none"``: only ``sync()``, rolls and ``close()`` flush. Benchmarks and tests only.

Files roll when the next batch would take the current file past ``roll_bytes`` (a batch
larger than that gets a file of its own); the old file is flushed before the new one is
created, and the directory is flushed after each create, so a file never goes missing.
One writer per directory: a ``LOCK`` file is held with ``flock`` while the journal is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import threading
from pathlib import Path
from types import TracebackType

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.records import COMMAND_DTYPE
from derivex.journal.format import (
    CHECKSUM_NAMES,
    CONFIG_FILE,
    DEFAULT_CHECKSUM,
    LOCK_FILE,
    RECORD_BYTES,
    JournalError,
    file_name,
    fsync_directory,
    journal_files,
    pack_header,
)
from derivex.journal.reader import JournalReader, TornTail
from derivex.journal.roots import StateRoots

FSYNC_POLICIES = ("batch", "interval", "none")
_SEQ = struct.Struct("<Q")


def lock_directory(directory: Path) -> int:
    """Take the directory's writer lock; returns the lock fd. Raises JournalError if another
    process (or another Journal in this one) holds it."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalError(f"journal {directory} is locked by another writer") from None
    return fd


def write_config(directory: Path, config: EngineConfig) -> None:
    """Record the engine configuration next to the journal (atomically), or check that the
    recorded one is the same. Raises JournalError on a mismatch."""
    path = directory / CONFIG_FILE
    if path.exists():
        recorded = json.loads(path.read_text())
        if EngineConfig.from_dict(recorded) != config:
            raise JournalError(f"{path} records a different EngineConfig than the one given")
        return
    temporary = directory / f".{CONFIG_FILE}.tmp"
    with open(temporary, "w") as handle:
        json.dump(config.to_dict(), handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(directory)


class Journal:
    """Append-only journal of stamped command batches in ``directory``.

    Opening an existing journal verifies its last file, truncates a torn final batch
    (reported in ``repaired``) and continues after its last seq. Raises ``JournalError`` on
    a bad argument or a held lock, ``CorruptionError`` on damage in the last file.
    """

    def __init__(self, directory: Path | str, *, fsync: str = "batch",
                 interval_ms: float = 5.0, roll_bytes: int = 64 << 20,
                 checksum: int | None = None) -> None:
        if fsync not in FSYNC_POLICIES:
            raise JournalError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if interval_ms <= 0 or roll_bytes < 128:
            raise JournalError("interval_ms must be > 0 and roll_bytes >= 128")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.interval_ms = interval_ms
        self.roll_bytes = roll_bytes
        self.algorithm = checksum or DEFAULT_CHECKSUM
        if self.algorithm not in CHECKSUM_NAMES:
            raise JournalError(f"unknown checksum algorithm {self.algorithm}")
        #: dirty-leaf tracker fed by ``observe`` (used by ``derivex.journal.prove``)
        self.roots = StateRoots()
        self._lock_fd = lock_directory(self.directory)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self.repaired: TornTail | None = None
        try:
            self._last_seq = self._open_tail()
        except BaseException:
            self._release()
            raise
        self._durable_seq = self._last_seq
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if fsync == "interval":
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                             name=f"journal-flush:{self.directory.name}")
            self._flusher.start()

    def _open_tail(self) -> int:
        files = journal_files(self.directory)
        if not files:
            return 0
        last = files[-1]
        reader = JournalReader(self.directory, repair=True)
        last_seq = reader.last_seq_of(last, is_last=True)
        self.repaired = reader.torn
        if last_seq == 0:
            # nothing usable in the last file (empty, or only a torn batch): remove it so the
            # next file is named by the seq that is really written next
            last.unlink()
            fsync_directory(self.directory)
            if len(files) == 1:
                return 0
            last = files[-2]
            last_seq = reader.last_seq_of(last, is_last=False)
        self._fd = os.open(last, os.O_WRONLY | os.O_APPEND)
        os.fsync(self._fd)  # what survived a process crash in the page cache is now durable
        self._size = os.fstat(self._fd).st_size
        return last_seq

    # ---- properties ----

    @property
    def last_seq(self) -> int:
        """Seq of the last command appended (0 if none)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Every command up to this seq is on stable storage."""
        return self._durable_seq

    # ---- the write path ----

    def attach(self, config: EngineConfig) -> int:
        """Record (or check) the engine configuration; return ``last_seq``. The sequencer
        of an ``Exchange`` continues after it."""
        write_config(self.directory, config)
        return self._last_seq

    def append(self, commands: np.ndarray) -> int:
        """Append a stamped batch (seqs must continue the journal: ``last_seq + 1`` on) and
        return ``durable_seq`` (with ``fsync="batch"``: the batch's last seq). Cost: one
        ``writev`` plus, per policy, one ``fdatasync`` (~2 ms on this machine's disk).
        Raises ``JournalError`` on a seq that does not continue the journal; on an I/O
        error the file is cut back to its previous length and the error re-raised."""
        if commands.dtype != COMMAND_DTYPE:
            raise TypeError("commands must have dtype COMMAND_DTYPE")
        count = len(commands)
        if count == 0:
            return self._durable_seq
        payload = np.ascontiguousarray(commands).view(np.uint8).data
        first = _SEQ.unpack_from(payload, 0)[0]  # cheaper than two structured field reads
        if _SEQ.unpack_from(payload, RECORD_BYTES * (count - 1))[0] != first + count - 1:
            raise JournalError("batch seqs are not consecutive")
        if self._last_seq and first != self._last_seq + 1:
            raise JournalError(f"batch starts at seq {first}, journal is at {self._last_seq}")
        if first < 1:
            raise JournalError("seq 0 cannot be journaled: seqs start at 1")
        header = pack_header(self.algorithm, first, count, payload)
        with self._lock:
            if self._fd is None or (self._size and self._size + len(header) + len(payload)
                                    > self.roll_bytes):
                self._roll(first)
            assert self._fd is not None
            self._write(header, payload)
            self._last_seq = first + count - 1
            if self.fsync == "batch":
                os.fdatasync(self._fd)
                self._durable_seq = self._last_seq
        return self._durable_seq

    def _write(self, header: bytes, payload: memoryview) -> None:
        assert self._fd is not None
        total = len(header) + len(payload)
        done = 0
        try:
            while done < total:
                if done < len(header):
                    parts = [memoryview(header)[done:], payload]
                else:
                    parts = [payload[done - len(header):]]
                done += os.writev(self._fd, parts)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += total

    def _roll(self, first_seq: int) -> None:
        if self._fd is not None:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._durable_seq = self._last_seq
        path = self.directory / file_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        fsync_directory(self.directory)

    def observe(self, events: np.ndarray) -> None:
        """Hand the events of a processed batch to the state-root tracker (O(1) now; the
        accounts, instruments and books they name are rehashed at the next proof)."""
        self.roots.observe(events)

    # ---- flushing ----

    def sync(self) -> int:
        """Flush everything appended so far; return ``durable_seq``."""
        with self._lock:
            if self._fd is not None and self._durable_seq < self._last_seq:
                os.fdatasync(self._fd)
            self._durable_seq = self._last_seq
        return self._durable_seq

    def _flush_loop(self) -> None:
        interval = self.interval_ms / 1000.0
        while not self._stop.wait(interval):
            self._flush_once()

    def _flush_once(self) -> None:
        with self._lock:
            if self._fd is None or self._durable_seq >= self._last_seq:
                return
            # flush a duplicate outside the lock: appends go on while the disk works, and a
            # roll cannot close the descriptor under us
            fd = os.dup(self._fd)
            target = self._last_seq
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        with self._lock:
            self._durable_seq = max(self._durable_seq, target)

    def close(self) -> None:
        """Flush, stop the flusher, release the lock. Idempotent."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None  # type: ignore[assignment]

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Journal({str(self.directory)!r}, fsync={self.fsync!r}, "
                f"last_seq={self._last_seq}, durable_seq={self._durable_seq})")

