"""The per-command door (``derivex.door``): ``Exchange.place`` / ``cancel`` / ``amend``
through the compiled entry points give the results, events and state hashes of the slow
path (``Exchange.submit``), through either binding, across pool growth and full buffers."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from derivex import door
from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from derivex.results import OrderResult

START_NS = 1_800_000_000_000_000_000
JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")


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


@pytest.mark.skipif(not JIT, reason="the door's entry points are compiled code")
@pytest.mark.parametrize("binding", list(door.BINDINGS))
def test_fast_and_slow_paths_agree(binding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(door, "EVENT_CHUNK", 64)  # full buffers and logs, often
    monkeypatch.setattr(door, "LOG_ROWS", 16)
    slow, perp, accounts = make_venue(fast=False)
    fast, _, _ = make_venue(fast=True, binding=binding)
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
