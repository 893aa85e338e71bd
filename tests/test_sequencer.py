"""The one sequencer (``derivex.sequencer``): stamp, before-hook, engine, after-hook."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import derivex.sequencer
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, EventKind, command_array
from derivex.exchange import Exchange
from derivex.journal import Journal, read
from derivex.runtime import engine_process
from derivex.sequencer import SequenceGap, Sequencer

CONFIG = EngineConfig(risk_checks=False)


def _accounts(count: int) -> np.ndarray:
    batch = command_array(count)
    batch["kind"] = CommandKind.CREATE_ACCOUNT
    return batch


def _deposits(accounts: list[int], amount_units: int = 100) -> np.ndarray:
    batch = command_array(len(accounts))
    batch["kind"] = CommandKind.DEPOSIT
    batch["account"] = accounts
    batch["amount_units"] = amount_units
    return batch


class _Clock:
    def __init__(self, *readings: int) -> None:
        self.readings = list(readings)

    def __call__(self) -> int:
        return self.readings.pop(0)


def test_the_module_examples_run() -> None:
    result = doctest.testmod(derivex.sequencer)
    assert result.attempted > 0 and result.failed == 0


def test_hooks_run_in_order_around_the_engine() -> None:
    engine = Engine(CONFIG)
    calls: list[tuple] = []

    def before(commands: np.ndarray) -> None:
        # stamped already, and the engine has not seen the batch yet
        calls.append(("before", commands["seq"].tolist(), engine.state_hash() == empty))

    def after(commands: np.ndarray, events: np.ndarray) -> None:
        calls.append(("after", commands["seq"].tolist(), events["kind"].tolist()))

    empty = engine.state_hash()
    sequencer = Sequencer(engine, clock=_Clock(5, 6), before=before, after=after)
    events = sequencer.sequence(_accounts(2))
    assert calls[0] == ("before", [1, 2], True)
    assert calls[1][:2] == ("after", [1, 2]) and calls[1][2] == events["kind"].tolist()
    assert (events["kind"] == EventKind.ACCEPTED).sum() == 2
    assert engine.state_hash() != empty
    sequencer.sequence(_deposits([0]))
    assert [call[:2] for call in calls[2:]] == [("before", [3]), ("after", [3])]
    assert sequencer.seq == 3 and sequencer.batches == 2


def test_a_failing_before_hook_leaves_the_engine_untouched_and_is_reported() -> None:
    engine = Engine(CONFIG)
    failing = True

    def before(commands: np.ndarray) -> None:
        if failing:
            raise OSError("disk full")

    after_calls: list[int] = []
    sequencer = Sequencer(
        engine,
        clock=_Clock(1, 2, 3),
        before=before,
        after=lambda commands, events: after_calls.append(len(commands)),
    )
    failing = False
    sequencer.sequence(_accounts(1))
    state = engine.state_hash()
    failing = True
    with pytest.raises(OSError, match="disk full") as raised:
        sequencer.sequence(_deposits([0]))
    assert "seqs 2..2" in "\n".join(raised.value.__notes__)
    assert engine.state_hash() == state  # not processed
    assert sequencer.seq == 1 and sequencer.batches == 1 and after_calls == [1]
    failing = False
    retried = _deposits([0])
    sequencer.sequence(retried)
    assert retried["seq"].tolist() == [2]  # the seq was not used up: no gap
    assert engine.state_hash() != state and after_calls == [1, 1]


def test_stamps_are_monotonic_across_batches_even_when_the_clock_steps_back() -> None:
    sequencer = Sequencer(Engine(CONFIG), clock=_Clock(100, 300, 200, 400))
    batches = [_accounts(3), _accounts(1), _deposits([0, 1]), _accounts(4)]
    for batch in batches:
        sequencer.sequence(batch)
    seqs = np.concatenate([b["seq"] for b in batches]).tolist()
    times = np.concatenate([b["ts_ns"] for b in batches]).tolist()
    assert seqs == list(range(1, 11))
    assert times == [100] * 3 + [300] + [300] * 2 + [400] * 4  # 200 came after 300
    assert sequencer.ts_ns == 400


def test_a_non_contiguous_batch_is_stamped_like_a_contiguous_one() -> None:
    whole = _accounts(6)
    sequencer = Sequencer(Engine(CONFIG), clock=lambda: 7)
    sequencer.stamp(whole[::2])  # stamp only: the engine would compile a strided variant
    assert whole["seq"].tolist() == [1, 0, 2, 0, 3, 0]
    assert whole["ts_ns"].tolist() == [7, 0, 7, 0, 7, 0]
    assert sequencer.seq == 0  # stamping alone uses no seq: ``sequence`` commits them


def test_commands_stamped_elsewhere_are_applied_in_sequence_only() -> None:
    leader = Sequencer(Engine(CONFIG), clock=_Clock(10, 20))
    first, second = _accounts(2), _deposits([0, 1])
    leader_events = [leader.sequence(first).copy(), leader.sequence(second).copy()]
    follower = Sequencer(Engine(CONFIG), clock=lambda: pytest.fail("a follower never stamps"))
    with pytest.raises(SequenceGap):
        follower.apply(second)  # seqs 3..4 while the follower is at 0
    assert follower.seq == 0 and follower.engine.state_hash() == Engine(CONFIG).state_hash()
    follower_events = [follower.apply(first).copy(), follower.apply(second).copy()]
    for ours, theirs in zip(follower_events, leader_events, strict=True):
        assert ours.tobytes() == theirs.tobytes()
    assert follower.engine.state_hash() == leader.engine.state_hash()
    assert follower.seq == 4 and follower.ts_ns == 20


def test_views_return_the_engine_buffer_and_copies_do_not() -> None:
    engine = Engine(CONFIG)
    copying = Sequencer(engine, clock=lambda: 1)
    events = copying.sequence(_accounts(1))
    copying.views = True
    view = copying.sequence(_accounts(1))
    assert not np.shares_memory(events, view)
    assert np.shares_memory(view, copying.sequence(_accounts(1)))


def test_both_modes_run_the_one_sequencer(tmp_path) -> None:
    """The embedded venue and the runtime's engine process are the same class; a journaled
    Exchange's journal holds exactly the batches its sequencer stamped."""
    assert issubclass(engine_process.Sequencer, Sequencer)
    exchange = Exchange(CONFIG, clock=lambda: 42, journal=Journal(tmp_path, fsync="none"))
    assert isinstance(exchange.sequencer, Sequencer)
    account = exchange.create_account()
    batch = _deposits([account, account])
    exchange.submit(batch)
    assert exchange.sequencer.seq == exchange.journal.last_seq == 3
    journaled = [b.commands.tobytes() for b in read(tmp_path)]
    assert journaled[-1] == batch.tobytes()
    exchange.journal.close()
