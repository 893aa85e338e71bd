"""``Journal``: the write-ahead log of sequenced command batches, with group commit.

Durability policies (``fsync=``), docs/journal.md "Durability":

- ``"group"`` (the default): true group commit. ``append`` writes the batch and wakes the
  flusher thread, which starts an ``fdatasync`` at once whenever anything is pending (no
  timer); one flush covers every batch written before it started. ``wait_durable(seq)``
  returns when a flush covering ``seq`` has returned: an ``Exchange`` processes the batch
  while the disk works and returns its events only then, so an acknowledgement means the
  command is on stable storage. ``on_durable`` (if given) is called from the flusher
  thread with the new ``durable_seq`` after each flush.
- ``"batch"``: every ``append`` ends with its own ``fdatasync`` (no overlap, no grouping).
- ``"interval"``: *acknowledge before the flush*, an explicit opt-in: ``append`` writes
  (the batch survives a crash of the process in the page cache) and returns at once; the
  flusher ``fdatasync``s every ``interval_ms``. A power loss or kernel crash can lose the
  batches acknowledged during the last ``interval_ms``. ``durable_seq`` says how far is
  safe.
- ``"none"``: only ``sync()``, rolls and ``close()`` flush. Benchmarks and tests only.

Files roll when the next batch would take the current file past ``roll_bytes`` (a batch
larger than that gets a file of its own); the old file is flushed before the new one is
created, and the directory is flushed after each create, so a file never goes missing. The
segment manifest (``segments.py``) is rewritten at open, roll, snapshot and close, so a
deleted, reordered or cut file is detected later. Opening checks the manifest before it
changes anything: a journal that fails a check is left exactly as it was.
One writer per directory: a ``LOCK`` file is held with ``flock`` while the journal is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.records import COMMAND_DTYPE
from derivex.journal import segments
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
from derivex.journal.snapshot import list_snapshots

FSYNC_POLICIES = ("group", "batch", "interval", "none")
DEFAULT_FSYNC = "group"
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


def read_config(path: Path) -> dict:
    """The recorded engine configuration. Raises ``JournalError`` naming the file if it is
    not a JSON object."""
    try:
        recorded = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise JournalError(f"{path}: damaged ({error})") from None
    if not isinstance(recorded, dict):
        raise JournalError(f"{path}: damaged (not a JSON object)")
    return recorded


def write_config(directory: Path, config: EngineConfig) -> None:
    """Record the engine configuration next to the journal (atomically), or check that the
    recorded one is the same. Raises JournalError on a mismatch."""
    path = directory / CONFIG_FILE
    if path.exists():
        if EngineConfig.from_dict(read_config(path)) != config:
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

    Opening an existing journal checks the directory against the segment manifest and
    verifies its last file — both read-only — then truncates a genuinely torn final batch
    (beyond the acknowledged length; reported in ``repaired``), records the journal in the
    manifest and continues after its last seq. Raises ``JournalError`` on a bad argument, a
    held lock or a disagreement with the manifest, ``CorruptionError`` on damage in the
    last file; a failed open changes no journal file.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        fsync: str = DEFAULT_FSYNC,
        interval_ms: float = 5.0,
        roll_bytes: int = 64 << 20,
        checksum: int | None = None,
        on_durable: Callable[[int], None] | None = None,
    ) -> None:
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
        self._durable_bytes = 0  # length of the newest file covered by durable_seq
        self.repaired: TornTail | None = None
        self.on_durable = on_durable
        self._manifest = segments.Manifest()
        try:
            self._last_seq = self._open_tail()
        except BaseException:
            self._release()
            raise
        self._durable_seq = self._last_seq
        self._stop = threading.Event()
        # group commit: appends notify, the flusher waits for pending data, flushes, and
        # wakes the waiters of every seq the flush covered
        self._pending = threading.Condition(self._lock)
        self._durable = threading.Condition(threading.Lock())
        self._flusher: threading.Thread | None = None
        if fsync in ("group", "interval"):
            self._flusher = threading.Thread(
                target=self._flush_loop, daemon=True, name=f"journal-flush:{self.directory.name}"
            )
            self._flusher.start()

    def _open_tail(self) -> int:
        manifest = segments.check(
            self.directory, [seq for seq, _ in list_snapshots(self.directory)]
        )
        files = journal_files(self.directory)
        if not files:
            self._manifest = manifest or segments.Manifest()
            return 0
        last = files[-1]
        # verify first, change nothing: a damaged journal is refused exactly as it is
        floor = segments.tail_floor(manifest, last)
        JournalReader(self.directory, tail_floor=floor).last_seq_of(last, is_last=True)
        reader = JournalReader(self.directory, repair=True, tail_floor=floor)
        last_seq = reader.last_seq_of(last, is_last=True)
        self.repaired = reader.torn
        if last_seq == 0:
            # nothing usable in the last file (empty, or only a torn batch): remove it so the
            # next file is named by the seq that is really written next
            last.unlink()
            fsync_directory(self.directory)
            files.pop()
            if not files:
                self._manifest = manifest or segments.Manifest()
                self._manifest.segments, self._manifest.closed = [], False
                self._save_manifest()
                return 0
            last = files[-1]
            last_seq = reader.last_seq_of(last, is_last=False)
        self._fd = os.open(last, os.O_WRONLY | os.O_APPEND)
        os.fsync(self._fd)  # what survived a process crash in the page cache is now durable
        self._size = os.fstat(self._fd).st_size
        self._durable_bytes = self._size
        self._manifest = manifest or segments.Manifest()
        listed = [s for s in self._manifest.segments if (self.directory / s.name).exists()]
        if not listed or listed[-1].name != last.name:  # the unlisted newest file
            if listed:  # a crash between a roll's create and its manifest write
                sealed = listed[-1]
                sealed.sealed, sealed.last_seq = True, int(last.stem) - 1
                sealed.bytes = (self.directory / sealed.name).stat().st_size
            listed.append(segments.Segment(last.name, int(last.stem), last_seq, 0, False))
        listed[-1].last_seq, listed[-1].bytes, listed[-1].sealed = last_seq, self._size, False
        self._manifest.segments = listed
        self._manifest.closed = False
        self._save_manifest()
        return last_seq

    def _save_manifest(self) -> None:
        segments.save(self.directory, self._manifest)

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
            if self._fd is None or (
                self._size and self._size + len(header) + len(payload) > self.roll_bytes
            ):
                self._roll(first)
            assert self._fd is not None
            self._write(header, payload)
            self._last_seq = first + count - 1
            if self.fsync == "batch":
                os.fdatasync(self._fd)
                self._durable_bytes = self._size
                self._set_durable(self._last_seq)
            elif self.fsync == "group":
                self._pending.notify()
        return self._durable_seq

    def wait_durable(self, seq: int, timeout: float | None = None) -> bool:
        """Block until every command up to ``seq`` is on stable storage (``"group"``: the
        flusher's flush covering it has returned; other policies: ``sync`` if needed).
        Returns False on timeout. Cost: at most one flush time (~0.2-1.2 ms here)."""
        if self._durable_seq >= seq:
            return True
        if self.fsync != "group" or self._flusher is None:
            self.sync()
            return self._durable_seq >= seq
        with self._durable:
            return self._durable.wait_for(
                lambda: self._durable_seq >= seq or self._stop.is_set(), timeout
            ) and (self._durable_seq >= seq)

    def _write(self, header: bytes, payload: memoryview) -> None:
        assert self._fd is not None
        total = len(header) + len(payload)
        done = 0
        try:
            while done < total:
                if done < len(header):
                    parts = [memoryview(header)[done:], payload]
                else:
                    parts = [payload[done - len(header) :]]
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
            self._set_durable(self._last_seq)
            if self._manifest.segments:
                sealed = self._manifest.segments[-1]
                sealed.last_seq, sealed.bytes, sealed.sealed = self._last_seq, self._size, True
        path = self.directory / file_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        self._durable_bytes = 0
        fsync_directory(self.directory)
        # listed only once it exists: a crash in between leaves an unlisted newest file,
        # which the check accepts, never a listed file that is missing
        self._manifest.segments.append(
            segments.Segment(path.name, first_seq, first_seq - 1, 0, False)
        )
        self._manifest.closed = False
        self._save_manifest()

    def note_snapshot(self, seq: int) -> None:
        """Record a snapshot written at ``seq`` (its loss is then detected) and the journal's
        current length as acknowledged (a torn tail cannot start before it). Call after
        ``sync``. Cost: one manifest rewrite (two fsyncs)."""
        with self._lock:
            self._manifest.snapshots.append(seq)
            if self._manifest.segments and self._fd is not None:
                newest = self._manifest.segments[-1]
                newest.last_seq, newest.bytes = self._durable_seq, self._durable_bytes
            self._save_manifest()

    def _set_durable(self, seq: int) -> None:
        """Publish a new ``durable_seq`` (monotonic) and wake its waiters."""
        with self._durable:
            if seq <= self._durable_seq:
                return
            self._durable_seq = seq
            self._durable.notify_all()
        if self.on_durable is not None:
            self.on_durable(seq)

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
            self._durable_bytes = self._size
            self._set_durable(self._last_seq)
        return self._durable_seq

    def _flush_loop(self) -> None:
        if self.fsync == "interval":
            interval = self.interval_ms / 1000.0
            while not self._stop.wait(interval):
                self._flush_once()
            return
        while True:
            with self._lock:
                self._pending.wait_for(
                    lambda: self._stop.is_set() or self._durable_seq < self._last_seq
                )
                if self._stop.is_set():
                    return
            self._flush_once()

    def _flush_once(self) -> None:
        with self._lock:
            if self._fd is None or self._durable_seq >= self._last_seq:
                return
            # flush a duplicate outside the lock: appends go on while the disk works, and a
            # roll cannot close the descriptor under us
            fd = os.dup(self._fd)
            target, size = self._last_seq, self._size
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        with self._lock:
            if target > self._durable_seq:
                self._durable_bytes = size
            self._set_durable(target)

    def close(self) -> None:
        """Flush, stop the flusher, record the exact extent in the manifest (a clean stop),
        release the lock. Idempotent."""
        with self._lock:
            self._stop.set()
            self._pending.notify_all()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
            if self._manifest.segments:
                newest = self._manifest.segments[-1]
                newest.last_seq, newest.bytes = self._last_seq, self._size
                self._manifest.closed = True
                self._save_manifest()
        with self._durable:
            self._durable.notify_all()
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None  # type: ignore[assignment]

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Journal({str(self.directory)!r}, fsync={self.fsync!r}, "
            f"last_seq={self._last_seq}, durable_seq={self._durable_seq})"
        )
