"""The sequenced command log as a contract, and its file-journal implementation.

A log holds stamped command records (``COMMAND_DTYPE``, seqs consecutive from 1) in
appended batches ("frames"). Two implementations keep one contract, checked by one test
suite (tests/cluster/test_log_contract.py):

- :class:`FileLog`: the embedded write-ahead journal (``derivex.journal.Journal``), one
  journal batch per frame;
- ``derivex.cluster.jetstream.JetStreamLog``: one JetStream message per frame.

The contract, for a log whose last command seq is ``L``:

- ``append(commands, expected_last_seq)`` writes ``commands`` (stamped
  ``expected_last_seq + 1`` on) as one frame and returns its last seq once the frame is
  durable (the file journal: fsynced; JetStream: the PubAck, fsynced on a quorum). If
  ``expected_last_seq != L`` it raises :class:`WrongLastSequence` (alias ``Fenced``) and
  writes nothing: the caller is a stale writer and must stop. One exception: a *retry*
  of a frame the log already holds (same records at the same seqs, e.g. after a timeout
  that hid a success) returns the same result as the first call and writes nothing.
- ``read(from_seq)`` yields :class:`LogBatch` frames from the one holding ``from_seq``
  (trimmed to start there) to the last frame present when called; bytes are exactly the
  appended ones.
- ``last_seq``: ``L`` as far as this handle knows (JetStream: as of its last append or
  :meth:`refresh`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from derivex.core.records import COMMAND_DTYPE
from derivex.journal import Journal, JournalReader

__all__ = [
    "CommandLog",
    "Fenced",
    "FileLog",
    "LogBatch",
    "LogError",
    "WrongLastSequence",
    "check_frame",
]


class LogError(RuntimeError):
    """The log could not do what was asked (unreachable, timed out, bad input)."""


class WrongLastSequence(LogError):
    """The log's last seq is not what the writer expected: another writer has appended
    (or the caller is confused). The writer must stop sequencing at once."""

    def __init__(self, expected: int, actual: int | None, detail: str = "") -> None:
        self.expected = expected
        self.actual = actual
        found = "unknown" if actual is None else str(actual)
        super().__init__(f"expected last seq {expected}, the log is at {found}{detail}")


Fenced = WrongLastSequence


@dataclass(frozen=True)
class LogBatch:
    """One frame read back: ``commands`` (stamped records, ``first_seq`` on, possibly a
    view into a mapped file or a message buffer) and ``position``, where the log keeps the
    frame (JetStream: its stream seq; the file journal: None)."""

    first_seq: int
    commands: np.ndarray
    position: int | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.commands) - 1


class CommandLog(Protocol):
    """What the sequencer and the replicas need of a log (see the module docstring)."""

    @property
    def last_seq(self) -> int: ...

    def append(self, commands: np.ndarray, expected_last_seq: int) -> int: ...

    def read(self, from_seq: int = 1) -> Iterator[LogBatch]: ...

    def close(self) -> None: ...


def check_frame(commands: np.ndarray, expected_last_seq: int) -> tuple[int, int]:
    """Check a frame before it is appended: ``COMMAND_DTYPE``, at least one record, seqs
    ``expected_last_seq + 1`` on, consecutive. Returns ``(first_seq, last_seq)``. Raises
    ValueError (TypeError for the dtype): such a frame is a caller's bug, not a fence."""
    if commands.dtype != COMMAND_DTYPE:
        raise TypeError("commands must have dtype COMMAND_DTYPE")
    if len(commands) == 0:
        raise ValueError("an empty frame cannot be appended")
    seqs = commands["seq"].astype(np.int64)
    first = expected_last_seq + 1
    if int(seqs[0]) != first or not np.array_equal(
        seqs, np.arange(first, first + len(commands), dtype=np.int64)
    ):
        raise ValueError(
            f"frame seqs {int(seqs[0])}..{int(seqs[-1])} do not continue seq {expected_last_seq}"
        )
    return first, first + len(commands) - 1


class FileLog:
    """The contract over a journal directory: a ``Journal`` for appends (one batch per
    frame, ``fsync="batch"`` by default so that ``append`` returns durable) and a
    ``JournalReader`` for reads. Holds the journal's directory lock until ``close``.
    Cost of ``append``: the journal's (one ``writev`` + one ``fdatasync``); of a retry's
    duplicate check: one read of the frame's records."""

    def __init__(self, directory: Path | str, *, fsync: str = "batch") -> None:
        self.directory = Path(directory)
        self.journal = Journal(self.directory, fsync=fsync)

    @property
    def last_seq(self) -> int:
        return self.journal.last_seq

    def append(self, commands: np.ndarray, expected_last_seq: int) -> int:
        """See the module docstring. Raises WrongLastSequence, ValueError, TypeError, and
        the journal's errors on I/O failure."""
        first, last = check_frame(commands, expected_last_seq)
        actual = self.journal.last_seq
        if expected_last_seq != actual:
            if actual >= last and self._holds(commands, first):
                return last  # a retry of a frame already written
            raise WrongLastSequence(expected_last_seq, actual)
        self.journal.append(commands)
        self.journal.wait_durable(last)
        return last

    def _holds(self, commands: np.ndarray, first: int) -> bool:
        """The journal holds exactly ``commands`` from seq ``first``."""
        # bytes, not np.concatenate: a structured copy need not keep the padding bytes
        stored = b"".join(
            batch.commands.tobytes() for batch in self._slice(first, first + len(commands) - 1)
        )
        return stored == commands.tobytes()

    def _slice(self, first: int, last: int) -> Iterator[LogBatch]:
        for batch in JournalReader(self.directory, first):
            if batch.first_seq > last:
                return
            yield LogBatch(batch.first_seq, batch.commands[: last - batch.first_seq + 1])

    def read(self, from_seq: int = 1) -> Iterator[LogBatch]:
        """Frames from the one holding ``from_seq`` to the last written; each checksum is
        verified. Raises ``derivex.journal.JournalError`` if ``from_seq`` is not in the
        journal, ``CorruptionError`` on damage."""
        end = self.journal.last_seq
        if from_seq > end:
            return
        for batch in JournalReader(self.directory, from_seq):
            if batch.first_seq > end:
                return
            yield LogBatch(batch.first_seq, batch.commands)

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> FileLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
