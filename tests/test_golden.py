"""Golden files: the record formats and a recorded journal, frozen. Any change of a code, a
field layout, the journal or snapshot format, or the engine's semantics fails here loudly.

On a deliberate change, regenerate by hand and review the diff (never from a test):
``.venv/bin/python scripts/golden.py && git diff --stat tests/golden``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from derivex.core import records
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.journal import full_root, list_snapshots, load_snapshot, read, restore_engine
from tests.golden.describe import describe

GOLDEN = Path(__file__).parent / "golden"
FROZEN = json.loads((GOLDEN / "records.json").read_text())
EXPECTED = json.loads((GOLDEN / "journal.json").read_text())


def test_every_code_of_the_golden_file_is_still_defined_with_its_layout() -> None:
    """Codes, layouts, mutation flags and payload fields are the wire format: identical.
    Reason and value-enum names are API and frozen too; command and event names may be
    renamed (issue 13), so they are compared below by meaning only."""
    now = describe()
    for section in ("record_bytes", "risk_values_per_leg", "command_layout", "event_layout"):
        assert now[section] == FROZEN[section], section
    assert now["reasons"] == FROZEN["reasons"]
    assert now["enums"] == FROZEN["enums"]
    assert set(now["events"]) == set(FROZEN["events"])
    assert set(now["commands"]) == set(FROZEN["commands"])
    for code, frozen in FROZEN["commands"].items():
        current = now["commands"][code]
        assert (current["mutates"], current["fields"]) == (frozen["mutates"], frozen["fields"])


@pytest.mark.parametrize("section, enum", [("commands", "CommandKind"), ("events", "EventKind")])
def test_a_frozen_name_never_comes_to_mean_another_code(section: str, enum: str) -> None:
    """A renamed command or event may keep its old name as an alias or drop it; the name
    must never be reused for a different code."""
    members = getattr(records, enum).__members__
    for code, entry in FROZEN[section].items():
        name = entry["name"] if section == "commands" else entry
        if name in members:
            assert int(members[name]) == int(code), name


def _journal_copy(tmp_path: Path) -> Path:
    """The golden journal, copied: reading must not depend on (or touch) the committed
    files."""
    directory = tmp_path / "journal"
    shutil.copytree(GOLDEN / "journal", directory)
    return directory


def _engine(directory: Path) -> Engine:
    return Engine(EngineConfig.from_dict(json.loads((directory / "config.json").read_text())))


def test_recorded_journal_replays_to_the_golden_events_state_and_root(tmp_path: Path) -> None:
    directory = _journal_copy(tmp_path)
    engine = _engine(directory)
    digest = hashlib.sha256()
    commands = batches = 0
    per_kind: dict[str, int] = {}
    for batch in read(directory):
        events = engine.process(batch.commands)
        digest.update(events.tobytes())
        commands += len(batch.commands)
        batches += 1
        for kind, count in zip(*np.unique(events["kind"], return_counts=True), strict=True):
            per_kind[str(int(kind))] = per_kind.get(str(int(kind)), 0) + int(count)
    engine.check_invariants()
    # the whole journal was read: a reader stopping early would fail these first
    assert (commands, batches) == (EXPECTED["commands"], EXPECTED["batches"])
    assert per_kind == EXPECTED["events_per_kind"]
    assert len(per_kind) == len(records.EventKind)  # the session exercises every event kind
    assert digest.hexdigest() == EXPECTED["events_sha256"]
    assert engine.state_hash() == EXPECTED["state_hash"]
    assert full_root(engine.state).hex() == EXPECTED["state_root"]


def test_snapshot_plus_tail_gives_the_golden_state(tmp_path: Path) -> None:
    directory = _journal_copy(tmp_path)
    [(seq, path)] = list_snapshots(directory)
    assert (path.name, seq) == (EXPECTED["snapshot"]["file"], EXPECTED["snapshot"]["seq"])
    snap = load_snapshot(path)
    assert snap.seq == seq
    # the state root recorded in the snapshot is the root of the state it holds
    assert snap.root is not None and full_root(snap.state) == snap.root
    engine = restore_engine(snap)
    at_snapshot = engine.state_hash()
    prefix = _engine(directory)
    tail = 0
    for batch in read(directory):
        if int(batch.commands["seq"][0]) <= seq:
            assert int(batch.commands["seq"][-1]) <= seq  # snapshots fall between batches
            prefix.process(batch.commands)
        else:
            engine.process(batch.commands)
            tail += len(batch.commands)
    # the snapshot holds what a replay up to its seq gives, and snapshot + tail the whole
    assert prefix.state_hash() == at_snapshot
    assert tail == EXPECTED["commands"] - seq
    engine.check_invariants()
    assert engine.state_hash() == EXPECTED["state_hash"]
    assert full_root(engine.state).hex() == EXPECTED["state_root"]
