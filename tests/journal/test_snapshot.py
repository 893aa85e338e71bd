"""Snapshots: exact round trip, zero-copy load that the engine can keep writing to,
compression, atomicity, damage named by file and offset, and snapshot + tail = full replay."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.state import State
from derivex.journal import (
    CorruptionError,
    list_snapshots,
    load_snapshot,
    recover,
    restore_engine,
    snapshot,
    verify_directory,
    write_snapshot,
)
from derivex.journal.roots import full_root

from .conftest import batches_of, journal_flow, naive_replay


@pytest.fixture(scope="module")
def halfway(flow):
    """An engine after the setup and half the flow, and the other half."""
    setup, commands = flow
    engine = Engine(EngineConfig(risk_checks=False))
    engine.process(setup)
    engine.process(commands[:3_000])
    return engine, commands[3_000:]


def mapped(array: np.ndarray) -> bool:
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = (
            getattr(base, "base", None)
            if isinstance(base, np.ndarray)
            else getattr(base, "obj", None)
        )
    return isinstance(base, mmap.mmap)


def test_round_trip_is_exact_zero_copy_and_writable(tmp_path, halfway) -> None:
    engine, rest = halfway
    root = full_root(engine.state)
    path = write_snapshot(tmp_path, engine.state, engine.config, 3_123, root=root)
    assert path.name == "snapshot-00000000000000003123.dxs"
    loaded = load_snapshot(path)
    assert loaded.seq == 3_123 and loaded.config == engine.config and loaded.root == root
    for name, original, restored in zip(State._fields, engine.state, loaded.state, strict=True):
        assert restored.dtype == original.dtype and restored.shape == original.shape, name
        assert np.array_equal(restored, original), name
        assert mapped(restored) and restored.flags.writeable, name
        assert restored.ctypes.data % 64 == 0, name
    # the engine runs on the mapping itself, and goes on exactly as the original does
    twin = restore_engine(loaded)
    assert twin.arena is loaded.arena and mapped(twin.arena)
    assert np.array_equal(twin.layout, engine.layout)
    assert twin.state_hash() == engine.state_hash()
    copy = Engine(engine.config, State(*[array.copy() for array in engine.state]))
    assert np.array_equal(twin.process(rest), copy.process(rest))
    assert twin.state_hash() == copy.state_hash() != engine.state_hash()
    # copy-on-write: the file still holds the snapshot
    assert restore_engine(load_snapshot(path)).state_hash() == engine.state_hash()


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_compressed_round_trip(tmp_path, halfway, compression) -> None:
    engine, _ = halfway
    plain = write_snapshot(tmp_path / "plain", engine.state, engine.config, 10)
    packed = write_snapshot(
        tmp_path / "packed", engine.state, engine.config, 10, compression=compression
    )
    assert packed.stat().st_size < plain.stat().st_size / 2
    loaded = load_snapshot(packed)
    assert Engine(loaded.config, loaded.state).state_hash() == engine.state_hash()


def test_flipped_bytes_name_file_offset_and_array(tmp_path, halfway) -> None:
    engine, _ = halfway
    path = write_snapshot(tmp_path, engine.state, engine.config, 77)
    entry = next(a for a in load_snapshot(path).meta["arrays"] if a["name"] == "ord_i8")
    data = bytearray(path.read_bytes())
    original = bytes(data)
    target = entry["offset"] + entry["nbytes"] // 2
    data[target] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as error:
        load_snapshot(path)
    chunk_start = 64 + (target - 64) // (1 << 20) * (1 << 20)
    assert error.value.path == path and error.value.offset == chunk_start
    assert "ord_i8" in str(error.value) and f"byte offset {chunk_start}" in str(error.value)
    meta_offset = len(original) - 20  # inside the JSON metadata at the end
    data = bytearray(original)
    data[meta_offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="preamble or metadata"):
        load_snapshot(path)
    data = bytearray(original)
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="byte offset 0"):
        load_snapshot(path)


def test_temporaries_are_ignored_and_damage_is_not_skipped(tmp_path, flow) -> None:
    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands[:2_000], seed=4)
    first = snapshot(exchange)
    for part in batches_of(commands[2_000:4_000], 5):
        exchange.submit(part)
    second = snapshot(exchange)
    exchange.journal.close()
    (tmp_path / f".{second.name}.tmp-999").write_bytes(b"half a snapshot")
    assert [path for _, path in list_snapshots(tmp_path)] == [first, second]
    data = bytearray(second.read_bytes())
    data[200] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=second.name):
        recover(tmp_path)
    fallback = recover(tmp_path, snapshot_fallback=True)
    assert fallback.snapshot_seq == int(first.name[9:29])
    assert any(second.name in note for note in fallback.notes)
    assert fallback.engine.state_hash() == exchange.state_hash()


def test_snapshot_plus_tail_equals_full_replay(tmp_path, flow) -> None:
    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands[:1_500], seed=6)
    snapshot(exchange)
    for part in batches_of(commands[1_500:4_500], 7):
        exchange.submit(part)
    snapshot(exchange, compression="none", with_root=False)
    for part in batches_of(commands[4_500:], 8):
        exchange.submit(part)
    exchange.journal.close()
    tail = recover(tmp_path)
    full = recover(tmp_path, use_snapshot=False)
    reference, _ = naive_replay(tmp_path)
    assert tail.snapshot_seq is not None and tail.replayed < full.replayed
    assert tail.seq == full.seq == exchange.journal.last_seq
    assert tail.engine.state_hash() == full.engine.state_hash() == exchange.state_hash()
    assert tail.engine.state_hash() == reference.state_hash()
    assert tail.root == full.root == full_root(reference.state)
    audit = verify_directory(tmp_path, checkpoint_every=1_000)
    assert audit.ok, audit.lines
    assert len(audit.full.checkpoints) >= 6


def test_verify_of_a_live_venue_is_not_a_false_mismatch(tmp_path, flow, monkeypatch) -> None:
    """A journal that grows between verify's full replay and its snapshot + tail replay
    (a live writer appending) is reported as grown, not as a mismatch; the snapshots are
    still checked. Once the writer is gone, the same directory compares exactly."""
    from derivex.journal import recovery

    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands[:1_500], seed=6)
    snapshot(exchange)
    for part in batches_of(commands[1_500:3_000], 7):
        exchange.submit(part)
    later = batches_of(commands[3_000:3_600], 8)
    grown: list[int] = []
    real_recover = recovery.recover

    def recover_then_append(*args, **kwargs):  # the real replay; then the writer appends
        result = real_recover(*args, **kwargs)
        if not grown:
            for part in later:
                exchange.submit(part)
            grown.append(exchange.journal.last_seq)
        return result

    monkeypatch.setattr(recovery, "recover", recover_then_append)
    audit = verify_directory(tmp_path)
    assert grown and audit.full.seq < grown[0]
    assert audit.ok, audit.lines
    assert any("grew from seq" in line for line in audit.lines), audit.lines
    assert not any("DIFFERS" in line for line in audit.lines)
    monkeypatch.setattr(recovery, "recover", real_recover)
    exchange.journal.close()
    stopped = verify_directory(tmp_path)
    assert stopped.ok and stopped.full.seq == grown[0], stopped.lines
    assert any("same seq, state hash and root" in line for line in stopped.lines)


def _older_layout_snapshot(directory, engine, seq: int, monkeypatch, drop=("trg_meta",)):
    """A snapshot as a version without the arrays ``drop`` wrote it (by default one of
    the trigger arrays: a layout from before trigger orders). The writer walks
    ``State``'s fields, so it is given that older field list for this one write."""
    import importlib
    from collections import namedtuple

    # (``derivex.journal.snapshot`` the attribute is the function of that name)
    snapshot_module = importlib.import_module("derivex.journal.snapshot")
    kept = [name for name in State._fields if name not in drop]
    older = namedtuple("State", kept)  # type: ignore[misc]
    arrays = [getattr(engine.state, name) for name in kept]
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_module, "State", older)
        return write_snapshot(directory, older(*arrays), engine.config, seq)


def test_a_snapshot_without_the_arrays_added_since_loads_with_them_fresh(
    tmp_path, halfway, monkeypatch
) -> None:
    """The arrays added after trigger orders (subaccount links, MMP, cross-domain
    transfers) are empty until used: a snapshot of the previous layout loads with them
    as a fresh state has them, to the same state hash and root."""
    engine, _ = halfway
    added = ("sub_i4", "mmp", "mmp_meta", "xfr")
    path = _older_layout_snapshot(tmp_path, engine, 3_000, monkeypatch, drop=added)
    loaded = load_snapshot(path)
    restored = restore_engine(loaded)
    assert restored.state_hash() == engine.state_hash()
    assert full_root(restored.state) == full_root(engine.state)


def test_a_snapshot_of_an_older_layout_is_passed_over_not_trusted(
    tmp_path, flow, monkeypatch
) -> None:
    """An upgrade meets snapshots written by the previous version. They are sound but
    not usable: recovery says so and falls back to an older snapshot, else to a full
    replay of the journal, reaching the same state; ``verify`` is still OK; a repair
    leaves them alone."""
    from derivex.journal import IncompatibleSnapshot
    from derivex.journal.repair import plan_repair

    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands[:2_000], seed=8)
    usable = snapshot(exchange)
    for part in batches_of(commands[2_000:3_000], 5):
        exchange.submit(part)
    seq = exchange.journal.last_seq
    older = _older_layout_snapshot(tmp_path, exchange.engine, seq, monkeypatch)
    for part in batches_of(commands[3_000:], 5):
        exchange.submit(part)
    exchange.journal.close()
    with pytest.raises(IncompatibleSnapshot, match="missing arrays"):
        load_snapshot(older)
    recovered = recover(tmp_path)  # (no fallback flag needed: this is not damage)
    assert recovered.snapshot_seq == int(usable.name[9:29])
    assert any("another state layout" in note and older.name in note for note in recovered.notes)
    assert recovered.engine.state_hash() == exchange.state_hash()
    audit = verify_directory(tmp_path)
    assert audit.ok, audit.lines
    assert any(older.name in line and "another state layout" in line for line in audit.lines)
    plan = plan_repair(tmp_path)
    assert older not in plan.drop_snapshots
    # only snapshots of the older layout: a full replay of the journal
    alone = tmp_path / "alone"
    exchange = journal_flow(alone, setup, commands[:2_000], seed=9)
    older = _older_layout_snapshot(alone, exchange.engine, exchange.journal.last_seq, monkeypatch)
    for part in batches_of(commands[2_000:], 5):
        exchange.submit(part)
    exchange.journal.close()
    full = recover(alone)
    assert full.snapshot_seq is None and full.engine.state_hash() == exchange.state_hash()
