"""The per-command door (``derivex.door``): ``Exchange.place`` / ``cancel`` / ``amend``
through the compiled entry points give the results, events and state hashes of the slow
path (``Exchange.submit``), through every binding and through the C order methods
(``derivex.door_native``), across pool growth and full buffers."""

from __future__ import annotations

import gc
import os
import random

import numpy as np
import pytest

from derivex import door, door_native
from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.exchange_orders import OrderMethods
from derivex.results import OrderResult

START_NS = 1_800_000_000_000_000_000
JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")


def python_methods(ex: Exchange) -> Exchange:
    """``ex`` with its Python order methods (the C ones removed)."""
    for name in ("place", "cancel", "amend"):
        vars(ex).pop(name, None)
    return ex


def make_venue(
    fast: bool, binding: str | None = None, journal: object = None
) -> tuple[Exchange, int, list[int]]:
    ticks = iter(range(START_NS, START_NS + 10**12, 1_000))
    config = EngineConfig(
        risk_checks=False,
        initial_orders=8,  # small pools: the door meets growth often
        initial_levels=4,
        initial_positions=4,
        initial_levels_per_side=2,
    )
    ex = Exchange(config, clock=lambda: next(ticks), journal=journal)  # type: ignore[arg-type]
    ex.fast_orders = fast
    if fast and binding is not None:
        loaded = door.load_binding(binding)
        assert loaded is not None, f"binding {binding} did not load"
        ex._door = door.OrderDoor(loaded)
    perp = ex.add_perpetual("BTC", tick_size_ticks=50, maker_fee_ppm=-100, taker_fee_ppm=500)
    accounts = [ex.create_account() for _ in range(4)]
    for account in accounts:
        ex.deposit(account, 10**13)
    return ex, perp, accounts


def summary(result: OrderResult) -> tuple:
    return (
        result.accepted,
        result.reason,
        result.status,
        result.order_id,
        result.price_ticks,
        result.ordered_lots,
        result.filled_lots,
        result.remaining_lots,
        result.notional,
        result.average_price_ticks,
        result.fills,
        result.events.tobytes(),
    )


def drive(ex: Exchange, perp: int, accounts: list[int], seed: int, count: int) -> list[tuple]:
    """A seeded mix of places (limit, market, IOC, post-only, client ids, bad input),
    cancels and amends (by order id and by client id); the summary of every result."""
    rng = random.Random(seed)
    live: list[tuple[int, int, int]] = []  # (account, order id, client id)
    out = []
    for step in range(count):
        account = rng.choice(accounts)
        r = rng.random()
        if r < 0.55 or not live:
            client = rng.choice([0, 0, step + 1, rng.randint(1, 5)])
            side = rng.choice(["buy", "sell"])
            price = 10_000_000 + rng.randint(-20, 20) * 50 + (1 if rng.random() < 0.02 else 0)
            result = ex.place(
                account,
                perp,
                side,
                rng.randint(1, 30) if rng.random() > 0.02 else 0,
                price,
                order_type="market" if rng.random() < 0.05 else "limit",
                time_in_force=rng.choice(["gtc"] * 8 + ["ioc", "fok"]),
                post_only=rng.random() < 0.05,
                label=client,
                client_order_id=bool(client) and rng.random() < 0.7,
            )
            if result.status == "resting":
                live.append((account, result.order_id, client))
        elif r < 0.8:
            owner, order_id, client = live.pop(rng.randrange(len(live)))
            if client and rng.random() < 0.5:
                result = ex.cancel(owner, 0, client_order_id=client)
            else:
                result = ex.cancel(owner if rng.random() < 0.95 else account, order_id)
        else:
            owner, order_id, client = rng.choice(live)
            price = 10_000_000 + rng.randint(-20, 20) * 50
            if client and rng.random() < 0.5:
                result = ex.amend(owner, 0, price, rng.randint(1, 30), client_order_id=client)
            else:
                result = ex.amend(owner, order_id, price, rng.randint(1, 30))
            if result.status != "resting":
                live = [entry for entry in live if entry[1] != order_id]
        out.append(summary(result))
    return out


PATHS = [(binding, "python") for binding in door.BINDINGS] + [("native", "c")]


@pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")
@pytest.mark.parametrize(("binding", "methods"), PATHS)
def test_fast_and_slow_paths_agree(
    binding: str, methods: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(door, "EVENT_CHUNK", 64)  # full buffers and logs, often
    monkeypatch.setattr(door, "LOG_ROWS", 16)
    slow, perp, accounts = make_venue(fast=False)
    fast, _, _ = make_venue(fast=True, binding=binding)
    if methods == "python":
        python_methods(fast)
    else:
        assert "place" in vars(fast), f"no C methods: {door_native.load_error}"
    assert fast._door is not None and fast._door.binding.name == binding
    expected = drive(slow, perp, accounts, seed=11, count=1_500)
    actual = drive(fast, perp, accounts, seed=11, count=1_500)
    assert slow._door is None  # the slow venue never used the door
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert want == got, f"result {index} differs"
    assert fast.state_hash() == slow.state_hash()
    assert fast.sequencer.seq == slow.sequencer.seq
    assert fast.sequencer.batches == slow.sequencer.batches
    statuses = {s[2] for s in expected}
    assert statuses == {"rejected", "resting", "filled", "expired", "cancelled"}
    assert fast.engine.state.ord_label.shape[0] > 8  # the pools grew on the way
    fast.check_invariants()


@pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")
def test_a_result_stays_valid_after_its_buffer_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(door, "EVENT_CHUNK", 32)
    monkeypatch.setattr(door, "LOG_ROWS", 4)
    ex, perp, (a, b, *_) = make_venue(fast=True)
    first = ex.place(a, perp, "sell", 5, 10_000_000)
    for k in range(20):
        ex.place(a, perp, "sell", 1, 10_000_050 + 50 * k)
    taker = ex.place(b, perp, "buy", 7, 10_000_100)
    assert ex._door is not None and taker._log is not first._log
    assert first.status == "resting" and first.events["order_id"][0] == first.order_id
    assert taker.status == "filled" and taker.filled_lots == 7
    assert [(f.price_ticks, f.qty_lots) for f in taker.fills] == [
        (10_000_000, 5),
        (10_000_050, 1),
        (10_000_100, 1),
    ]
    assert taker.notional == 10_000_000 * 5 + 10_000_050 + 10_000_100
    assert taker.average_price_ticks == pytest.approx(taker.notional / 7)


class TakingTurns:
    """A venue's order methods, each call made at random by the C method or the Python
    one: the Python methods replace the door's log and rebind it after growth behind the
    C methods' back (which keep door.arena and door.log between their calls)."""

    def __init__(self, ex: Exchange, seed: int) -> None:
        self.rng = random.Random(seed)
        self.c = {name: vars(ex)[name] for name in ("place", "cancel", "amend")}
        self.python = {
            name: getattr(OrderMethods, name).__get__(ex) for name in ("place", "cancel", "amend")
        }

    def _method(self, name: str):  # type: ignore[no-untyped-def]
        return (self.c if self.rng.random() < 0.5 else self.python)[name]

    def place(self, *args, **keywords):  # type: ignore[no-untyped-def]
        return self._method("place")(*args, **keywords)

    def cancel(self, *args, **keywords):  # type: ignore[no-untyped-def]
        return self._method("cancel")(*args, **keywords)

    def amend(self, *args, **keywords):  # type: ignore[no-untyped-def]
        return self._method("amend")(*args, **keywords)


@pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")
def test_c_and_python_methods_taking_turns_agree_with_the_slow_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(door, "EVENT_CHUNK", 48)
    monkeypatch.setattr(door, "LOG_ROWS", 3)
    slow, perp, accounts = make_venue(fast=False)
    fast, _, _ = make_venue(fast=True)
    assert "place" in vars(fast), f"no C methods: {door_native.load_error}"
    expected = drive(slow, perp, accounts, seed=23, count=600)
    actual = drive(TakingTurns(fast, seed=4), perp, accounts, seed=23, count=600)  # type: ignore[arg-type]
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert want == got, f"result {index} differs"
    assert fast.state_hash() == slow.state_hash()
    assert fast.sequencer.seq == slow.sequencer.seq
    assert fast.engine.state.ord_label.shape[0] > 8  # the pools grew on the way


@pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")
def test_c_methods_follow_the_engine_to_an_arena_grown_behind_their_back() -> None:
    """Accounts created through submit (not the door) grow the account pool, which
    replaces the engine's arena while the door's old one still has room for orders: the
    next C call must bind the door to the new arena (a stale binding would apply the
    order to the old copy, and the venue would never see it)."""
    venues = [make_venue(fast=True), make_venue(fast=False)]
    results = []
    for ex, perp, (a, b, *_) in venues:
        got = [ex.place(a, perp, "sell", 2, 10_000_000) for _ in range(2)]  # door bound
        arena = ex.engine.arena
        capacity = ex.engine.state.acc_i8.shape[0]
        while ex.engine.state.acc_i8.shape[0] == capacity:
            ex.create_account()
        assert ex.engine.arena is not arena
        got += [ex.place(b, perp, "buy", 3, 10_000_000), ex.cancel(a, got[1].order_id)]
        results.append([summary(result) for result in got])
        assert got[2].filled_lots == 3 and got[3].status == "cancelled"
    fast, slow = venues[0][0], venues[1][0]
    assert "place" in vars(fast) and fast._door is not None
    assert fast._door.arena is fast.engine.arena
    assert results[0] == results[1]
    assert fast.state_hash() == slow.state_hash()


def test_a_journaled_venue_takes_the_slow_path(tmp_path) -> None:
    """Commands a journal must see first never take the door; results have the same
    type and meaning."""
    from derivex.journal.writer import Journal

    ex, perp, (a, b, *_) = make_venue(fast=True, journal=Journal(tmp_path / "j", fsync="none"))
    placed = ex.place(a, perp, "sell", 5, 10_000_000, label=3, client_order_id=True)
    taken = ex.place(b, perp, "buy", 2, order_type="market")
    assert ex._door is None
    assert isinstance(placed, OrderResult) and placed.status == "resting"
    assert taken.status == "filled" and taken.fills[0].qty_lots == 2
    gone = ex.cancel(a, 0, client_order_id=3)
    assert gone.status == "cancelled" and gone.order_id == placed.order_id
    assert np.all(gone.events["seq"] == ex.sequencer.seq)


def test_a_subclass_that_intercepts_submit_never_gets_the_door() -> None:
    """A venue view whose ``submit`` refuses commands (a replica) must refuse orders too."""

    class ReadOnly(Exchange):
        def submit(self, commands: np.ndarray) -> np.ndarray:
            raise PermissionError("read-only")

    ex = ReadOnly(EngineConfig(risk_checks=False), clock=lambda: START_NS)
    with pytest.raises(PermissionError):
        ex.place(3, 0, "buy", 1, 100)
    with pytest.raises(PermissionError):
        ex.cancel(3, 1)
    assert ex._door is None


@pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")
def test_c_methods_return_untracked_results_and_fall_back_with_the_same_errors() -> None:
    """The C order methods make results the collector never scans; whatever they do not
    handle (bad input, a keyword spelled at run time) reaches the Python method, which
    raises what it always raised and leaves the venue as it was."""
    c_venue, perp, (a, b, *_) = make_venue(fast=True)
    py_venue, _, _ = make_venue(fast=True)
    python_methods(py_venue)
    assert "place" in vars(c_venue), f"no C methods: {door_native.load_error}"
    for ex in (c_venue, py_venue):
        ex.place(a, perp, "sell", 3, 10_000_000)  # the door is made and bound
        ex.place(a, perp, "sell", 3, 10_000_000)
    made = c_venue.place(b, perp, "buy", 1, price_ticks=10_000_000, time_in_force="ioc")
    assert type(made) is not OrderResult and isinstance(made, OrderResult)
    assert not gc.is_tracked(made) and made.status == "filled" and made.fills[0].qty_lots == 1
    py_venue.place(b, perp, "buy", 1, price_ticks=10_000_000, time_in_force="ioc")
    bad_calls = [
        ("place", (a, perp, "up", 1, 10_000_000), {}),
        ("place", (a, perp, "buy", 1, 10_000_000), {"order_type": "stop"}),
        ("place", (a, perp, "buy", 1, 10_000_000), {"time_in_force": "day"}),
        ("place", (a, perp, "buy", 1.5, 10_000_000), {}),
        ("place", (a, perp, "buy", 2**70, 10_000_000), {}),
        ("place", (a, perp, "buy", 1, 10_000_000), {"colour": "red"}),
        ("place", (a, perp, "buy", 1, 10_000_000), {"price_ticks": 10_000_000}),
        ("place", (a, perp, "buy"), {}),
        ("cancel", (a,), {}),
        ("cancel", (a, "one"), {}),
        ("amend", (a, 1, 10_000_000), {}),
        ("amend", (a, 1, 10_000_000, 2), {"client_order_id": None, "other": 1}),
    ]
    for method, args, keywords in bad_calls:
        errors = []
        for ex in (c_venue, py_venue):
            with pytest.raises(Exception) as caught:
                getattr(ex, method)(*args, **keywords)
            errors.append(type(caught.value))
        assert errors[0] is errors[1], (method, args, keywords, errors)
    # keywords and names built at run time (not interned: the C tables' identity match
    # misses and the dict answers), flags and labels: the same results
    spelled = {"".join(["time_in", "_force"]): "".join(["g", "tc"]), "post_only": 1, "label": 9}
    results = [
        ex.place(b, perp, "".join(["bu", "y"]), 2, 9_999_950, client_order_id=True, **spelled)
        for ex in (c_venue, py_venue)
    ]
    assert [summary(r) for r in results[:1]] == [summary(r) for r in results[1:]]
    moved = [ex.amend(b, 0, 9_999_900, 1, client_order_id=9) for ex in (c_venue, py_venue)]
    assert summary(moved[0]) == summary(moved[1]) and moved[0].status == "resting"
    gone = [ex.cancel(b, 0, client_order_id=9) for ex in (c_venue, py_venue)]
    assert summary(gone[0]) == summary(gone[1]) and gone[0].status == "cancelled"
    assert c_venue.state_hash() == py_venue.state_hash()
    assert c_venue.sequencer.seq == py_venue.sequencer.seq
    assert c_venue.sequencer.batches == py_venue.sequencer.batches
