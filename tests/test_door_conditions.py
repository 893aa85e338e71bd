"""Whether the per-command door may run is checked once per change, not per order: every
setter of a condition (the venue's door, ``fast_orders``, sinks and sequencer; the
sequencer's engine, hooks and clock) bumps ``Sequencer.door_version``, and an order only
compares it (and that the engine still has the door's arena). One test per condition,
for the C and the Python order methods: after the door has run, the condition changes
and the next order must see it (a setter that forgot the bump fails here). Also: the
sequencer's hot state (``SequencerState``, a C struct) and its pure-Python stand-in, and
the default clock read in C."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import time
from typing import Any

import numpy as np
import pytest

from derivex import door, door_native, sequencer
from derivex.core import query
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, command_array
from derivex.exchange import Exchange
from derivex.results import OrderResult
from tests.test_door import JIT, START_NS, make_venue, python_methods, summary

PRICE = 10_000_000
METHODS = ["c", "python"]

needs_jit = pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")


def warm(methods: str) -> tuple[Exchange, int, list[int]]:
    """A venue whose door has run (made, bound, approved) through ``methods``."""
    ex, perp, accounts = make_venue(fast=True)
    if methods == "python":
        python_methods(ex)
    else:
        assert "place" in vars(ex), f"no C methods: {door_native.load_error}"
    for _ in range(2):
        assert through_door(ex, ex.place(accounts[0], perp, "sell", 1, PRICE + 500))
    return ex, perp, accounts


def through_door(ex: Exchange, result: OrderResult) -> bool:
    """Whether ``result`` came from the door (its log) rather than ``submit``."""
    return ex._door is not None and result._log is ex._door.log


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_fast_orders_off_takes_the_slow_path_at_once(methods: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    ex.fast_orders = False
    assert not through_door(ex, ex.place(a, perp, "sell", 1, PRICE + 500))
    ex.fast_orders = True
    assert through_door(ex, ex.place(a, perp, "sell", 1, PRICE + 500))


class Sink:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    def write(self, commands: np.ndarray, events: np.ndarray) -> None:
        self.seqs += commands["seq"].tolist()


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_a_sink_added_sees_the_next_order(methods: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    sink = Sink()
    ex.add_sink(sink)
    placed = ex.place(a, perp, "sell", 1, PRICE + 500)
    cancelled = ex.cancel(a, placed.order_id)
    assert sink.seqs == [ex.sequencer.seq - 1, ex.sequencer.seq]
    assert cancelled.status == "cancelled" and not through_door(ex, cancelled)


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
@pytest.mark.parametrize("hook", ["before", "after"])
def test_a_sequencer_hook_set_sees_the_next_order(methods: str, hook: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    seen: list[int] = []
    setattr(ex.sequencer, hook, lambda commands, *_: seen.extend(commands["seq"].tolist()))
    result = ex.place(a, perp, "sell", 1, PRICE + 500)
    assert seen == [ex.sequencer.seq] and not through_door(ex, result)
    setattr(ex.sequencer, hook, None)
    assert through_door(ex, ex.place(a, perp, "sell", 1, PRICE + 500))
    assert seen == [ex.sequencer.seq - 1]


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_a_replaced_engine_gets_the_next_order(methods: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    twin, _, _ = make_venue(fast=False)  # same accounts, same book
    old, new = ex.engine, twin.engine
    old_hash, new_hash = old.state_hash(), new.state_hash()
    ex.engine = new
    result = ex.place(a, perp, "buy", 1, PRICE - 500)
    assert result.status == "resting"
    assert old.state_hash() == old_hash and new.state_hash() != new_hash
    assert ex._door is not None and ex._door.arena is new.arena


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_a_replaced_clock_stamps_the_next_order(methods: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    later = ex.sequencer.ts_ns + 10**9
    ex.sequencer.clock = lambda: later
    result = ex.place(a, perp, "sell", 1, PRICE + 500)
    assert ex.sequencer.ts_ns == later and query.clock_ns(ex.engine.state) == later
    assert through_door(ex, result)


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_a_replaced_sequencer_stamps_the_next_order(methods: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    old = ex.sequencer
    seq, batches = old.seq, old.batches
    new = sequencer.Sequencer(old.engine, clock=lambda: START_NS + 10**12, seq=seq + 100)
    ex.sequencer = new
    result = ex.place(a, perp, "sell", 1, PRICE + 500)
    assert (old.seq, old.batches) == (seq, batches)
    assert (new.seq, new.batches, new.ts_ns) == (seq + 101, 1, START_NS + 10**12)
    assert set(result.events["seq"].tolist()) == {seq + 101}


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_a_replaced_door_runs_the_next_order(methods: str) -> None:
    ex, perp, (a, *_) = warm(methods)
    binding = door.load_binding()
    assert binding is not None
    ex._door = door.OrderDoor(binding)
    result = ex.place(a, perp, "sell", 1, PRICE + 500)
    assert result._log is ex._door.log and result.status == "resting"


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_an_arena_grown_by_driving_the_engine_directly_is_followed(methods: str) -> None:
    """The one condition no setter sees (the engine replaces its arena when a pool grows,
    and may be driven without the venue): tested per order."""
    venues = [warm(methods), warm(methods)]
    results = []
    for index, (ex, perp, (_, b, *_)) in enumerate(venues):
        if index:
            ex.fast_orders = False
        arena, capacity = ex.engine.arena, ex.engine.state.acc_i8.shape[0]
        records = command_array(capacity)
        records["kind"] = CommandKind.CREATE_ACCOUNT
        records["seq"] = np.arange(ex.sequencer.seq + 1, ex.sequencer.seq + 1 + capacity)
        records["ts_ns"] = ex.sequencer.ts_ns
        ex.engine.process(records)
        ex.sequencer.seq += capacity
        assert ex.engine.arena is not arena
        results.append([summary(ex.place(b, perp, "buy", 3, PRICE + 500)) for _ in range(2)])
    assert results[0] == results[1] and results[0][0][6] == 2  # filled 2 of the resting
    assert venues[0][0].state_hash() == venues[1][0].state_hash()


@needs_jit
def test_the_default_clock_is_read_in_c_with_time_time_ns_semantics() -> None:
    ex = Exchange(EngineConfig(risk_checks=False))  # clock: time.time_ns
    perp = ex.add_perpetual("BTC", tick_size_ticks=50)
    a = ex.create_account()
    ex.deposit(a, 10**13)
    stamps = []
    for _ in range(3):
        before = time.time_ns()
        result = ex.place(a, perp, "sell", 1, PRICE)
        after = time.time_ns()
        stamps.append(ex.sequencer.ts_ns)
        assert before <= ex.sequencer.ts_ns <= after
        assert query.clock_ns(ex.engine.state) == ex.sequencer.ts_ns
    assert stamps == sorted(stamps)
    assert "place" not in vars(ex) or type(result) is not OrderResult  # made in C


def test_the_sequencer_state_is_a_c_struct_with_the_same_api_as_its_stand_in() -> None:
    native = door_native.load()
    assert native is not None, door_native.load_error
    assert sequencer.Sequencer.__mro__[1] is native.SequencerState
    fields = {"seq", "ts_ns", "batches", "door_version"}
    assert fields <= set(vars(native.SequencerState))
    assert set(sequencer._PythonState.__slots__) == fields
    state = sequencer.Sequencer(Engine(), clock=lambda: 5, seq=7)
    state.seq += 2**40
    assert (state.seq, state.ts_ns, state.batches) == (7 + 2**40, 0, 0)
    state.ts_ns = np.int64(9)  # an integer of any kind is stored, as an int
    assert type(state.ts_ns) is int and state.ts_ns == 9
    with pytest.raises(OverflowError):
        state.seq = 2**63
    with pytest.raises(TypeError):
        state.batches = 1.5


def _sequencer_module_without_native(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh copy of ``derivex.sequencer`` built as where the native module cannot."""
    monkeypatch.setattr(door_native, "load", lambda: None)
    spec = importlib.util.spec_from_file_location("_sequencer_fallback", sequencer.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_jit
@pytest.mark.parametrize("methods", METHODS)
def test_a_sequencer_on_the_python_stand_in_runs_orders_alike(
    methods: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the C struct (no compiler) the sequencer keeps its state in slots; the C
    methods then hand every order to the Python methods, with the same results."""
    venues = [warm(methods), warm(methods)]
    fallback = _sequencer_module_without_native(monkeypatch)
    assert fallback.Sequencer.__mro__[1] is fallback._PythonState
    ex, perp, (a, b, *_) = venues[0]
    old = ex.sequencer
    ex.sequencer = fallback.Sequencer(old.engine, clock=old.clock, seq=old.seq)
    ex.sequencer.ts_ns = old.ts_ns
    results = []
    for ex, perp, (a, b, *_) in venues:
        placed = ex.place(b, perp, "buy", 3, PRICE + 500)
        results.append([summary(placed), summary(ex.cancel(a, placed.order_id - 1))])
    assert results[0] == results[1]
    assert venues[0][0].sequencer.seq == venues[1][0].sequencer.seq
    assert venues[0][0].state_hash() == venues[1][0].state_hash()


def test_a_sequencer_copies_and_pickles_with_its_hot_state() -> None:
    original = sequencer.Sequencer(Engine(), seq=41)
    original.ts_ns, original.batches = 1_700_000_000, 3
    for twin in (copy.copy(original), pickle.loads(pickle.dumps(original))):
        assert (twin.seq, twin.ts_ns, twin.batches) == (41, 1_700_000_000, 3)
        assert twin.clock is time.time_ns and twin.before is None and twin.views is False
        assert twin.door_version == original.door_version
        twin.seq += 1
        assert original.seq == 41
    assert copy.copy(original).engine is original.engine
