"""Differential tests of conditional orders: the random streams of the matching and the risk
differential suites, with trigger orders of every type and source mixed in (trigger prices
near the market, trailing offsets, cancels of trigger ids, small fire caps so cascades
spill over to later commands, a trigger pool that starts at one slot). Events byte-identical
and ``canonical()`` (which includes the trigger books, the fire queue and last prices) equal
after every batch; both sides' invariants hold after every batch.

The risk streams move the index (so marks move), shock prices and run TIME commands that
liquidate accounts: liquidation with triggers resting is covered there.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derivex.core.records import CommandKind, EventKind, Reason
from tests.core.test_differential import (
    HypothesisChooser,
    Pair,
    RandomChooser,
    StreamGen,
    draw_config,
    run_seeded,
    run_stream,
)
from tests.core.test_risk_differential import RiskStreamGen, draw_risk_config

pytestmark = pytest.mark.nojit

SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def with_triggers(config, ch):
    return dataclasses.replace(
        config,
        trigger_fire_cap=ch.pick([1, 2, 3, 64]),
        initial_triggers=1,
        max_triggers=ch.pick([3, 8, 1 << 20]),
    )


def draw_trigger_config(ch):
    return with_triggers(draw_config(ch), ch)


def draw_risk_trigger_config(ch):
    return with_triggers(draw_risk_config(ch), ch)


class TriggerCommands:
    """Mixed into a stream generator: PLACE_TRIGGER and cancels of trigger ids."""

    trigger_share = 300  # per mille of commands

    def observe(self, events: np.ndarray) -> None:
        super().observe(events)  # type: ignore[misc]
        for ev in events:
            if int(ev["kind"]) == EventKind.TRIGGER_PLACED:
                tid = int(ev["order_id"])
                self.order_ids.append(tid)  # type: ignore[attr-defined]
                self.order_owner[tid] = int(ev["account"])  # type: ignore[attr-defined]

    def command(self) -> list[np.ndarray]:
        ch = self.ch  # type: ignore[attr-defined]
        if not ch.chance(self.trigger_share):
            return super().command()  # type: ignore[misc]
        if ch.chance(250):
            oid = self.order_id()  # type: ignore[attr-defined]
            return [
                self.record(  # type: ignore[attr-defined]
                    CommandKind.CANCEL_ORDER,
                    account=self.order_owner.get(oid, self.account()),  # type: ignore[attr-defined]
                    order_id=oid,
                )
            ]
        inst, tick, step = self.instrument()  # type: ignore[attr-defined]
        trigger_type = ch.pick([1, 1, 2, 2, 3, 3]) if not ch.chance(30) else ch.pick([0, 4])
        order_type = 1 if trigger_type == 3 or ch.chance(500) else 0
        if ch.chance(20):
            order_type = 1 - order_type
        value = tick * ch.int(90, 110) if trigger_type != 3 else tick * ch.int(1, 8)
        if ch.chance(40):
            value = self.price(tick)  # type: ignore[attr-defined]
        return [
            self.record(  # type: ignore[attr-defined]
                CommandKind.PLACE_TRIGGER,
                account=self.account(),  # type: ignore[attr-defined]
                instrument=inst,
                side=ch.pick([0, 1]),
                order_type=order_type,
                tif=ch.pick([0, 0, 1, 2]),
                flags=ch.pick([0, 0, 0, 4, 4, 1]),
                trigger_type=trigger_type,
                trigger_source=ch.pick([0, 0, 0, 1, 2]) if not ch.chance(20) else 3,
                trigger_price_ticks=value,
                price_ticks=self.price(tick),  # type: ignore[attr-defined]
                qty_lots=self.qty(step),  # type: ignore[attr-defined]
                label=ch.int(0, 5),
            )
        ]


class TriggerStreamGen(TriggerCommands, StreamGen):
    pass


class RiskTriggerStreamGen(TriggerCommands, RiskStreamGen):
    pass


@settings(max_examples=100, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_trigger_differential_random_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_trigger_config,
        generator=TriggerStreamGen,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_trigger_differential_risk_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_risk_trigger_config,
        generator=RiskTriggerStreamGen,
    )


# (seeds drawn so that each stream really places and fires triggers: the base generator's
# draws shift whenever it learns a command, as it did for the kill switch and client ids)
@pytest.mark.parametrize(("seed", "risk"), [(1, False), (2, False), (3, True), (6, True)])
def test_trigger_differential_long_seeded(seed, risk):
    """~3k commands per seed through both; the streams must really fire and cancel
    triggers (counted), or the test proves nothing."""
    ch = RandomChooser(seed)
    config = (draw_risk_trigger_config if risk else draw_trigger_config)(ch)
    gen = (RiskTriggerStreamGen if risk else TriggerStreamGen)(ch, config)
    pair = Pair(config)
    counts = {EventKind.TRIGGER_PLACED: 0, EventKind.TRIGGER_FIRED: 0}
    for events in run_seeded(ch, gen, pair, 3_000, 200):
        for kind in counts:
            counts[kind] += int(np.sum(events["kind"] == kind))
    assert not pair.stopped_early
    assert counts[EventKind.TRIGGER_PLACED] > 20, counts
    assert counts[EventKind.TRIGGER_FIRED] > 0, counts
    pair.check_replay()


def test_trigger_differential_liquidation_and_margin_at_activation():
    """A seeded risk stream (seed 27) in which an account is liquidated with a trigger order
    resting (cancelled with CANCEL_LIQUIDATION) and triggered orders fail the margin check
    at activation (TRIGGER_FIRED with INSUFFICIENT_MARGIN): both sides agree on all of it."""
    ch = RandomChooser(27)
    config = draw_risk_trigger_config(ch)
    pair = Pair(config)
    seen: dict[tuple[int, int], int] = {}
    for events in run_seeded(ch, RiskTriggerStreamGen(ch, config), pair, 3_000, 200):
        for kind, reason in zip(events["kind"].tolist(), events["reason"].tolist(), strict=True):
            seen[(kind, reason)] = seen.get((kind, reason), 0) + 1
    assert not pair.stopped_early
    assert seen.get((EventKind.TRIGGER_CANCELLED, Reason.CANCEL_LIQUIDATION), 0) >= 1, seen
    assert seen.get((EventKind.TRIGGER_FIRED, Reason.INSUFFICIENT_MARGIN), 0) >= 1, seen


def test_the_kill_switch_cancels_trigger_orders():
    """BLOCK_ACCOUNT cancels the account's untriggered and queued trigger orders with
    CANCEL_ACCOUNT_BLOCKED, after its resting orders, in placement order; another account's
    trigger stays and still fires. Kernel and reference agree event for event."""
    from derivex.core.config import EngineConfig
    from tests.reference.builders import Stream, cmd, perpetual, place

    def trigger(account, side, kind, price, qty=1):
        return cmd(CommandKind.PLACE_TRIGGER, account=account, instrument=0, side=side,
                   order_type=1, tif=1, trigger_type=kind, trigger_source=0,
                   trigger_price_ticks=price, qty_lots=qty)  # fmt: skip

    pair = Pair(EngineConfig(risk_checks=False, trigger_fire_cap=1))
    s = Stream(None, ts_ns=10)
    a, b, c = 3, 4, 5
    setup = [cmd(CommandKind.CREATE_ACCOUNT) for _ in range(3)]
    setup += [cmd(CommandKind.DEPOSIT, account=x, amount_units=10**9) for x in (a, b, c)]
    setup += [perpetual(), place(b, 0, 1, 100, 5), place(a, 0, 0, 100, 1)]  # last = 100
    pair.run(s.batch(*setup))
    placed = pair.run(
        s.batch(
            trigger(a, 1, 1, 98),  # sell stops at 98 and 97: both cross at 96
            trigger(a, 1, 1, 97),
            trigger(a, 1, 2, 110),  # a sell take
            trigger(b, 1, 1, 90),  # b's stop: not the blocked account's
            place(a, 0, 0, 95, 1),  # a resting bid
            place(b, 0, 0, 96, 3),
        )
    )
    ids = [int(e["order_id"]) for e in placed if e["kind"] == EventKind.TRIGGER_PLACED]
    # c sells into b's bid at 96: last = 96 crosses a's two stops; cap 1 fires one
    crossed = pair.run(s.batch(place(c, 0, 1, 96, 1)))
    fired = crossed[crossed["kind"] == EventKind.TRIGGER_FIRED]
    assert [int(x) for x in fired["order_id"]] == [ids[0]]
    blocked = pair.run(s.batch(cmd(CommandKind.BLOCK_ACCOUNT, account=a)))
    cancelled = blocked[blocked["kind"] == EventKind.TRIGGER_CANCELLED]
    # the queued stop (ids[1]) and the untriggered take, not b's stop
    assert [int(x) for x in cancelled["order_id"]] == [ids[1], ids[2]]
    assert [int(r) for r in cancelled["reason"]] == [Reason.CANCEL_ACCOUNT_BLOCKED] * 2
    kinds = [int(k) for k in blocked["kind"]]
    assert kinds[0] == EventKind.ACCEPTED and EventKind.CANCELLED in kinds
    assert kinds.index(EventKind.CANCELLED) < kinds.index(EventKind.TRIGGER_CANCELLED)
    assert [row[0] for row in pair.kernel.canonical()["triggers"]["orders"]] == [ids[3]]
    again = pair.run(s.batch(trigger(a, 1, 1, 50)))
    assert int(again["reason"][0]) == Reason.ACCOUNT_BLOCKED
    pair.check_replay()
