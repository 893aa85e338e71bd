"""The compiled walker against the reference: CRC32C against the crc32c package, and
``apply_journal`` against iterating ``JournalReader`` on mixed, trimmed and damaged
journals (same state, same checkpoints, same errors and torn tails)."""

from __future__ import annotations

import crc32c
import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, EventKind, command_array
from derivex.exchange import Exchange
from derivex.journal import CorruptionError, Journal, JournalReader, Replayer, recover, scan, walk
from derivex.journal.format import CHECKSUM_BLAKE2B, HEADER_BYTES, journal_files
from derivex.journal.replay import apply_journal
from derivex.journal.roots import StateRoots

from .conftest import START_NS, StepClock, as_if_killed, batches_of, naive_replay


@pytest.mark.parametrize("header", ["MASS_QUOTE", "INDEX"])
def test_walker_ends_the_engine_call_at_a_split_multi_record_command(tmp_path, header) -> None:
    """A header that ends one journal batch with its legs in the next was rejected alone
    when sequenced (the legs as orphans): both replay paths keep that boundary for every
    kind of ``codec.MULTI_RECORD`` (the walker used to stop at mass quotes only)."""
    split = command_array(2)
    split["kind"][0] = CommandKind.ADD_INSTRUMENT
    split["instrument_kind"][0], split["underlying"][0] = 1, 1
    split["tick_size_ticks"][0], split["min_trade_lots"][0] = 50, 1
    split["contract_value_units"][0] = 1
    split["kind"][1], split["count"][1] = CommandKind[header], 1
    split["account"][1] = 1  # the index header's underlying (BTC); the quote's account
    leg = command_array(1)
    if header == "INDEX":
        leg["kind"][0], leg["source_id"][0], leg["price_ticks"][0] = (
            CommandKind.INDEX_SOURCE,
            1,
            10**7,
        )
        leg["source_ts_ns"][0] = START_NS
    else:
        leg["kind"][0], leg["bid_price_ticks"][0], leg["bid_qty_lots"][0] = (
            CommandKind.QUOTE_LEG,
            50,
            1,
        )
    exchange = Exchange(
        EngineConfig(risk_checks=False), clock=StepClock(), journal=Journal(tmp_path, fsync="none")
    )
    first, second = exchange.submit(split), exchange.submit(leg)
    exchange.journal.close()
    assert first["kind"][-1] == EventKind.REJECTED and second["kind"][0] == EventKind.REJECTED
    (python, _), (compiled, _) = replay_both(tmp_path)
    assert python.engine.state_hash() == exchange.state_hash()
    assert compiled.engine.state_hash() == exchange.state_hash()


@pytest.mark.parametrize("function", [walk.crc32c_table, walk.crc32c_hw])
def test_crc32c_kernels_match_the_package(function) -> None:
    if function is walk.crc32c_hw and not walk.HARDWARE_CRC:
        pytest.skip("no SSE4.2 on this host")
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 5_000, dtype=np.uint8)
    words = data[: len(data) // 8 * 8].view(np.uint64)
    for start, stop in [(0, 0), (0, 1), (3, 11), (8, 64), (5, 4_999), (0, 4_992), (7, 8)]:
        for value in (0, 0xDEADBEEF):
            expected = crc32c.crc32c(data[start:stop].tobytes(), value)
            assert int(function(data, words, start, stop, np.uint32(value), walk.TABLE)) == (
                expected
            ), (start, stop, value)


def replay_both(directory, *, from_seq=None, every=None, direct_from=2048):
    """(python path, walker path) replayers over the same journal, from empty engines."""
    results = []
    for compiled in (False, True):
        roots = StateRoots() if every else None
        replayer = Replayer(
            Engine(EngineConfig(risk_checks=False)),
            roots=roots,
            checkpoint_every=every,
            direct_from=direct_from,
            stage_commands=1_000,
        )
        reader = JournalReader(directory, from_seq)
        if compiled:
            apply_journal(reader, replayer)
        else:
            for batch in reader:
                replayer.feed(batch)
            replayer.flush()
        results.append((replayer, reader))
    return results


@pytest.mark.parametrize("direct_from", [1, 64, 2048])
def test_walker_equals_reader_on_mixed_batches_and_checksums(tmp_path, flow, direct_from) -> None:
    setup, commands = flow
    parts = [
        setup.copy(),
        *batches_of(commands[:2_000], 1, largest=40),
        commands[2_000:4_500].copy(),
        *batches_of(commands[4_500:], 2, largest=900),
    ]
    seq = 0
    for index, part in enumerate(parts):  # CRC32C and BLAKE2b batches interleaved
        part["seq"] = np.arange(seq + 1, seq + 1 + len(part))
        seq += len(part)
        with Journal(
            tmp_path,
            fsync="none",
            roll_bytes=50_000,
            checksum=CHECKSUM_BLAKE2B if index % 7 == 3 else None,
        ) as journal:
            journal.attach(EngineConfig(risk_checks=False))
            journal.append(part)
    (python, reader), (compiled, walked) = replay_both(tmp_path, every=700, direct_from=direct_from)
    assert (
        compiled.engine.state_hash()
        == python.engine.state_hash()
        == naive_replay(tmp_path)[0].state_hash()
    )
    assert compiled.checkpoints == python.checkpoints and len(python.checkpoints) >= 5
    assert (walked.batches, walked.commands, walked.last_seq, walked.end_seq) == (
        reader.batches,
        reader.commands,
        reader.last_seq,
        reader.end_seq,
    )
    assert walked.first_seq == reader.first_seq == 1


def test_walker_trims_to_from_seq_inside_a_batch(tmp_path, flow) -> None:
    setup, commands = flow
    with Journal(tmp_path, fsync="none", roll_bytes=30_000) as journal:
        seq = 0
        for part in [setup.copy(), *batches_of(commands, 4, largest=500)]:
            part["seq"] = np.arange(seq + 1, seq + 1 + len(part))
            seq += len(part)
            journal.append(part)
    middle = 3_333  # inside some batch, in a later file
    (python, reader), (compiled, walked) = replay_both(tmp_path, from_seq=middle)
    assert walked.last_seq == reader.last_seq == seq
    assert walked.commands == reader.commands == seq - middle + 1
    assert compiled.engine.state_hash() == python.engine.state_hash()


def damaged(tmp_path, flow):
    setup, commands = flow
    with Journal(tmp_path, fsync="none", roll_bytes=40_000) as journal:
        journal.attach(EngineConfig(risk_checks=False))
        seq = 0
        for part in [setup.copy(), *batches_of(commands, 5, largest=60)]:
            part["seq"] = np.arange(seq + 1, seq + 1 + len(part))
            seq += len(part)
            journal.append(part)
    return journal_files(tmp_path)


@pytest.mark.parametrize("where", ["payload", "header", "seq field"])
def test_walker_raises_exactly_what_the_reader_raises(tmp_path, flow, where) -> None:
    files = damaged(tmp_path, flow)
    path = files[1]
    offsets = [batch.offset for batch in JournalReader(tmp_path) if batch.path == path]
    victim = offsets[len(offsets) // 2]
    data = bytearray(path.read_bytes())
    data[
        victim + {"payload": HEADER_BYTES + 70, "header": 9, "seq field": HEADER_BYTES}[where]
    ] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as expected:
        scan(tmp_path)
    with pytest.raises(CorruptionError) as got:
        recover(tmp_path, use_snapshot=False, roots=False)
    assert (got.value.path, got.value.offset, str(got.value)) == (
        expected.value.path,
        expected.value.offset,
        str(expected.value),
    )
    assert got.value.path == path and got.value.offset == victim


def test_walker_reports_and_repairs_a_torn_tail(tmp_path, flow) -> None:
    files = damaged(tmp_path, flow)
    last = list(JournalReader(tmp_path))[-1]
    size = files[-1].stat().st_size
    with open(files[-1], "r+b") as handle:
        handle.truncate(size - 100)
    as_if_killed(tmp_path, last.offset)  # the manifest recorded the file before the last batch
    recovered = recover(tmp_path, use_snapshot=False, roots=False)
    assert recovered.torn is not None and recovered.torn.offset == last.offset
    assert recovered.seq == last.first_seq - 1 and files[-1].stat().st_size == size - 100
    repaired = recover(tmp_path, use_snapshot=False, roots=False, repair=True)
    assert repaired.torn == recovered.torn and files[-1].stat().st_size == last.offset
    assert repaired.engine.state_hash() == naive_replay(tmp_path)[0].state_hash()
