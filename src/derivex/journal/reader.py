"""Reading a journal: batches as zero-copy ``COMMAND_DTYPE`` views, every checksum and seq
verified, a torn tail found (and optionally cut off).

Rules (docs/journal.md, "Damage"):

- the *last* file may end in a torn batch: fewer than 64 header bytes, a header whose payload
  runs past the end of the file, or a zero-filled tail, starting at or after ``tail_floor``
  (the length the segment manifest records as acknowledged). That is what a crash in the
  middle of an append leaves. The reader stops before it and reports it as ``TornTail``;
  ``repair=True`` truncates the file there (and fsyncs it).
- anything else — a *complete* batch whose checksum fails (even the final one: a crash
  never leaves one, the bytes were damaged), a bad header with more data after it, a
  damaged earlier file, a torn tail before ``tail_floor``, a gap or overlap in the sequence,
  a record whose seq disagrees with its header — raises ``CorruptionError`` naming the file
  and the byte offset of the damaged batch. Nothing is ever skipped silently.

Files are mapped copy-on-write (``mmap.ACCESS_COPY``): the arrays are writable, so the
compiled engine takes them with the same signature as any other batch, and pages are only
copied if something writes to them (nothing does).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from derivex.core.records import COMMAND_DTYPE
from derivex.journal import walk
from derivex.journal.format import (
    CHECKED_HEADER_BYTES,
    HEADER,
    HEADER_BYTES,
    CorruptionError,
    JournalError,
    checksum,
    header_problem,
    journal_files,
)

_NO_ROWS = np.zeros((0, 8), dtype=np.uint64)


@dataclass(frozen=True)
class Batch:
    """One journaled batch: ``commands`` is a view into the mapped file."""

    first_seq: int
    commands: np.ndarray
    path: Path
    offset: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.commands) - 1


@dataclass(frozen=True)
class TornTail:
    """A torn final batch: ``dropped_bytes`` bytes from ``offset`` of ``path``."""

    path: Path
    offset: int
    dropped_bytes: int
    reason: str

    def __str__(self) -> str:
        return (
            f"torn tail in {self.path}: {self.reason}; {self.dropped_bytes} bytes from "
            f"byte offset {self.offset}"
        )


def map_file(path: Path) -> mmap.mmap | bytes:
    size = path.stat().st_size
    if size == 0:
        return b""
    with open(path, "rb") as handle:
        return mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY)


def _zero_from(buffer: mmap.mmap | bytes, offset: int) -> bool:
    view = np.frombuffer(buffer, dtype=np.uint8, offset=offset)
    return not view.any()


class JournalReader:
    """Iterate the batches of a journal directory from ``from_seq`` on.

    >>> for batch in JournalReader(directory, from_seq=1):   # doctest: +SKIP
    ...     engine.process_into(batch.commands)

    After iteration: ``torn`` (a ``TornTail`` or None), ``last_seq`` (last seq yielded, or
    ``from_seq - 1``), ``end_seq`` (last good seq of the files read; 0 if none),
    ``batches`` and ``commands`` yielded. Cost: one pass over the mapped files (CRC32C at
    memory speed) plus ~3 µs of Python per batch. Files that end before ``from_seq`` are
    not opened. Raises ``CorruptionError`` (see module docs) and
    ``JournalError`` when ``from_seq`` is not in the journal.
    """

    def __init__(
        self,
        directory: Path | str,
        from_seq: int | None = None,
        *,
        repair: bool = False,
        verify: bool = True,
        tail_floor: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.tail_floor = tail_floor  # a torn tail of the last file may not start before
        self.from_seq = from_seq
        self.repair = repair
        self.verify = verify
        self.torn: TornTail | None = None
        self.last_seq = 0 if from_seq is None else from_seq - 1
        self.first_seq: int | None = None
        self.end_seq = 0  # last good seq in the files read, yielded or not
        self.batches = 0
        self.commands = 0
        self.files: list[Path] = journal_files(self.directory)

    def _selected(self) -> list[Path]:
        files = self.files
        start = 0
        if self.from_seq is not None:
            for index in range(1, len(files)):
                if int(files[index].stem) <= self.from_seq:
                    start = index
        return files[start:]

    def __iter__(self) -> Iterator[Batch]:
        expected: int | None = None
        files = self._selected()
        for number, path in enumerate(files):
            is_last = number == len(files) - 1
            buffer = self.open_file(path, is_last)
            for batch in self._walk(path, buffer, is_last, expected):
                expected = batch.last_seq + 1
                accepted = self.accept(batch)
                if accepted is not None:
                    yield accepted

    def open_file(self, path: Path, is_last: bool) -> mmap.mmap | bytes:
        """Map a journal file; check that its name is the seq of its first batch."""
        buffer = map_file(path)
        if len(buffer) == 0 and not is_last:
            raise CorruptionError(path, 0, "empty journal file before the last one")
        if len(buffer) >= HEADER_BYTES:
            fields = HEADER.unpack_from(buffer, 0)
            if header_problem(fields) is None and fields[3] != int(path.stem):
                raise CorruptionError(
                    path,
                    0,
                    f"file name says seq {int(path.stem)} but its first batch is seq {fields[3]}",
                )
        return buffer

    def accept(self, batch: Batch) -> Batch | None:
        """Count a verified batch; trim it to ``from_seq``; None if it ends before."""
        self.end_seq = batch.last_seq
        if self.first_seq is None:
            self.first_seq = batch.first_seq
        start = self.from_seq
        if start is not None:
            if batch.last_seq < start:
                return None
            if batch.first_seq < start:
                skip = start - batch.first_seq
                batch = Batch(
                    start,
                    batch.commands[skip:],
                    batch.path,
                    batch.offset + HEADER_BYTES + 64 * skip,
                )
            elif self.batches == 0 and batch.first_seq > start:
                raise JournalError(
                    f"journal in {self.directory} has no seq {start}: "
                    f"it resumes at {batch.first_seq}"
                )
        self.batches += 1
        self.commands += len(batch.commands)
        self.last_seq = batch.last_seq
        return batch

    def last_seq_of(self, path: Path, is_last: bool) -> int:
        """Verify one whole file — the compiled walker first, the Python reader from the
        first batch it does not accept — and return its last good seq (0: none). A torn
        tail is handled as in iteration (``torn``, ``repair``). Cost: ~memory speed."""
        buffer = self.open_file(path, is_last)
        if not len(buffer):
            return 0
        data = np.frombuffer(buffer, dtype=np.uint8)
        out = np.zeros(walk.OUT_SLOTS, dtype=np.int64)
        beyond = 1 << 62  # every batch is "before the start": verified, nothing copied
        status = walk.gather(
            data,
            data[: len(data) // 8 * 8].view(np.uint64),
            _NO_ROWS,
            beyond,
            beyond,
            0,
            0,
            walk.TABLE,
            out,
        )
        last = int(out[walk.O_EXPECT]) - 1 if out[walk.O_EXPECT] else 0
        if status != walk.END:
            for batch in self._walk(
                path, buffer, is_last, last + 1 if last else None, int(out[walk.O_OFFSET])
            ):
                last = batch.last_seq
        return last

    def _walk(
        self,
        path: Path,
        buffer: mmap.mmap | bytes,
        is_last: bool,
        expected: int | None,
        offset: int = 0,
    ) -> Iterator[Batch]:
        """Verified batches of one file from ``offset`` (the reference implementation of the
        checks; ``walk.gather`` is the compiled fast path)."""
        size = len(buffer)
        while offset < size:
            torn_reason = None
            if size - offset < HEADER_BYTES:
                torn_reason = f"file ends inside a batch header ({size - offset} bytes)"
            else:
                fields = HEADER.unpack_from(buffer, offset)
                problem = header_problem(fields)
                end = offset + HEADER_BYTES + (fields[6] if problem is None else 0)
                if problem is not None:
                    if not (is_last and _zero_from(buffer, offset)):
                        raise CorruptionError(path, offset, problem)
                    torn_reason = "zero-filled tail"
                elif end > size:
                    torn_reason = (
                        f"batch of {fields[6]} payload bytes with only "
                        f"{size - offset - HEADER_BYTES} present"
                    )
                elif self.verify or (is_last and end == size):
                    payload = memoryview(buffer)[offset + HEADER_BYTES : end]
                    head = memoryview(buffer)[offset : offset + CHECKED_HEADER_BYTES]
                    good = checksum(fields[2], head, payload) == fields[7]
                    head.release()
                    payload.release()
                    if not good:  # complete but damaged: never what a crash leaves
                        raise CorruptionError(
                            path,
                            offset,
                            f"checksum mismatch in batch seq {fields[3]}.."
                            f"{fields[3] + fields[4] - 1}",
                        )
            if torn_reason is not None:
                if not is_last:
                    raise CorruptionError(path, offset, torn_reason + " before the last file")
                if offset < self.tail_floor:
                    raise CorruptionError(
                        path,
                        offset,
                        f"{torn_reason} inside acknowledged "
                        f"data (the manifest records "
                        f"{self.tail_floor} bytes)",
                    )
                self.torn = TornTail(path, offset, size - offset, torn_reason)
                if self.repair:
                    truncate(path, offset)
                return
            first_seq, count = fields[3], fields[4]
            if expected is not None and first_seq != expected:
                raise CorruptionError(
                    path,
                    offset,
                    f"sequence break: expected seq {expected}, batch starts at {first_seq}",
                )
            commands = np.frombuffer(
                buffer, dtype=COMMAND_DTYPE, count=count, offset=offset + HEADER_BYTES
            )
            seqs = commands["seq"]
            if int(seqs[0]) != first_seq or int(seqs[-1]) != first_seq + count - 1:
                raise CorruptionError(
                    path,
                    offset,
                    f"records disagree with the header: seqs "
                    f"{int(seqs[0])}..{int(seqs[-1])}, header "
                    f"{first_seq}..{first_seq + count - 1}",
                )
            yield Batch(first_seq, commands, path, offset)
            expected = first_seq + count
            offset = end


def truncate(path: Path, offset: int) -> None:
    """Cut ``path`` at ``offset`` and make the new length durable."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(
    directory: Path | str, from_seq: int | None = None, *, repair: bool = False
) -> JournalReader:
    """Batches of the journal in ``directory`` from ``from_seq`` on (None: from its first
    batch, whatever its seq). See ``JournalReader``."""
    return JournalReader(directory, from_seq, repair=repair)


def scan(directory: Path | str, *, repair: bool = False) -> JournalReader:
    """Verify the whole journal (every checksum and seq) without keeping the batches.
    Returns the exhausted reader: ``first_seq``, ``last_seq``, ``batches``, ``commands``,
    ``torn``. Raises ``CorruptionError`` on damage that is not a torn tail."""
    reader = JournalReader(directory, None, repair=repair)
    for _ in reader:
        pass
    return reader
