"""Recovery (latest snapshot + journal tail), reopening a journal at the recovered
position, snapshots of a running venue, and the full audit behind ``derivex verify``.

Recovery returns an engine and its position (:class:`Recovered`); it knows nothing of the
``Exchange`` facade, which builds itself from them (``Exchange.open``,
``Exchange.from_recovered``): the journal is a layer below the facade.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.journal import segments
from derivex.journal.format import (
    CONFIG_FILE,
    LOCK_FILE,
    CorruptionError,
    IncompatibleSnapshot,
    JournalError,
    journal_files,
)
from derivex.journal.reader import JournalReader, TornTail
from derivex.journal.replay import Checkpoint, Replayer, apply_journal
from derivex.journal.roots import StateRoots
from derivex.journal.snapshot import (
    list_snapshots,
    load_snapshot,
    restore_engine,
    write_snapshot,
)
from derivex.journal.writer import DEFAULT_FSYNC, Journal, lock_directory, read_config


@dataclass
class Recovered:
    """An engine rebuilt from a journal directory, and how."""

    engine: Engine
    config: EngineConfig
    seq: int  # last command applied (0: none)
    snapshot_seq: int | None
    replayed: int  # commands replayed from the journal
    torn: TornTail | None
    root: bytes | None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> list[str]:
        lines = [
            f"recovered to seq {self.seq}: "
            + (
                f"snapshot at seq {self.snapshot_seq} + "
                if self.snapshot_seq is not None
                else "full replay, "
            )
            + f"{self.replayed} journaled commands"
        ]
        if self.torn is not None:
            lines.append(str(self.torn))
        return lines + self.notes


def _recorded_config(directory: Path) -> tuple[EngineConfig | None, str]:
    path = directory / CONFIG_FILE
    if path.exists():
        return EngineConfig.from_dict(read_config(path)), str(path)
    for _, path in reversed(list_snapshots(directory)):
        with contextlib.suppress(IncompatibleSnapshot):
            return load_snapshot(path, verify=True).config, str(path)
    return None, ""


def recover(
    directory: Path | str,
    *,
    config: EngineConfig | None = None,
    repair: bool = False,
    use_snapshot: bool = True,
    roots: bool = True,
    snapshot_fallback: bool = False,
    checkpoint_every: int | None = None,
    checkpoint_at: Iterable[int] = (),
    on_progress: Callable[[int], None] | None = None,
) -> Recovered:
    """Rebuild the engine: the latest snapshot (unless ``use_snapshot=False``), then every
    journaled batch after it. First the files are checked against the segment manifest
    (``segments.check``: a missing, renamed or cut file, a missing snapshot). Without a
    snapshot the journal must start at seq 1. ``repair=True`` (takes the writer lock)
    truncates a torn tail on disk; otherwise the torn bytes are only skipped and reported
    (``torn``). A torn tail inside the length the manifest records is damage. A damaged
    snapshot raises ``CorruptionError`` unless ``snapshot_fallback`` (then the next older
    one is used and the damage is listed in ``notes``). ``roots``: compute the state root
    (a full build: ~2 µs per account) and checkpoints. Raises ``JournalError`` if the journal
    does not reach the snapshot or the recorded config disagrees with ``config``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise JournalError(f"no journal directory {directory}")
    lock = lock_directory(directory) if repair else None
    try:
        return _recover(
            directory,
            config,
            repair,
            use_snapshot,
            roots,
            snapshot_fallback,
            checkpoint_every,
            checkpoint_at,
            on_progress,
        )
    finally:
        if lock is not None:
            os.close(lock)


def _recover(
    directory: Path,
    config: EngineConfig | None,
    repair: bool,
    use_snapshot: bool,
    roots: bool,
    snapshot_fallback: bool,
    checkpoint_every: int | None,
    checkpoint_at: Iterable[int],
    on_progress: Callable[[int], None] | None,
) -> Recovered:
    notes: list[str] = []
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    manifest = segments.check(directory, [seq for seq, _ in list_snapshots(directory)])
    files = journal_files(directory)
    floor = segments.tail_floor(manifest, files[-1]) if files else 0
    snapshot = None
    candidates = list_snapshots(directory) if use_snapshot else []
    if not use_snapshot and manifest is not None and manifest.base:
        # the history before ``base`` was dropped by a repair: a full replay starts there
        candidates = [
            (seq, path) for seq, path in list_snapshots(directory) if seq == manifest.base
        ]
        notes.append(
            f"full replay from the base snapshot at seq {manifest.base} (history "
            f"before it was dropped by derivex repair)"
        )
    for _, path in reversed(candidates):
        try:
            snapshot = load_snapshot(path)
            break
        except IncompatibleSnapshot as error:  # sound, from another version: never damage
            notes.append(f"skipped snapshot of another state layout: {error}")
        except CorruptionError as error:
            if not snapshot_fallback:
                raise
            notes.append(f"skipped damaged snapshot: {error}")
    if snapshot is not None:
        if config is not None and config != snapshot.config:
            raise JournalError(f"{snapshot.path} was taken with a different EngineConfig")
        config = snapshot.config
        engine = restore_engine(snapshot)
        start = snapshot.seq
    else:
        if config is None:
            config, source = _recorded_config(directory)
            if config is None:
                config = EngineConfig()
                notes.append("no recorded EngineConfig: replayed with the default")
            else:
                notes.append(f"EngineConfig from {source}")
        engine = Engine(config)
        start = 0
    seconds["snapshot_load"] = time.perf_counter() - started
    tracker = None
    if roots:
        started = time.perf_counter()
        tracker = StateRoots()
        root = tracker.rebuild(engine.state)
        seconds["root_build"] = time.perf_counter() - started
        if snapshot is not None and snapshot.root is not None and snapshot.root != root:
            raise JournalError(
                f"{snapshot.path}: recorded state root {snapshot.root.hex()} "
                f"differs from the root of its state {root.hex()}"
            )
    started = time.perf_counter()
    reader = JournalReader(directory, start + 1, repair=repair, tail_floor=floor)
    _verify_skipped(directory, files, reader._selected())
    replayer = Replayer(
        engine,
        start_seq=start,
        roots=tracker,
        checkpoint_every=checkpoint_every,
        checkpoint_at=checkpoint_at,
        on_progress=on_progress,
    )
    apply_journal(reader, replayer)
    final_root = replayer.finish()
    seconds["replay"] = time.perf_counter() - started
    if snapshot is not None and reader.end_seq < snapshot.seq:
        raise JournalError(
            f"journal in {directory} ends at seq {reader.end_seq}, before "
            f"snapshot {snapshot.path.name} (seq {snapshot.seq})"
        )
    return Recovered(
        replayer.engine,
        config,
        replayer.seq,
        snapshot.seq if snapshot is not None else None,
        reader.commands,
        reader.torn,
        final_root,
        replayer.checkpoints,
        notes,
        seconds,
    )


def _verify_skipped(directory: Path, files: list[Path], selected: list[Path]) -> None:
    """Verify the files before the snapshot's (not replayed, still the acknowledged
    history): every checksum, and seqs continuous across files. Cost: the compiled walker
    at ~memory speed over their bytes. Raises ``CorruptionError``."""
    expected = None
    checker = JournalReader(directory)
    for path in files[: len(files) - len(selected)] + selected[:1]:
        if expected is not None and int(path.stem) != expected:
            raise CorruptionError(
                path,
                0,
                f"sequence break: expected seq {expected}, the file starts at {int(path.stem)}",
            )
        if path in selected:
            return
        expected = checker.last_seq_of(path, is_last=False) + 1


def reopen(
    directory: Path | str,
    *,
    config: EngineConfig | None = None,
    fsync: str = DEFAULT_FSYNC,
    interval_ms: float = 5.0,
    roll_bytes: int = 64 << 20,
) -> tuple[Journal, Recovered]:
    """Recover the engine journaled in ``directory`` (an empty engine if the directory is
    new or empty) and reopen its journal for appending at the recovered position: the
    journal's ``last_seq`` is the recovered ``seq``. The embedded venue builds itself from
    the two (``Exchange.open``, ``Exchange.from_recovered``). Recovery is read-only; only
    once it has succeeded does the reopened journal cut a genuine torn tail (reported in
    ``recovered.torn``). A failed open changes no file. Cost: a recovery (snapshot load +
    tail replay). Raises ``JournalError`` on a config that disagrees with the recorded one
    or a journal that moved during recovery, ``CorruptionError`` on damage."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    recovered = recover(directory, config=config, repair=False, roots=False)
    recorded = Path(directory) / CONFIG_FILE
    if recorded.exists() and EngineConfig.from_dict(read_config(recorded)) != recovered.config:
        raise JournalError(
            f"{recorded} records a different EngineConfig than the journal's snapshot"
        )
    journal = Journal(directory, fsync=fsync, interval_ms=interval_ms, roll_bytes=roll_bytes)
    if journal.last_seq != recovered.seq:
        journal.close()
        raise JournalError(f"journal moved during recovery ({recovered.seq} -> {journal.last_seq})")
    return journal, recovered


class Journaled(Protocol):
    """What ``snapshot`` needs of a venue (an ``Exchange``): its engine and its journal."""

    @property
    def engine(self) -> Engine: ...

    @property
    def journal(self) -> Journal | None: ...


def snapshot(exchange: Journaled, *, compression: str = "none", with_root: bool = True) -> Path:
    """Snapshot a journaled exchange into its journal directory, at the journal's last seq.
    The journal is flushed first, so a snapshot never gets ahead of the durable log.
    ``with_root`` records the state root (incremental after the first time)."""
    journal = exchange.journal
    if journal is None:
        raise JournalError("the exchange has no journal")
    journal.sync()
    state = exchange.engine.state
    root = journal.roots.update(state) if with_root else None
    path = write_snapshot(
        journal.directory,
        state,
        exchange.engine.config,
        journal.last_seq,
        root=root,
        compression=compression,
    )
    journal.note_snapshot(journal.last_seq)  # its loss is detected from now on
    return path


@dataclass
class Audit:
    """What ``verify_directory`` found; ``ok`` is False on any disagreement."""

    ok: bool
    lines: list[str]
    full: Recovered


def verify_directory(
    directory: Path | str,
    *,
    checkpoint_every: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Audit:
    """Check every batch and snapshot, replay the whole journal from an empty state, and
    check that (a) every snapshot's recorded root equals the full replay's root at its seq
    and (b) the latest snapshot + tail reaches the same state hash and root as the full
    replay. Read-only. Raises ``CorruptionError`` on damage (a torn tail is reported)."""
    directory = Path(directory)
    snapshots = list_snapshots(directory)
    full = recover(
        directory,
        use_snapshot=False,
        checkpoint_every=checkpoint_every,
        checkpoint_at=[seq for seq, _ in snapshots],
        on_progress=on_progress,
    )
    lines = full.report()
    ok = True
    full_hash = full.engine.state_hash()
    lines.append(
        f"full replay: seq {full.seq} state hash {full_hash} root "
        f"{full.root.hex() if full.root else None}"
    )
    at = {point.seq: point.root for point in full.checkpoints}
    for seq, path in snapshots:
        try:
            recorded = load_snapshot(path)
        except IncompatibleSnapshot as error:  # not damage: recovery passes over it
            lines.append(f"{path.name}: another state layout, not used ({error})")
            continue
        if seq == full.snapshot_seq:
            lines.append(f"{path.name}: the base the full replay starts from")
        elif recorded.root is None:
            lines.append(f"{path.name}: no recorded root")
        elif at.get(seq) != recorded.root.hex():
            ok = False
            lines.append(
                f"{path.name}: recorded root {recorded.root.hex()} != full replay "
                f"root at seq {seq} {at.get(seq)}"
            )
        else:
            lines.append(f"{path.name}: root matches the full replay at seq {seq}")
    if snapshots:
        tail = recover(directory)
        if tail.seq > full.seq and _writer_active(directory):
            # a live venue appended between the two replays: their ends differ by what it
            # wrote, which is no disagreement (a stopped venue compares them exactly)
            lines.append(
                f"snapshot {tail.snapshot_seq} + tail: not compared, the journal "
                f"grew from seq {full.seq} to {tail.seq} under its live writer "
                f"during verification (verify a stopped venue for this check)"
            )
            return Audit(ok, lines, full)
        same = (
            tail.seq == full.seq
            and tail.root == full.root
            and tail.engine.state_hash() == full_hash
        )
        ok = ok and same
        lines.append(
            f"snapshot {tail.snapshot_seq} + {tail.replayed} commands: "
            + (
                "same seq, state hash and root as the full replay"
                if same
                else f"DIFFERS: seq {tail.seq} root {tail.root.hex() if tail.root else None}"
            )
        )
    return Audit(ok, lines, full)


def _writer_active(directory: Path) -> bool:
    """Whether a writer holds the directory's lock now (read-only: the lock file is not
    created, the probe's shared lock is released at once)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
