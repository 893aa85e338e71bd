"""The journal damage matrix: every file of a data directory x {flip a byte, truncate, delete,
zero-fill, reorder/rename}. Each case has one expected outcome, never silent loss:

- *refused*: opening the venue raises naming the file (and the byte offset where it applies)
  and every file of the directory is byte-identical afterwards; ``verify`` fails too; for
  journal data the explicit repair then says what it drops, and the venue opens exactly at
  the seq it announced;
- *verify*: an old snapshot the start does not need: the start succeeds (nothing is lost,
  the journal covers it) but ``verify`` fails naming it.

The venue is built once (``open_venue`` with small journal files, a snapshot at a file
boundary, more commands, then a clean stop as ``derivex serve`` does: snapshot + close);
each case damages a copy.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from derivex.gateway.datadir import DataDirectoryError
from derivex.gateway.serve import open_venue, take_snapshot
from derivex.journal import CorruptionError, JournalError, list_snapshots, verify_directory
from derivex.journal.format import journal_files
from derivex.journal.repair import apply_repair, plan_repair

ROLL_BYTES = 2048  # 15 one-command batches per file


def build(data: Path) -> None:
    opened = open_venue(data, demo=False, roll_bytes=ROLL_BYTES)
    exchange = opened.venue.exchange
    journal = exchange.journal
    assert journal is not None
    accounts = [exchange.create_account() for _ in range(4)]
    for step in range(60):
        exchange.deposit(accounts[step % 4], 1_000_000 + step)
    while journal_files(journal.directory)[-1].stat().st_size + 128 <= ROLL_BYTES:
        exchange.deposit(accounts[0], 7)  # fill the file: the snapshot sits on its boundary
    take_snapshot(exchange)
    for step in range(50):
        exchange.deposit(accounts[step % 4], 3)
    take_snapshot(exchange)  # the clean stop of ``derivex serve``
    journal.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("venue") / "data"
    build(data)
    files = journal_files(data / "journal")
    assert len(files) >= 5 and len(list_snapshots(data / "journal")) == 2
    first_snapshot = list_snapshots(data / "journal")[0][0]
    assert any(int(path.stem) == first_snapshot + 1 for path in files)  # on a boundary
    return data


def digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _segments(data: Path) -> list[Path]:
    return journal_files(data / "journal")


TARGETS: dict[str, Callable[[Path], Path]] = {
    "oldest segment": lambda d: _segments(d)[0],
    "middle segment": lambda d: _segments(d)[len(_segments(d)) // 2],
    "newest segment": lambda d: _segments(d)[-1],
    "segments.json": lambda d: d / "journal" / "segments.json",
    "latest snapshot": lambda d: list_snapshots(d / "journal")[-1][1],
    "older snapshot": lambda d: list_snapshots(d / "journal")[0][1],
    "config.json": lambda d: d / "journal" / "config.json",
    "serve.json": lambda d: d / "serve.json",
    "keys.json": lambda d: d / "keys.json",
    "instruments.json": lambda d: d / "instruments.json",
}
JOURNAL_DATA = {
    "oldest segment",
    "middle segment",
    "newest segment",
    "segments.json",
    "latest snapshot",
    "older snapshot",
}


def damage(path: Path, operation: str) -> set[str]:
    """Damage ``path``; returns the names an error may rightly name (a swap damages two)."""
    names = {path.name}
    data = bytearray(path.read_bytes())
    if operation == "flip":
        # JSON: its first byte (a flip inside a string value is not detectable: these
        # files carry no checksum); binary files: the middle
        offset = 0 if path.suffix == ".json" else len(data) // 2
        data[offset] ^= 0x5A
        path.write_bytes(bytes(data))
    elif operation == "truncate":
        path.write_bytes(bytes(data[: len(data) - 10]))
    elif operation == "delete":
        path.unlink()
    elif operation == "zero":
        path.write_bytes(bytes(len(data)))
    elif operation == "reorder":
        if path.suffix == ".journal":
            files = journal_files(path.parent)
            index = files.index(path)
            other = files[index - 1] if index else files[1]
            temporary = path.with_name("swap")
            path.rename(temporary)
            other.rename(path)
            temporary.rename(other)  # the two files trade names
            names.add(other.name)
        else:  # renamed out of the way (what an operator's mv does)
            path.rename(path.with_name(path.name + ".old"))
    else:
        raise AssertionError(operation)
    return names


OPERATIONS = ("flip", "truncate", "delete", "zero", "reorder")
CASES = [(target, operation) for target in TARGETS for operation in OPERATIONS]


def expected_outcome(target: str, operation: str) -> str:
    if target == "older snapshot" and operation in ("flip", "truncate", "zero"):
        return "verify"  # not needed to start; verify names it
    return "refused"


@pytest.mark.parametrize(
    ("target", "operation"), CASES, ids=[f"{t.replace(' ', '-')}-{o}" for t, o in CASES]
)
def test_damage_is_refused_or_reported_never_silent(
    template: Path, tmp_path: Path, target: str, operation: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(template, data)
    full = verify_directory(data / "journal").full.seq  # the acknowledged extent
    path = TARGETS[target](data)
    names = damage(path, operation)
    before = digest(data)
    outcome = expected_outcome(target, operation)
    if outcome == "verify":
        opened = open_venue(data, demo=False)
        assert opened.venue.exchange.journal.last_seq == full  # nothing lost
        opened.venue.exchange.journal.close()
        with pytest.raises(JournalError, match=re.escape(path.name)):
            verify_directory(data / "journal")
        return
    with pytest.raises((JournalError, DataDirectoryError)) as refused:
        open_venue(data, demo=False)
    message = str(refused.value)
    assert any(name in message for name in names), message
    if isinstance(refused.value, CorruptionError):
        assert refused.value.path.name in names and "byte offset" in message
    assert digest(data) == before, "a failed start changed files"
    if target not in JOURNAL_DATA:
        return  # refused only: the operator restores the file (no repair drops data)
    with pytest.raises(JournalError):
        verify_directory(data / "journal")
    plan = plan_repair(data / "journal")
    assert plan.changes and plan.end_seq <= full
    report = "\n".join(plan.lines)
    if plan.end_seq < full:  # commands are dropped: the plan says from where
        assert f"seqs {plan.end_seq + 1}" in report or "seq" in report, report
    apply_repair(plan)
    opened = open_venue(data, demo=False)
    try:
        assert opened.venue.exchange.journal.last_seq == plan.end_seq
    finally:
        opened.venue.exchange.journal.close()
    assert verify_directory(data / "journal").ok


def test_undamaged_copy_opens_at_the_full_extent(template: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(template, data)
    full = verify_directory(data / "journal")
    assert full.ok
    assert plan_repair(data / "journal").changes is False
    opened = open_venue(data, demo=False)
    assert opened.venue.exchange.journal.last_seq == full.full.seq
    opened.venue.exchange.journal.close()
