"""``derivex repair``: the only way damaged journal data is ever dropped, and only on an
operator's command, saying exactly what goes.

``plan_repair`` finds the longest verified prefix of the journal (from its first file, every
batch checked, seqs continuous) and lists everything after it: the rest of the damaged file
(from the byte offset of the first bad batch), every later file, files the manifest lists
that are missing, snapshots taken after the new end or damaged. ``apply_repair`` moves each
dropped piece into ``<journal>/dropped-<n>/`` (nothing is deleted: the bytes stay for
forensics), cuts the damaged file, and rewrites the segment manifest for what remains, so
the venue starts again from the prefix. Commands after the prefix are lost: the plan says
which seqs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from derivex.journal import segments
from derivex.journal.format import (
    HEADER,
    HEADER_BYTES,
    CorruptionError,
    IncompatibleSnapshot,
    JournalError,
    file_name,
    fsync_directory,
    header_problem,
    journal_files,
)
from derivex.journal.reader import JournalReader, map_file, truncate
from derivex.journal.snapshot import list_snapshots, load_snapshot
from derivex.journal.writer import lock_directory


@dataclass
class Plan:
    """What a repair keeps and drops. ``renames``: files whose name is not the seq of their
    first batch, to their right name; ``cut``: (file, byte offset) to truncate at;
    ``drop_files``/``drop_snapshots``: moved away whole; ``base``: the snapshot a journal
    whose early history is dropped starts from (0: none); ``lines``: the report."""

    directory: Path
    end_seq: int  # last seq kept (0: none)
    renames: list[tuple[Path, Path]] = field(default_factory=list)
    cut: tuple[Path, int] | None = None
    drop_files: list[Path] = field(default_factory=list)
    drop_snapshots: list[Path] = field(default_factory=list)
    base: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(
            self.renames or self.cut or self.drop_files or self.drop_snapshots or self.lines
        )


def _first_seq(path: Path) -> int | None:
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        return None
    fields = HEADER.unpack(head)
    return fields[3] if header_problem(fields) is None else None


@dataclass
class _Run:
    end: int = 0
    cut: tuple[Path, int] | None = None
    kept: list[Path] = field(default_factory=list)
    dropped: list[Path] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)


def _walk(directory: Path, entries: list[tuple[int, Path]], expected: int | None) -> _Run:
    """Verified run of ``entries`` (ordered by true first seq) from ``expected`` on: cut at
    the first damage, gap or torn tail."""
    run = _Run()
    for seq, path in entries:
        if run.cut is not None:
            run.dropped.append(path)
            continue
        reader = JournalReader(directory)
        try:
            if expected is not None and seq != expected:
                raise CorruptionError(
                    path, 0, f"sequence break: expected seq {expected}, the file starts at {seq}"
                )
            for batch in reader._walk(path, map_file(path), True, expected):
                run.end, expected = batch.last_seq, batch.last_seq + 1
            if reader.torn is not None:
                raise CorruptionError(path, reader.torn.offset, reader.torn.reason)
            run.kept.append(path)
        except CorruptionError as error:
            run.damage.append(f"damage: {error}")
            run.cut = (path, error.offset)
            (run.kept if error.offset else run.dropped).append(path)
    return run


def plan_repair(directory: Path | str) -> Plan:
    """Read-only: the repair of ``directory`` (see the module docs). Of the two ways to
    keep a consistent journal — its verified prefix from the start, or the latest good
    snapshot plus the verified journal from the file holding its seq — the one keeping more
    commands wins. Cost: one verifying pass over the journal and the snapshots."""
    directory = Path(directory)
    if not directory.is_dir():
        raise JournalError(f"no journal directory {directory}")
    plan = Plan(directory, 0)
    manifest = None
    try:
        manifest = segments.load(directory)
    except JournalError as error:
        plan.lines.append(f"damage: {error}; it is rebuilt")
    files = journal_files(directory)
    entries = []
    for path in files:
        seq = _first_seq(path)
        entries.append((seq if seq is not None else int(path.stem), path))
    true_names = [file_name(seq) for seq, _ in entries]
    if len(set(true_names)) == len(true_names):
        for (seq, path), name in zip(entries, true_names, strict=True):
            if name != path.name:
                plan.renames.append((path, path.with_name(name)))
                plan.lines.append(f"rename {path} to {name}: its first batch is seq {seq}")
        entries.sort()
    else:
        entries = [(int(path.stem), path) for path in files]
    start = manifest.segments[0].first_seq if manifest and manifest.segments else 1
    prefix = _walk(directory, entries, start if entries else None)
    snapshots = []
    for seq, path in list_snapshots(directory):
        try:
            load_snapshot(path)
            snapshots.append((seq, path))
        except IncompatibleSnapshot as error:  # sound, another version's: left where it is
            plan.lines.append(f"leave snapshot {path}: another state layout, not used ({error})")
        except JournalError as error:
            plan.drop_snapshots.append(path)
            plan.lines.append(f"move snapshot {path} away: damaged ({error})")
    chosen, base = prefix, manifest.base if manifest else 0
    if snapshots and snapshots[-1][0] > prefix.end:
        seq = snapshots[-1][0]
        holding = [index for index, (first, _) in enumerate(entries) if first <= seq]
        if holding:
            tail = _walk(directory, entries[holding[-1] :], None)
            if tail.end >= seq and tail.end > prefix.end:
                chosen, base = tail, seq
                tail.dropped[:0] = [path for _, path in entries[: holding[-1]]]
                plan.lines.append(
                    f"keep the snapshot at seq {seq} and the journal after it: "
                    f"the history before {entries[holding[-1]][1].name} is "
                    f"dropped (the snapshot holds its result)"
                )
    plan.lines.extend(chosen.damage)
    plan.end_seq, plan.cut, plan.base = chosen.end, chosen.cut, base
    plan.drop_files = chosen.dropped
    if plan.cut is not None and plan.cut[1] > 0:
        path, offset = plan.cut
        plan.lines.append(
            f"cut {path} at byte offset {offset}: drops "
            f"{path.stat().st_size - offset} bytes (commands after seq "
            f"{plan.end_seq})"
        )
    for path in plan.drop_files:
        plan.lines.append(f"move {path} away: its commands are dropped from the journal")
    for seq, path in snapshots:
        if seq > plan.end_seq or seq < base:
            plan.drop_snapshots.append(path)
            plan.lines.append(
                f"move snapshot {path} away: seq {seq} is outside the kept "
                f"journal ({base or 1}..{plan.end_seq})"
            )
    if manifest is not None:
        present = {path.name for path in files}
        for segment in manifest.segments:
            if segment.name not in present:
                plan.lines.append(
                    f"missing: {directory / segment.name} (seqs "
                    f"{segment.first_seq}..{segment.last_seq}"
                    f"{'' if segment.sealed else ' or later'}) is lost"
                )
        newest = manifest.newest
        if newest is not None and newest.last_seq > plan.end_seq:
            plan.lines.append(
                f"LOST: the manifest records commands up to at least seq "
                f"{newest.last_seq}; the journal will end at seq "
                f"{plan.end_seq}: seqs {plan.end_seq + 1}..{newest.last_seq}"
            )
        for seq in sorted(set(manifest.snapshots) - {seq for seq, _ in list_snapshots(directory)}):
            plan.lines.append(f"missing: snapshot at seq {seq} (no longer listed)")
    elif files:
        plan.lines.append(f"no {segments.MANIFEST_FILE}: rebuilt from the files")
    return plan


def apply_repair(plan: Plan) -> Path | None:
    """Carry out ``plan`` under the writer lock; returns the folder the dropped pieces were
    moved to (None if nothing was dropped). The manifest is rebuilt (closed, exact)."""
    directory = plan.directory
    lock = lock_directory(directory)
    try:
        for path, _ in plan.renames:  # two steps: the names may be swapped
            os.replace(path, path.with_name(path.name + ".renaming"))
        for path, target in plan.renames:
            os.replace(path.with_name(path.name + ".renaming"), target)
        renamed = {path: target for path, target in plan.renames}
        cut = None if plan.cut is None else (renamed.get(plan.cut[0], plan.cut[0]), plan.cut[1])
        drop_files = [renamed.get(path, path) for path in plan.drop_files]
        folder = None
        if cut is not None or plan.drop_files or plan.drop_snapshots:
            number = 1
            while (directory / f"dropped-{number}").exists():
                number += 1
            folder = directory / f"dropped-{number}"
            folder.mkdir()
            if cut is not None and cut[1] > 0:
                path, offset = cut
                with (
                    open(path, "rb") as source,
                    open(folder / f"{path.name}.from-{offset}", "wb") as kept_bytes,
                ):
                    source.seek(offset)
                    shutil.copyfileobj(source, kept_bytes)
                    kept_bytes.flush()
                    os.fsync(kept_bytes.fileno())
                truncate(path, offset)
            for path in [*drop_files, *plan.drop_snapshots]:
                os.replace(path, folder / path.name)
            fsync_directory(folder)
        kept = journal_files(directory)
        manifest = segments.Manifest(closed=True, base=plan.base)
        reader = JournalReader(directory)
        for number, path in enumerate(kept):
            last = reader.last_seq_of(path, is_last=number == len(kept) - 1)
            manifest.segments.append(
                segments.Segment(
                    path.name, int(path.stem), last, path.stat().st_size, number < len(kept) - 1
                )
            )
        manifest.snapshots = [seq for seq, _ in list_snapshots(directory)]
        segments.save(directory, manifest)
        return folder
    finally:
        os.close(lock)
