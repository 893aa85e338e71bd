"""``Replayer``: feeds journaled batches to an engine as fast as the engine goes, with state
roots at checkpoints.

Batch boundaries matter to the core in one place only: a mass quote whose legs run past the
end of its batch is rejected and its legs become orphans. So runs of small batches may be
gathered into one large call (one copy into a staging buffer: the per-call cost of the
engine is paid once per run, not once per command), *except* across a batch that ends with
an incomplete mass quote: the run is cut after it. Large batches are handed to
``Engine.process_into`` as the zero-copy views the reader yields. Checkpoints are taken at
batch ends: at the first batch end at or past each multiple of ``checkpoint_every``, and at
any batch end listed in ``checkpoint_at``; so a full replay and a snapshot + tail replay of
the same journal take the same checkpoints after the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core.codec import ends_inside_multi_record
from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE, RECORD_BYTES, command_array
from derivex.journal import walk
from derivex.journal.format import HEADER_BYTES
from derivex.journal.reader import Batch, JournalReader
from derivex.journal.roots import StateRoots


@dataclass(frozen=True)
class Checkpoint:
    """The state root after the command ``seq``."""

    seq: int
    root: str  # hex

    def __str__(self) -> str:
        return f"{self.seq} {self.root}"


class Replayer:
    """Apply batches in seq order to ``engine``.

    ``roots``: a ``StateRoots`` to keep up to date (built here if not built yet);
    ``checkpoint_every`` / ``checkpoint_at``: when to record ``Checkpoint``s;
    ``on_progress(commands_so_far)`` is called after every engine call.
    Cost of ``feed``: engine time plus ~3 µs of Python per small batch and a copy of its
    bytes; ``apply_journal`` gathers small batches in compiled code instead."""

    def __init__(
        self,
        engine: Engine,
        *,
        start_seq: int = 0,
        roots: StateRoots | None = None,
        checkpoint_every: int | None = None,
        checkpoint_at: Iterable[int] = (),
        on_progress: Callable[[int], None] | None = None,
        stage_commands: int = 2048,
        direct_from: int = 2048,
    ) -> None:
        self.engine = engine
        self.seq = start_seq
        self.commands = 0
        self.roots = roots
        self.checkpoints: list[Checkpoint] = []
        self.every = checkpoint_every
        self.at = set(checkpoint_at)
        self.on_progress = on_progress
        self.direct_from = direct_from
        self._stage = command_array(stage_commands)
        self._stage_rows = self._stage.view(np.uint8).reshape(-1, RECORD_BYTES)
        self._stage_words = self._stage.view(np.uint64).reshape(-1, RECORD_BYTES // 8)
        self._staged = 0
        self._next = self._next_target(start_seq)
        if roots is not None and not roots.built:
            roots.rebuild(engine.state)

    def _next_target(self, seq: int) -> int | None:
        return (seq // self.every + 1) * self.every if self.every else None

    def _process(self, commands: np.ndarray) -> None:
        events = self.engine.process_into(commands)
        if self.roots is not None:
            self.roots.mark(events)
        if self.on_progress is not None:
            self.on_progress(self.commands)

    def flush(self) -> None:
        """Process what is staged."""
        if self._staged:
            staged, self._staged = self._staged, 0
            self._process(self._stage[:staged])

    def feed(self, batch: Batch) -> None:
        """Apply one batch (its first seq must follow the last one fed)."""
        commands = batch.commands
        count = len(commands)
        if batch.first_seq != self.seq + 1 and self.seq:
            raise ValueError(f"batch at seq {batch.first_seq} does not follow {self.seq}")
        if count >= self.direct_from or count > len(self._stage):
            self.flush()
            self.seq, self.commands = batch.last_seq, self.commands + count
            self._process(commands)
        else:
            if self._staged + count > len(self._stage):
                self.flush()
            self._stage_rows[self._staged : self._staged + count] = commands.view(np.uint8).reshape(
                -1, RECORD_BYTES
            )
            self._staged += count
            self.seq, self.commands = batch.last_seq, self.commands + count
            if ends_inside_multi_record(commands):
                self.flush()
        self._after_batch()

    def stage_area(self) -> tuple[np.ndarray, int]:
        """The staging rows as uint64[n, 8] and how many are filled, for ``walk.gather``."""
        return self._stage_words, self._staged

    def feed_staged(self, added: int, last_seq: int) -> None:
        """``added`` records of whole batches ending at ``last_seq`` were copied into the
        staging rows (by ``walk.gather``, which stops at every checkpoint target)."""
        self._staged += added
        self.commands += added
        self.seq = last_seq
        self._after_batch()

    def target(self) -> int:
        """The first seq at or after which a batch end needs a checkpoint (0: none)."""
        later = [seq for seq in self.at if seq > self.seq]
        candidates = later + ([self._next] if self._next is not None else [])
        return min(candidates) if candidates else 0

    def _after_batch(self) -> None:
        due = self._next is not None and self.seq >= self._next
        if due or self.seq in self.at:
            self.checkpoint()
            if due:
                self._next = self._next_target(self.seq)

    def checkpoint(self) -> Checkpoint | None:
        """Flush and record the root at the current seq (None without a roots tracker)."""
        self.flush()
        if self.roots is None:
            return None
        point = Checkpoint(self.seq, self.roots.update(self.engine.state).hex())
        if not self.checkpoints or self.checkpoints[-1].seq != point.seq:
            self.checkpoints.append(point)
        return point

    def finish(self) -> bytes | None:
        """Flush what is staged; return the root now (None without a tracker)."""
        self.flush()
        return self.roots.update(self.engine.state) if self.roots is not None else None


def apply_journal(reader: JournalReader, replayer: Replayer) -> None:
    """Feed every batch ``reader`` would yield to ``replayer``, gathering runs of small
    batches with the compiled walker (``walk.gather``) and handing batches of
    ``replayer.direct_from`` records or more over as zero-copy views. Whatever the walker
    does not accept (damage, a torn tail, BLAKE2b batches) is read by the Python reader,
    which raises or reports exactly as iterating ``reader`` would. Cost: ~10 ns + 64 bytes
    copied per staged record, plus the engine."""
    expected = 0
    files = reader._selected()
    for number, path in enumerate(files):
        is_last = number == len(files) - 1
        buffer = reader.open_file(path, is_last)
        if len(buffer):
            expected = _apply_file(reader, replayer, path, buffer, is_last, expected)
    replayer.flush()


def _apply_file(
    reader: JournalReader, replayer: Replayer, path: Path, buffer: Any, is_last: bool, expected: int
) -> int:
    data = np.frombuffer(buffer, dtype=np.uint8)
    words = data[: len(data) // 8 * 8].view(np.uint64)
    out = np.zeros(walk.OUT_SLOTS, dtype=np.int64)
    out[walk.O_EXPECT] = expected
    start = reader.from_seq or 0
    while True:
        rows, staged = replayer.stage_area()
        out[walk.O_STAGED], out[walk.O_BATCHES] = staged, 0
        first_needed = start if reader.batches == 0 else 0
        status = walk.gather(
            data,
            words,
            rows,
            replayer.direct_from,
            start,
            first_needed,
            replayer.target(),
            walk.TABLE,
            out,
        )
        if out[walk.O_EXPECT]:
            reader.end_seq = int(out[walk.O_EXPECT]) - 1
            if reader.first_seq is None:
                reader.first_seq = int(path.stem)
        added = int(out[walk.O_STAGED]) - staged
        if added:
            reader.batches += int(out[walk.O_BATCHES])
            reader.commands += added
            reader.last_seq = reader.end_seq
            replayer.feed_staged(added, reader.end_seq)
        if status == walk.END:
            return int(out[walk.O_EXPECT])
        if status in (walk.FULL, walk.CUT):
            replayer.flush()
        elif status == walk.DIRECT:
            offset, count = int(out[walk.O_OFFSET]), int(out[walk.O_COUNT])
            first = int(out[walk.O_FIRST])
            commands = np.frombuffer(
                buffer, dtype=COMMAND_DTYPE, count=count, offset=offset + HEADER_BYTES
            )
            batch = reader.accept(Batch(first, commands, path, offset))
            if batch is not None:
                replayer.feed(batch)
            out[walk.O_OFFSET] = offset + HEADER_BYTES + RECORD_BYTES * count
            out[walk.O_EXPECT] = first + count
        else:  # SLOW: the reference reader takes the rest of this file
            pending = int(out[walk.O_EXPECT]) or None
            for verified in reader._walk(path, buffer, is_last, pending, int(out[walk.O_OFFSET])):
                batch = reader.accept(verified)
                if batch is not None:
                    replayer.feed(batch)
            return reader.end_seq + 1
