"""The segment manifest (``segments.json``): what a journal directory must contain, so that a
missing, reordered, renamed or truncated journal file, or a missing snapshot, is detected
whatever else survives.

A journal file's own bytes cannot reveal that a *later* file was deleted, nor that a file
was cut at a batch boundary. The writer therefore records, next to the files::

    {"format": "derivex-segments-v1", "closed": false,
     "segments": [{"name": "00000000000000000001.journal", "first_seq": 1,
                   "last_seq": 4719, "bytes": 302144, "sealed": true}, ...],
     "snapshots": [4719], "base": 0}

- a *sealed* segment (one the writer rolled away from) has exactly ``bytes`` bytes ending
  at ``last_seq``;
- the newest segment holds *at least* ``bytes`` bytes up to ``last_seq`` (the values when
  the manifest was last written: at open, roll and close), exactly those when ``closed``
  (a clean stop). A torn tail may only lie beyond ``bytes``;
- every listed snapshot exists;
- ``base`` > 0 (only after ``derivex repair`` dropped damaged history): the journal is
  complete from the snapshot at seq ``base`` on, which a full replay starts from.

The manifest is rewritten (temporary file, fsync, rename, directory fsync) when the journal
opens, rolls, records a snapshot and closes: a handful of times per file, never per batch.
A crash between creating a file and listing it leaves at most one unlisted file, the newest,
which is accepted when it continues the listed ones (the reader checks the seqs).

``check`` is read-only; it raises ``JournalError`` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from derivex.journal.format import JournalError, fsync_directory, journal_files

MANIFEST_FILE = "segments.json"
FORMAT = "derivex-segments-v1"


@dataclass
class Segment:
    name: str
    first_seq: int
    last_seq: int
    bytes: int
    sealed: bool


@dataclass
class Manifest:
    segments: list[Segment] = field(default_factory=list)
    snapshots: list[int] = field(default_factory=list)
    closed: bool = False
    base: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "closed": self.closed,
            "segments": [vars(segment) for segment in self.segments],
            "snapshots": sorted(set(self.snapshots)),
            "base": self.base,
        }

    @property
    def newest(self) -> Segment | None:
        return self.segments[-1] if self.segments else None


def load(directory: Path) -> Manifest | None:
    """The manifest of ``directory``; None if there is none. Raises ``JournalError`` naming
    the file if it is not a valid manifest."""
    path = directory / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        segments = [
            Segment(
                str(item["name"]),
                int(item["first_seq"]),
                int(item["last_seq"]),
                int(item["bytes"]),
                bool(item["sealed"]),
            )
            for item in data["segments"]
        ]
        return Manifest(
            segments,
            [int(seq) for seq in data.get("snapshots", [])],
            bool(data["closed"]),
            int(data.get("base", 0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise JournalError(f"{path}: not a valid segment manifest ({error})") from None


def save(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably. Cost: two fsyncs."""
    temporary = directory / f".{MANIFEST_FILE}.tmp"
    with open(temporary, "w") as handle:
        json.dump(manifest.to_json(), handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, directory / MANIFEST_FILE)
    fsync_directory(directory)


def check(directory: Path, snapshot_seqs: list[int]) -> Manifest | None:
    """Check the files of ``directory`` against its manifest (see the module docs); returns
    the manifest (None for a directory without journal files, manifest or snapshot).
    Read-only. Raises ``JournalError`` on any disagreement."""
    manifest = load(directory)
    files = journal_files(directory)
    if manifest is None:
        if files or snapshot_seqs:
            raise JournalError(
                f"{directory / MANIFEST_FILE} is missing although the directory "
                f"holds journal files or snapshots: the journal's extent cannot "
                f"be checked (derivex repair rebuilds it)"
            )
        return None
    on_disk = {path.name: path for path in files}
    listed = {segment.name for segment in manifest.segments}
    for segment in manifest.segments:
        path = on_disk.get(segment.name)
        if path is None:
            raise JournalError(
                f"journal file {directory / segment.name} (seqs "
                f"{segment.first_seq}..{segment.last_seq}"
                f"{'' if segment.sealed else ' or later'}) is missing"
            )
        size = path.stat().st_size
        exact = segment.sealed or manifest.closed
        if (size != segment.bytes) if exact else (size < segment.bytes):
            raise JournalError(
                f"{path}: {size} bytes, the manifest records "
                f"{'' if exact else 'at least '}{segment.bytes} (seqs "
                f"{segment.first_seq}..{segment.last_seq}): truncated or "
                f"altered at byte offset {min(size, segment.bytes)}"
            )
    extra = [path for path in files if path.name not in listed]
    newest = manifest.newest
    if extra:
        allowed = (
            len(extra) == 1
            and extra[0] == files[-1]
            and not manifest.closed
            and (newest is None or int(extra[0].stem) > newest.first_seq)
        )
        if not allowed:
            raise JournalError(
                f"journal file(s) not in {directory / MANIFEST_FILE}: "
                f"{', '.join(str(path) for path in extra)} (renamed, reordered "
                f"or copied in)"
            )
    if manifest.base and manifest.base not in snapshot_seqs:
        raise JournalError(
            f"the base snapshot at seq {manifest.base} named in "
            f"{directory / MANIFEST_FILE} is missing"
        )
    missing = sorted(set(manifest.snapshots) - set(snapshot_seqs))
    if missing:
        names = ", ".join(f"snapshot-{seq:020d}.dxs" for seq in missing)
        raise JournalError(
            f"snapshot(s) {names} listed in {directory / MANIFEST_FILE} are "
            f"missing from {directory}"
        )
    return manifest


def tail_floor(manifest: Manifest | None, path: Path) -> int:
    """The byte offset before which ``path`` (the newest file) holds acknowledged data: a
    torn tail starting earlier is damage, not a torn write."""
    if manifest is None:
        return 0
    for segment in manifest.segments:
        if segment.name == path.name:
            return segment.bytes
    return 0
