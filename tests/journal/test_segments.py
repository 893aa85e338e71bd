"""The segment manifest: a crash between a roll's file creation and its manifest write is
accepted (the newest file, unlisted, continuing the listed ones); anything else that
disagrees with the manifest is refused naming the file, before anything changes."""

from __future__ import annotations

import shutil

import pytest

from derivex.journal import Journal, JournalError, recover, scan, segments
from derivex.journal.format import journal_files

from .test_wal import stamped


def _journal(directory, batches: int = 12) -> None:
    with Journal(directory, fsync="none", roll_bytes=64 * 12) as journal:
        for first in range(1, batches * 10, 10):
            journal.append(stamped(first, 10))  # one batch per file


def test_crash_between_roll_and_manifest_write_is_accepted(tmp_path) -> None:
    with Journal(tmp_path, fsync="none", roll_bytes=64 * 12) as journal:
        journal.append(stamped(1, 10))
        journal.append(stamped(11, 10))
        shutil.copy(tmp_path / "segments.json", tmp_path / "before")
        journal.append(stamped(21, 10))  # rolls: creates the file, then lists it
    (tmp_path / "before").replace(tmp_path / "segments.json")  # the listing never landed
    manifest = segments.load(tmp_path)
    manifest.closed = False
    segments.save(tmp_path, manifest)
    assert recover(tmp_path, roots=False).seq == 30
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 30
        journal.append(stamped(31, 1))
    listed = segments.load(tmp_path).segments
    assert [s.name for s in listed] == [p.name for p in journal_files(tmp_path)]
    assert listed[-2].sealed and listed[-2].bytes == journal_files(tmp_path)[-2].stat().st_size
    assert scan(tmp_path).last_seq == 31


@pytest.mark.parametrize(
    "damage", ["delete newest", "delete oldest", "copy in", "no manifest", "grow sealed"]
)
def test_disagreement_with_the_manifest_is_refused_unchanged(tmp_path, damage) -> None:
    _journal(tmp_path, 4)
    files = journal_files(tmp_path)
    if damage == "delete newest":
        files[-1].unlink()
        named = files[-1].name
    elif damage == "delete oldest":
        files[0].unlink()
        named = files[0].name
    elif damage == "copy in":
        shutil.copy(files[1], tmp_path / "00000000000000000100.journal")
        named = "00000000000000000100.journal"
    elif damage == "no manifest":
        (tmp_path / "segments.json").unlink()
        named = "segments.json"
    else:
        with open(files[1], "ab") as handle:
            handle.write(bytes(64))
        named = files[1].name
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for attempt in (lambda: recover(tmp_path, roots=False), lambda: Journal(tmp_path)):
        with pytest.raises(JournalError, match=named):
            attempt()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
