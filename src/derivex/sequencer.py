"""The sequencer: the one place where commands get their order and their time, and the
one function every mode runs a batch through. docs/architecture.md numbers the six stages
of the data path (1 gateway, 2 sequencer, 3 journal, 4 engine, 5 projection, 6 fan-out and
reply); a batch passes stages 2-4 and hands over to 5-6 here, in this order:

- **stamp** (stage 2): each record gets the next sequence number (``seq``, consecutive
  from 1 over the venue's life) and the batch the sequencer time (``ts_ns``, from the
  injected clock, never earlier than the previous batch's);
- **before-hook** ``before(commands)`` (stage 3 where the log is written first): makes
  the stamped batch durable or replicated *before* the engine sees it (the embedded venue:
  ``Journal.append``; a cluster leader: a JetStream publish with the expected last
  sequence). If it raises, the batch is not processed, its sequence numbers are not used
  up (the next batch gets them), and the exception goes to the caller with a note naming
  the seqs;
- **engine** (stage 4): ``Engine.process`` (a new events array) or ``Engine.process_into``
  (a view of the engine's buffer, valid until the next batch: ``views=True``);
- **after-hook** ``after(commands, events)`` (towards stages 5-6): hands the result on
  (the embedded venue: ``Journal.observe`` and the durability wait; the multi-process
  runtime: the frame onto the bus for the journal writer, market data and the workers'
  replicas).

:meth:`Sequencer.sequence` runs all four; :meth:`Sequencer.apply` all but the stamp, for
commands stamped elsewhere (a replica or a standby following a leader's log), checking
they continue the sequence.

Why here, at the top of the package: both modes import it, the embedded ``Exchange``
(``derivex.exchange``) and the runtime's engine process (``derivex.runtime``), and a future
cluster will. It depends only on ``derivex.core``; in ``runtime/`` it would make the
embedded venue import the runtime package (shared memory, processes), and in ``journal/``
the journal would own the pipeline it is one stage of.

>>> from derivex.core.engine import Engine
>>> from derivex.core.records import CommandKind, command_array
>>> seen = []
>>> sequencer = Sequencer(
...     Engine(),
...     clock=lambda: 1_000,
...     before=lambda commands: seen.append(("before", int(commands["seq"][-1]))),
...     after=lambda commands, events: seen.append(("after", len(events))),  # 2 per account
... )
>>> batch = command_array(2)
>>> batch["kind"] = CommandKind.CREATE_ACCOUNT
>>> events = sequencer.sequence(batch)
>>> batch["seq"].tolist(), batch["ts_ns"].tolist(), sequencer.seq, seen
([1, 2], [1000, 1000], 2, [('before', 2), ('after', 4)])
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from derivex import door_native
from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE

__all__ = ["AfterHook", "BeforeHook", "SequenceGap", "Sequencer"]

BeforeHook = Callable[[np.ndarray], object]
AfterHook = Callable[[np.ndarray, np.ndarray], object]

_WORDS = 8  # int64 words per 64-byte record; word 0 is ``seq``, word 1 ``ts_ns``


class SequenceGap(ValueError):
    """Commands handed to :meth:`Sequencer.apply` do not continue the sequence."""


class _PythonState:
    """The sequencer's hot state where ``derivex.door_native`` does not build: the same
    attributes as its ``SequencerState`` (int64 fields of a C struct there, which the
    per-command door's C methods read and write without a Python call)."""

    __slots__ = ("batches", "door_version", "seq", "ts_ns")


_native = door_native.load()
_State: type = _PythonState if _native is None else _native.SequencerState


class Sequencer(_State):  # type: ignore[misc]  # a base chosen at import: C struct or slots
    """Stamps batches and runs them through hooks and one engine (see the module
    docstring). ``seq``: the last sequence number used (a venue resuming a journal sets it
    to the journal's last seq); ``ts_ns``: the last sequencer time stamped; ``batches``:
    batches processed (all three int64, in a C struct the per-command door stamps
    directly where ``derivex.door_native`` builds). ``engine``, ``before``, ``after`` and
    ``clock`` may be replaced between batches: each replacement bumps ``door_version``,
    which the per-command door (``derivex.exchange_orders``) compares instead of
    re-reading them per order. Not thread-safe: one caller drives it."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], int] = time.time_ns,
        seq: int = 0,
        before: BeforeHook | None = None,
        after: AfterHook | None = None,
        views: bool = False,
    ) -> None:
        self.door_version = 0
        self.engine = engine
        self.clock = clock
        self.seq = seq
        self.ts_ns = 0
        self.batches = 0
        self.before = before
        self.after = after
        self.views = views

    def __getstate__(self) -> dict[str, object]:
        """For ``copy`` and ``pickle`` (the C struct's fields are not in the instance dict,
        and CPython refuses to pickle a type with a C base it does not know)."""
        state = dict(vars(self))
        state.update((name, getattr(self, name)) for name in _PythonState.__slots__)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            if name in _PythonState.__slots__:
                setattr(self, name, value)
            else:  # the instance dict, past the properties (their setters bump versions)
                self.__dict__[name] = value

    # the door's conditions: stored beside the property, each change bumps door_version
    @property
    def engine(self) -> Engine:
        """The engine the batches run through."""
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = engine
        self.door_version += 1

    @property
    def clock(self) -> Callable[[], int]:
        """The clock ``stamp`` reads (int nanoseconds; ``time.time_ns`` by default)."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self.door_version += 1

    @property
    def before(self) -> BeforeHook | None:
        """The before-hook (None: none)."""
        return self._before

    @before.setter
    def before(self, before: BeforeHook | None) -> None:
        self._before = before
        self.door_version += 1

    @property
    def after(self) -> AfterHook | None:
        """The after-hook (None: none)."""
        return self._after

    @after.setter
    def after(self, after: AfterHook | None) -> None:
        self._after = after
        self.door_version += 1

    def stamp(self, commands: np.ndarray) -> int:
        """Write ``seq`` (``self.seq + 1`` on) and ``ts_ns`` into ``commands`` in place and
        return the time stamped; ``self.seq`` is not advanced (``sequence`` does that once
        the before-hook has succeeded). Cost: one clock reading, O(n) word stores. Raises
        TypeError for records that are not ``COMMAND_DTYPE``."""
        if commands.dtype is not COMMAND_DTYPE and commands.dtype != COMMAND_DTYPE:
            raise TypeError("commands must have dtype COMMAND_DTYPE")
        ts_ns = self._clock()
        if ts_ns < self.ts_ns:  # a clock stepped back: sequencer time never does
            ts_ns = self.ts_ns
        self.ts_ns = ts_ns
        count = len(commands)
        first = self.seq + 1
        if commands.flags.c_contiguous:  # the words directly: field setters cost more
            words = commands.view(np.int64).reshape(count, _WORDS)
            words[:, 0] = np.arange(first, first + count, dtype=np.int64)
            words[:, 1] = ts_ns
        else:
            commands["seq"] = np.arange(first, first + count, dtype=np.uint64)
            commands["ts_ns"] = ts_ns
        return ts_ns

    def sequence(self, commands: np.ndarray) -> np.ndarray:
        """Stamp ``commands`` in place, then before-hook, engine, after-hook; returns the
        events (a new array, or with ``views=True`` a view valid until the next batch).
        Cost: one compiled engine call plus the hooks'. Raises what the before-hook raises
        (engine untouched, seqs not used up) and what the after-hook raises (the batch is
        then processed and its seqs are used)."""
        # the stages inline, and one record (most commands) stamped here: this is the hot
        # path of every command (a Python call costs ~0.1 us of a ~3 us submit)
        if len(commands) == 1 and commands.dtype is COMMAND_DTYPE:
            ts_ns = self._clock()
            if ts_ns < self.ts_ns:
                ts_ns = self.ts_ns
            self.ts_ns = ts_ns
            words = commands.view(np.int64)
            words[0] = self.seq + 1
            words[1] = ts_ns
        else:
            self.stamp(commands)
        before = self._before
        if before is not None:
            self._run_before(before, commands)
        self.seq += len(commands)
        engine = self._engine
        events = engine.process_into(commands) if self.views else engine.process(commands)
        self.batches += 1
        after = self._after
        if after is not None:
            after(commands, events)
        return events

    def apply(self, commands: np.ndarray) -> np.ndarray:
        """Run commands stamped elsewhere (a leader's log, read by a replica or a standby)
        through before-hook, engine and after-hook; ``self.ts_ns`` follows their time.
        Cost: as ``sequence``, plus an O(n) check of the seqs. Raises ``SequenceGap`` when
        they are not ``self.seq + 1, self.seq + 2, ...`` (nothing is run)."""
        if commands.dtype is not COMMAND_DTYPE and commands.dtype != COMMAND_DTYPE:
            raise TypeError("commands must have dtype COMMAND_DTYPE")
        count = len(commands)
        if count:
            seqs = commands["seq"].astype(np.int64)
            expected = np.arange(self.seq + 1, self.seq + 1 + count, dtype=np.int64)
            if not np.array_equal(seqs, expected):
                raise SequenceGap(
                    f"commands carry seqs {int(seqs[0])}..{int(seqs[-1])}, the sequence "
                    f"is at {self.seq}"
                )
            self.ts_ns = max(self.ts_ns, int(commands["ts_ns"].max()))
        if self._before is not None:
            self._run_before(self._before, commands)
        self.seq += count
        engine = self._engine
        events = engine.process_into(commands) if self.views else engine.process(commands)
        self.batches += 1
        if self._after is not None:
            self._after(commands, events)
        return events

    def _run_before(self, before: BeforeHook, commands: np.ndarray) -> None:
        """Run the before-hook; a failure gets a note naming the seqs it leaves unused."""
        try:
            before(commands)
        except BaseException as error:
            error.add_note(
                f"sequencer: the before-hook failed for seqs {self.seq + 1}.."
                f"{self.seq + len(commands)}; the engine did not process them and the "
                f"seqs were not used"
            )
            raise
