"""Replay and the exchange integration: a journal replays to the live state whatever the
batching, gathering small batches never crosses an incomplete mass quote, a command is
journaled before it is processed, a reopened exchange continues the log; and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from derivex.cli import app
from derivex.core.codec import ends_inside_multi_record
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, EventKind, Reason, command_array
from derivex.exchange import Exchange, open_exchange
from derivex.journal import (
    Journal,
    Replayer,
    read,
    recover,
    snapshot,
    verify_proof,
)
from derivex.journal.format import journal_files
from derivex.journal.roots import full_root

from .conftest import StepClock, batches_of, journal_flow, naive_replay


@pytest.mark.parametrize("direct_from", [1, 2048, 1 << 30])
def test_replay_reaches_the_live_state_whatever_the_batching(tmp_path, flow, direct_from) -> None:
    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands, seed=direct_from % 7)
    exchange.journal.close()
    engine = Engine(EngineConfig(risk_checks=False))
    replayer = Replayer(engine, direct_from=direct_from, stage_commands=1_000)
    for batch in read(tmp_path):
        replayer.feed(batch)
    replayer.finish()
    engine.check_invariants()
    assert replayer.seq == exchange.journal.last_seq == len(setup) + len(commands)
    assert engine.state_hash() == exchange.state_hash() == naive_replay(tmp_path)[0].state_hash()


def quote_split_batches() -> list[np.ndarray]:
    """Batches where a mass quote's header ends one batch and its legs open the next."""
    setup = command_array(5)
    setup["kind"][0] = CommandKind.ADD_INSTRUMENT
    setup["instrument_kind"][0], setup["underlying"][0] = 1, 1
    setup["tick_size_ticks"][0], setup["min_trade_lots"][0] = 50, 1
    setup["contract_value_units"][0] = 1
    setup["kind"][1:3] = CommandKind.CREATE_ACCOUNT
    setup["kind"][3:5] = CommandKind.DEPOSIT
    setup["account"][3:5] = [3, 4]
    setup["amount_units"][3:5] = 10**12
    head = command_array(2)
    head["kind"][0] = CommandKind.PLACE_ORDER
    head["account"][0], head["side"][0] = 4, 0
    head["price_ticks"][0], head["qty_lots"][0] = 9_000_000, 3
    head["kind"][1], head["account"][1], head["count"][1] = CommandKind.MASS_QUOTE, 3, 1
    legs = command_array(2)
    legs["kind"][0], legs["instrument"][0] = CommandKind.QUOTE_LEG, 0
    legs["bid_price_ticks"][0], legs["bid_qty_lots"][0] = 9_999_000, 5
    legs["ask_price_ticks"][0], legs["ask_qty_lots"][0] = 10_001_000, 5
    legs["kind"][1], legs["account"][1], legs["side"][1] = CommandKind.PLACE_ORDER, 4, 1
    legs["price_ticks"][1], legs["qty_lots"][1] = 10_001_000, 2
    return [setup, head, legs]


def test_gathering_small_batches_stops_at_an_incomplete_mass_quote(tmp_path) -> None:
    batches = quote_split_batches()
    assert ends_inside_multi_record(batches[1]) and not ends_inside_multi_record(batches[2])
    exchange = Exchange(
        EngineConfig(risk_checks=False), clock=StepClock(), journal=Journal(tmp_path, fsync="none")
    )
    events = [exchange.submit(batch) for batch in batches]
    assert Reason(events[1]["reason"][1]) == Reason.BAD_MASS_QUOTE
    assert Reason(events[2]["reason"][0]) == Reason.ORPHAN_QUOTE_LEG
    exchange.journal.close()
    engine = Engine(EngineConfig(risk_checks=False))
    replayer = Replayer(engine)  # stages all three (they are small)
    for batch in read(tmp_path):
        replayer.feed(batch)
    replayer.finish()
    assert engine.state_hash() == exchange.state_hash()
    # the boundary matters: in one call the quote would be accepted and rest
    joined = Engine(EngineConfig(risk_checks=False))
    whole = joined.process(
        np.concatenate([b.view(np.uint8).reshape(-1, 64) for b in batches])
        .reshape(-1)
        .view(batches[0].dtype)
    )
    assert (whole["kind"] == EventKind.REJECTED).sum() < 2
    assert joined.state_hash() != exchange.state_hash()


def test_a_command_is_journaled_before_it_is_processed(tmp_path) -> None:
    exchange = Exchange(
        EngineConfig(risk_checks=False), clock=StepClock(), journal=Journal(tmp_path, fsync="batch")
    )
    account = exchange.create_account()
    assert exchange.journal.durable_seq == exchange.journal.last_seq == 1
    before = exchange.state_hash()

    def failing_append(commands):
        raise OSError("disk full")

    exchange.journal.append = failing_append
    with pytest.raises(OSError, match="disk full"):
        exchange.deposit(account, 100)
    assert exchange.state_hash() == before  # not processed, not acknowledged
    del exchange.journal.append
    exchange.deposit(account, 100)  # the same seq is used again: no gap in the log
    assert [b.first_seq for b in read(tmp_path)] == [1, 2]
    assert exchange.journal.durable_seq == 2
    exchange.journal.close()


def test_reopened_exchange_continues_the_log(tmp_path, flow) -> None:
    setup, commands = flow
    first = journal_flow(tmp_path, setup, commands[:2_000], seed=9)
    snapshot(first)
    for part in batches_of(commands[2_000:3_000], 10):
        first.submit(part)
    first.journal.close()
    second, recovered = open_exchange(tmp_path, clock=StepClock(), fsync="interval")
    assert recovered.snapshot_seq is not None and recovered.replayed > 0
    assert second.state_hash() == first.state_hash()
    assert second.journal.last_seq == first.journal.last_seq
    for part in batches_of(commands[3_000:], 11):
        second.submit(part)
    proof = second.prove(3)
    second.journal.close()
    again = recover(tmp_path)
    assert again.seq == len(setup) + len(commands)
    assert (
        again.engine.state_hash() == second.state_hash() == naive_replay(tmp_path)[0].state_hash()
    )
    assert again.root.hex() == proof["root"] == full_root(second.engine.state).hex()
    with pytest.raises(Exception, match="different EngineConfig"):
        Exchange(EngineConfig(risk_checks=False, gas_base=11), journal=Journal(tmp_path))


def test_cli_replay_verify_prove(tmp_path, flow) -> None:
    setup, commands = flow
    exchange = journal_flow(tmp_path, setup, commands[:3_000], seed=12)
    snapshot(exchange)
    for part in batches_of(commands[3_000:], 13):
        exchange.submit(part)
    exchange.journal.close()
    runner = CliRunner()
    result = runner.invoke(app, ["replay", str(tmp_path), "--checkpoint-every", "2000"])
    assert result.exit_code == 0, result.output
    root = full_root(exchange.engine.state).hex()
    assert root in result.output and exchange.state_hash() in result.output
    rows = len(recover(tmp_path, checkpoint_every=2000).checkpoints) + 1
    assert rows >= 3 and result.output.count("│") == 3 * rows  # per checkpoint, and the end
    result = runner.invoke(app, ["replay", str(tmp_path), "--full", "--no-hash"])
    assert result.exit_code == 0 and root in result.output, result.output
    assert "full replay" in result.output and exchange.state_hash() not in result.output
    result = runner.invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 0 and "OK" in result.output, result.output
    result = runner.invoke(app, ["prove", str(tmp_path), "7"])
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert proof["root"] == root and proof["index"] == 7 and verify_proof(proof, root)
    path = journal_files(tmp_path)[1]
    data = bytearray(path.read_bytes())
    data[300] ^= 1
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2 and path.name in result.output.replace("\n", "")
