"""The write-ahead journal: round trip, rolling, policies, locking, and damage: a torn tail
(a partial last write beyond what the manifest records) is cut and reported, damage anywhere
else raises naming the file and byte offset and changes nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from derivex.core.records import command_array
from derivex.journal import CorruptionError, Journal, JournalError, read, scan
from derivex.journal.format import CHECKSUM_BLAKE2B, HEADER_BYTES, journal_files

from .conftest import as_if_killed, batches_of, journal_flow


def stamped(first_seq: int, count: int) -> np.ndarray:
    commands = command_array(count)
    commands["seq"] = np.arange(first_seq, first_seq + count)
    commands["ts_ns"] = 7
    commands["kind"] = 30  # TIME
    return commands


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture
def journaled(tmp_path, flow):
    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands, seed=3, roll_bytes=1 << 15)
    exchange.journal.close()
    return tmp_path, exchange


def test_round_trip_is_byte_exact_and_rolls_by_size(tmp_path, flow) -> None:
    setup, commands = flow
    parts = [setup.copy(), *batches_of(commands, 1)]
    with Journal(tmp_path, fsync="none", roll_bytes=40_000) as journal:
        seq = 0
        for part in parts:
            part["seq"] = np.arange(seq + 1, seq + 1 + len(part))
            seq += len(part)
            journal.append(part)
        assert journal.last_seq == seq
    batches = list(read(tmp_path))
    assert [len(b.commands) for b in batches] == [len(p) for p in parts]
    for batch, part in zip(batches, parts, strict=True):
        assert batch.commands.tobytes() == part.tobytes()
        assert not batch.commands.flags.owndata  # a view of the mapped file, not a copy
    files = journal_files(tmp_path)
    assert len(files) > 3
    first_seqs = [int(f.stem) for f in files]
    assert first_seqs == sorted(first_seqs) and first_seqs[0] == 1
    sizes = {}
    for batch in read(tmp_path):
        sizes.setdefault(batch.path, []).append(HEADER_BYTES + 64 * len(batch.commands))
    for path in files:  # whole batches only; within the roll size unless a batch is alone
        assert path.stat().st_size == sum(sizes[path])
        assert path.stat().st_size <= 40_000 or len(sizes[path]) == 1
    later = list(read(tmp_path, from_seq=5_000))
    assert later[0].first_seq == 5_000 and later[-1].last_seq == seq


def test_every_record_is_journaled_exactly(journaled, flow) -> None:
    directory, _ = journaled
    setup, commands = flow
    got = np.concatenate([b.commands.view(np.uint8).reshape(-1, 64) for b in read(directory)])
    assert len(got) == len(setup) + len(commands)
    assert np.array_equal(got[:, 0:8].copy().view("<u8").ravel(), np.arange(1, len(got) + 1))
    expected = np.concatenate(
        [setup.view(np.uint8).reshape(-1, 64), commands.view(np.uint8).reshape(-1, 64)]
    )
    assert np.array_equal(got[:, 16:], expected[:, 16:])  # everything but seq and ts


def test_append_checks_sequence_and_dtype(tmp_path) -> None:
    with Journal(tmp_path, fsync="batch") as journal:
        assert journal.append(stamped(1, 3)) == 3
        with pytest.raises(JournalError, match="starts at seq 5"):
            journal.append(stamped(5, 1))
        bad = stamped(4, 2)
        bad["seq"][1] = 9
        with pytest.raises(JournalError, match="consecutive"):
            journal.append(bad)
        with pytest.raises(TypeError):
            journal.append(np.zeros(2, dtype=np.int64))
        assert journal.append(stamped(4, 2)) == 5
        with pytest.raises(JournalError, match="locked"):
            Journal(tmp_path)
    with Journal(tmp_path) as again:  # the lock was released; the journal continues
        assert again.last_seq == 5
        again.append(stamped(6, 1))
    assert scan(tmp_path).last_seq == 6


def test_interval_policy_becomes_durable_without_more_appends(tmp_path) -> None:
    with Journal(tmp_path, fsync="interval", interval_ms=2) as journal:
        durable = journal.append(stamped(1, 100))
        assert durable <= 100
        deadline = time.monotonic() + 5
        while journal.durable_seq < 100 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert journal.durable_seq == 100


def test_blake2b_checksums_are_read_and_checked(tmp_path) -> None:
    with Journal(tmp_path, checksum=CHECKSUM_BLAKE2B, fsync="none") as journal:
        for first in range(1, 40, 10):
            journal.append(stamped(first, 10))
    assert scan(tmp_path).last_seq == 40
    path = journal_files(tmp_path)[0]
    flip(path, 2 * (HEADER_BYTES + 640) + HEADER_BYTES + 5)
    with pytest.raises(CorruptionError, match=f"byte offset {2 * (HEADER_BYTES + 640)}"):
        scan(tmp_path)


def test_flipped_payload_byte_in_the_middle_names_file_and_offset(journaled) -> None:
    directory, _ = journaled
    path = journal_files(directory)[1]
    batches = [b for b in read(directory) if b.path == path]
    victim = batches[len(batches) // 2]
    flip(path, victim.offset + HEADER_BYTES + 64 * (len(victim.commands) // 2) + 40)
    with pytest.raises(CorruptionError) as error:
        scan(directory)
    assert error.value.path == path and error.value.offset == victim.offset
    assert str(path) in str(error.value) and f"byte offset {victim.offset}" in str(error.value)
    assert "checksum mismatch" in str(error.value)


def test_flipped_header_byte_in_the_last_file_is_not_a_torn_tail(journaled) -> None:
    directory, _ = journaled
    path = journal_files(directory)[-1]
    batches = [b for b in read(directory) if b.path == path]
    assert len(batches) >= 2
    flip(path, batches[0].offset + 1)  # the magic of the first batch of the last file
    with pytest.raises(
        CorruptionError, match=f"bad batch magic at byte offset {batches[0].offset}"
    ):
        scan(directory, repair=True)
    flip(path, batches[0].offset + 1)
    flip(path, batches[0].offset + 20)  # record size field: an inconsistent header
    with pytest.raises(CorruptionError, match="inconsistent batch header"):
        scan(directory)


@pytest.mark.parametrize("cut", [1, 63, 64, 65, 200])
def test_truncated_tail_is_reported_and_cut(journaled, cut) -> None:
    directory, _ = journaled
    path = journal_files(directory)[-1]
    last = list(read(directory))[-1]
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - cut)
    reader = scan(directory)  # read-only: reported, file untouched
    assert reader.torn is not None and reader.torn.offset == last.offset
    assert reader.torn.path == path and reader.last_seq == last.first_seq - 1
    assert path.stat().st_size == size - cut
    repaired = scan(directory, repair=True)
    assert repaired.torn is not None and path.stat().st_size == last.offset
    assert scan(directory).torn is None
    with pytest.raises(JournalError, match="truncated or altered"):
        Journal(directory)  # after a clean stop the manifest records the exact length
    as_if_killed(directory, last.offset)  # the last batch was written after the manifest
    with Journal(directory) as journal:  # the writer continues after the last good batch
        assert journal.last_seq == last.first_seq - 1
        journal.append(stamped(last.first_seq, 5))
    assert scan(directory).last_seq == last.first_seq + 4


def test_bad_checksum_in_the_final_complete_batch_is_corruption(journaled) -> None:
    directory, _ = journaled
    path = journal_files(directory)[-1]
    last = list(read(directory))[-1]
    flip(path, path.stat().st_size - 3)  # a kill -9 never leaves a complete, bad batch
    before = path.read_bytes()
    with pytest.raises(CorruptionError, match="checksum mismatch") as error:
        scan(directory)
    assert error.value.path == path and error.value.offset == last.offset
    as_if_killed(directory, last.offset)  # even where a torn tail would be allowed
    with pytest.raises(CorruptionError, match="checksum mismatch"):
        Journal(directory)
    assert path.read_bytes() == before  # the failed open changed nothing


def test_zero_filled_tail_is_torn_only_beyond_the_acknowledged_length(journaled) -> None:
    directory, _ = journaled
    path = journal_files(directory)[-1]
    last = list(read(directory))[-1]
    size = path.stat().st_size
    with open(path, "ab") as handle:  # a crash after the size grew but before data landed
        handle.write(bytes(4096))
    reader = scan(directory)
    assert reader.torn is not None and reader.torn.reason == "zero-filled tail"
    as_if_killed(directory, size)
    with Journal(directory) as journal:
        assert journal.repaired is not None and journal.repaired.offset == size
    assert path.stat().st_size == size
    with open(path, "r+b") as handle:  # zeros over an acknowledged batch are damage
        handle.seek(last.offset)
        handle.write(bytes(size - last.offset + 4096))
    as_if_killed(directory, size)
    with pytest.raises(CorruptionError, match="acknowledged"):
        Journal(directory)
    with open(path, "r+b") as handle:  # non-zero garbage after the tail is corruption
        handle.seek(-100, 2)
        handle.write(b"\x01" * 100)
    with pytest.raises(CorruptionError, match="bad batch magic"):
        scan(directory)


def test_damage_before_the_last_file_is_never_repaired(journaled) -> None:
    directory, _ = journaled
    files = journal_files(directory)
    size = files[0].stat().st_size
    with open(files[0], "r+b") as handle:
        handle.truncate(size - 10)
    with pytest.raises(CorruptionError, match="before the last file"):
        scan(directory, repair=True)
    assert files[0].stat().st_size == size - 10


def test_missing_file_is_a_sequence_break(journaled) -> None:
    directory, _ = journaled
    files = journal_files(directory)
    files[1].unlink()
    with pytest.raises(CorruptionError) as error:
        scan(directory)
    assert error.value.path == files[2] and error.value.offset == 0
    assert "sequence break" in str(error.value)


def test_reopening_drops_a_last_file_holding_only_a_torn_batch(tmp_path) -> None:
    with Journal(tmp_path, fsync="none", roll_bytes=64 * 12) as journal:
        for first in range(1, 31, 10):
            journal.append(stamped(first, 10))  # one batch per file
    files = journal_files(tmp_path)
    assert [int(f.stem) for f in files] == [1, 11, 21]
    with open(files[-1], "r+b") as handle:
        handle.truncate(100)
    as_if_killed(tmp_path, 0)  # killed right after the roll listed the new file
    with Journal(tmp_path) as journal:
        assert journal.repaired is not None and journal.repaired.path == files[-1]
        assert journal.last_seq == 20 and not files[-1].exists()
        journal.append(stamped(21, 3))
    assert [int(f.stem) for f in journal_files(tmp_path)] == [1, 11]
    assert scan(tmp_path).last_seq == 23


def test_reopening_refuses_damage_inside_the_last_file(journaled) -> None:
    directory, _ = journaled
    path = journal_files(directory)[-1]
    batches = [b for b in read(directory) if b.path == path]
    flip(path, batches[0].offset + HEADER_BYTES + 3)
    with pytest.raises(CorruptionError) as error:
        Journal(directory)
    assert error.value.path == path and error.value.offset == batches[0].offset
    with pytest.raises(CorruptionError):
        Journal(directory)  # again damage, not "locked": the failed open released the lock
