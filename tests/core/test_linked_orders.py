"""Linked orders (OTO, OCO, OTOCO with the three fill conditions; docs/conditional-orders.md,
"Linked orders"): worked examples and rejections run through the kernel and the reference
model together (``Pair``: events byte-identical, ``canonical()`` equal and both sides'
invariants after every batch), then random streams that mix PLACE_LINKED groups of every
type and condition into the trigger streams (matching and risk: liquidation with groups
resting).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind as K
from derivex.core.records import EventKind, FillCondition, LinkType, Reason, command_array
from tests.core.test_differential import HypothesisChooser, Pair, RandomChooser, run_seeded
from tests.core.test_trigger_differential import (
    SUPPRESS,
    RiskTriggerStreamGen,
    TriggerStreamGen,
    draw_risk_trigger_config,
    draw_trigger_config,
)
from tests.reference.builders import Stream, cmd, perpetual, place

pytestmark = pytest.mark.nojit

A, B, C = 3, 4, 5
STOP, TAKE, TRAILING = 1, 2, 3
BUY, SELL = 0, 1


def trigger(kind, side, trigger_type, price, qty, limit=0, account=A):
    return cmd(kind, account=account, instrument=0, side=side, order_type=0 if limit else 1,
               tif=0 if limit else 1, trigger_type=trigger_type, trigger_source=0,
               trigger_price_ticks=price, price_ticks=limit, qty_lots=qty)  # fmt: skip


def leg(side, trigger_type, price, qty, limit=0):
    return trigger(K.LINKED_TRIGGER, side, trigger_type, price, qty, limit)


def primary(side, price, qty, account=A):
    return cmd(K.LINKED_ORDER, account=account, instrument=0, side=side, order_type=0,
               price_ticks=price, qty_lots=qty)  # fmt: skip


def linked(link_type, fill, *legs, account=A):
    header = cmd(K.PLACE_LINKED, account=account, link_type=link_type, fill_condition=fill,
                 count=len(legs))  # fmt: skip
    return [header, *legs]


def venue(step=1):
    pair = Pair(EngineConfig(risk_checks=False))
    s = Stream(None, ts_ns=10)
    setup = [cmd(K.CREATE_ACCOUNT) for _ in range(3)]
    setup += [cmd(K.DEPOSIT, account=x, amount_units=10**12) for x in (A, B, C)]
    setup += [perpetual(min_trade=step)]
    pair.run(s.batch(*setup))
    return pair, s


def of(events, kind):
    return events[events["kind"] == kind]


def ids(events, kind):
    return [int(x) for x in of(events, kind)["order_id"]]


def reasons(events, kind):
    return [Reason(int(r)) for r in of(events, kind)["reason"]]


def live_triggers(pair):
    return [row[0] for row in pair.kernel.canonical()["triggers"]["orders"]]


def test_oco_bracket_around_a_position():
    """A long of 4 gets a take-profit at 110 and a stop-loss at 95 as one OCO: the rally to
    110 fires the take, whose firing cancels the stop (OCO_OTHER_CLOSED); the position is
    closed and nothing is left."""
    pair, s = venue()
    pair.run(s.batch(place(B, 0, SELL, 100, 4), place(A, 0, BUY, 100, 4)))  # A long 4
    placed = pair.run(
        s.batch(
            *linked(
                LinkType.OCO,
                FillCondition.FIRST_HIT,
                leg(SELL, TAKE, 110, 4),
                leg(SELL, STOP, 95, 4),
            )
        )
    )
    take, stop = ids(placed, EventKind.TRIGGER_PLACED)
    links = of(placed, EventKind.ORDER_LINKED)
    assert [int(x) for x in links["b"]] == [stop, take]  # each names the other
    assert [int(x) for x in links["command"]] == [K.PLACE_LINKED] * 2
    fired = pair.run(s.batch(place(C, 0, BUY, 110, 4), place(B, 0, SELL, 110, 1)))
    assert ids(fired, EventKind.TRIGGER_FIRED) == [take]
    assert ids(fired, EventKind.TRIGGER_CANCELLED) == [stop]
    assert reasons(fired, EventKind.TRIGGER_CANCELLED) == [Reason.OCO_OTHER_CLOSED]
    assert live_triggers(pair) == []
    pair.check_replay()


@pytest.mark.parametrize("fill", list(FillCondition))
def test_otoco_entry_with_its_bracket(fill):
    """A buy of 6 at 100 with a take at 110 and a stop at 95, both held until the entry
    fills. 4 fill at once, 2 later: first_hit places both brackets whole on the first fill,
    incremental 4 then 6 lots, complete_fill only once the entry is done. The fall to 95
    fires the stop and cancels the take whatever the condition (an OTOCO bracket is
    one-cancels-other on the first firing)."""
    pair, s = venue()
    pair.run(s.batch(place(B, 0, SELL, 100, 4)))
    placed = pair.run(
        s.batch(
            *linked(
                LinkType.OTOCO,
                fill,
                primary(BUY, 100, 6),
                leg(SELL, TAKE, 110, 6),
                leg(SELL, STOP, 95, 6),
            )
        )
    )
    entry = int(of(placed, EventKind.ACCEPTED)["order_id"][0])
    take, stop = ids(placed, EventKind.TRIGGER_PLACED)
    assert [int(x) for x in of(placed, EventKind.ORDER_LINKED)["a"]] == [entry, entry]
    first = of(placed, EventKind.LINK_ACTIVATED)
    expected_first = {FillCondition.FIRST_HIT: [6, 6], FillCondition.INCREMENTAL: [4, 4]}
    assert [int(q) for q in first["qty_lots"]] == expected_first.get(fill, [])
    rest = pair.run(s.batch(place(C, 0, SELL, 100, 2)))
    later = [int(q) for q in of(rest, EventKind.LINK_ACTIVATED)["qty_lots"]]
    assert later == ([] if fill == FillCondition.FIRST_HIT else [6, 6])
    assert sorted(live_triggers(pair)) == sorted([take, stop])
    crash = pair.run(s.batch(place(B, 0, BUY, 95, 9), place(C, 0, SELL, 95, 1)))
    assert ids(crash, EventKind.TRIGGER_FIRED) == [stop]
    assert ids(crash, EventKind.TRIGGER_CANCELLED) == [take]
    assert reasons(crash, EventKind.TRIGGER_CANCELLED) == [Reason.OCO_OTHER_CLOSED]
    pair.check_replay()


def test_oto_primary_cancelled_before_a_fill_cancels_its_secondaries():
    pair, s = venue()
    placed = pair.run(
        s.batch(
            *linked(
                LinkType.OTO,
                FillCondition.FIRST_HIT,
                primary(BUY, 100, 2),
                leg(SELL, STOP, 90, 2),
                leg(SELL, TAKE, 120, 2),
            )
        )
    )
    entry = int(of(placed, EventKind.ACCEPTED)["order_id"][0])
    held = ids(placed, EventKind.TRIGGER_PLACED)
    gone = pair.run(s.batch(cmd(K.CANCEL_ORDER, account=A, order_id=entry)))
    assert ids(gone, EventKind.TRIGGER_CANCELLED) == held
    assert reasons(gone, EventKind.TRIGGER_CANCELLED) == [Reason.OTO_PRIMARY_CLOSED] * 2
    assert live_triggers(pair) == []


def test_complete_fill_places_after_a_partial_fill_once_the_primary_is_gone():
    pair, s = venue()
    pair.run(s.batch(place(B, 0, SELL, 100, 1)))
    placed = pair.run(
        s.batch(
            *linked(
                LinkType.OTO,
                FillCondition.COMPLETE_FILL,
                primary(BUY, 100, 3),
                leg(SELL, STOP, 90, 3),
            )
        )
    )
    (stop,) = live_triggers(pair)
    entry = int(of(placed, EventKind.ACCEPTED)["order_id"][0])
    assert ids(placed, EventKind.LINK_ACTIVATED) == []  # 1 of 3 filled: still held
    gone = pair.run(s.batch(cmd(K.CANCEL_ORDER, account=A, order_id=entry)))
    assert ids(gone, EventKind.LINK_ACTIVATED) == [stop]  # placed whole after 1 of 3 filled
    assert int(of(gone, EventKind.LINK_ACTIVATED)["qty_lots"][0]) == 3


def test_oco_incremental_reduces_the_other_leg_pro_rata():
    """OCO of a take-limit 4 at 110 and a stop 4 at 90, incremental: the take fires, its
    limit order fills 1 of 4 then rests; the stop shrinks to 3 (LINK_REDUCED); the rest of
    the fill cancels it."""
    pair, s = venue()
    pair.run(s.batch(place(B, 0, SELL, 100, 4), place(A, 0, BUY, 100, 4)))
    pair.run(
        s.batch(
            *linked(
                LinkType.OCO,
                FillCondition.INCREMENTAL,
                leg(SELL, TAKE, 110, 4, 110),
                leg(SELL, STOP, 90, 4),
            )
        )
    )
    take, stop = live_triggers(pair)
    fired = pair.run(s.batch(place(C, 0, BUY, 110, 1), place(B, 0, SELL, 110, 1)))
    assert ids(fired, EventKind.TRIGGER_FIRED) == [take]
    fills = pair.run(s.batch(place(C, 0, BUY, 110, 1)))
    reduced = of(fills, EventKind.LINK_REDUCED)
    assert ids(fills, EventKind.LINK_REDUCED) == [stop] and int(reduced["qty_lots"][0]) == 3
    done = pair.run(s.batch(place(C, 0, BUY, 110, 3)))
    assert reasons(done, EventKind.TRIGGER_CANCELLED) == [Reason.OCO_OTHER_CLOSED]
    assert live_triggers(pair) == []
    pair.check_replay()


def test_incremental_rounds_down_to_the_lot_step():
    pair, s = venue(step=10)
    pair.run(s.batch(place(B, 0, SELL, 100, 30)))
    placed = pair.run(
        s.batch(
            *linked(
                LinkType.OTO,
                FillCondition.INCREMENTAL,
                primary(BUY, 100, 70),
                leg(SELL, STOP, 90, 50),
            )
        )
    )
    # 30 of 70 filled: 50 * 30 / 70 = 21.4 -> 20 lots
    assert [int(q) for q in of(placed, EventKind.LINK_ACTIVATED)["qty_lots"]] == [20]


def test_bad_groups_are_rejected_whole():
    pair, s = venue()
    cases = [
        linked(9, 0, primary(BUY, 100, 1), leg(SELL, STOP, 90, 1)),  # link type
        linked(LinkType.OTO, 7, primary(BUY, 100, 1), leg(SELL, STOP, 90, 1)),  # fill
        linked(LinkType.OCO, 0, primary(BUY, 100, 1), leg(SELL, STOP, 90, 1)),  # plain in OCO
        linked(LinkType.OTOCO, 0, primary(BUY, 100, 1), leg(SELL, STOP, 90, 1)),  # one leg
        linked(LinkType.OTO, 0, primary(BUY, 100, 1), primary(SELL, 101, 1)),  # plain leg 2
        linked(LinkType.OTO, 0, primary(BUY, 100, 1), leg(SELL, STOP, 90, 1), account=B),
        [cmd(K.PLACE_LINKED, account=A, link_type=1, count=3), primary(BUY, 100, 1)],
    ]
    for records in cases:
        events = pair.run(s.batch(*records))
        assert [int(k) for k in events["kind"]] == [EventKind.REJECTED], records
        assert int(events["reason"][0]) == Reason.BAD_LINK
    orphan = pair.run(s.batch(leg(SELL, STOP, 90, 1)))
    assert int(orphan["reason"][0]) == Reason.ORPHAN_LEG
    # a leg that PLACE_TRIGGER would refuse: the header is rejected naming the leg
    pair.run(s.batch(place(B, 0, SELL, 100, 1), place(C, 0, BUY, 100, 1)))  # last = 100
    fires = pair.run(
        s.batch(*linked(LinkType.OTO, 0, primary(BUY, 99, 1), leg(SELL, STOP, 101, 1)))
    )
    assert int(fires["reason"][0]) == Reason.TRIGGER_WOULD_FIRE and int(fires["leg"][0]) == 2
    assert live_triggers(pair) == [] and not pair.model.accounts[A].orders


def test_groups_count_against_the_open_order_cap():
    pair = Pair(EngineConfig(risk_checks=False, max_open_orders_per_account=2))
    s = Stream(None, ts_ns=10)
    pair.run(s.batch(cmd(K.CREATE_ACCOUNT), cmd(K.DEPOSIT, account=A, amount_units=10**9),
                     perpetual()))  # fmt: skip
    events = pair.run(
        s.batch(
            *linked(
                LinkType.OTOCO,
                0,
                primary(BUY, 100, 1),
                leg(SELL, STOP, 90, 1),
                leg(SELL, TAKE, 110, 1),
            )
        )
    )
    assert int(events["reason"][0]) == Reason.ACCOUNT_ORDER_LIMIT


def test_the_kill_switch_and_instrument_close_clear_groups():
    pair, s = venue()
    pair.run(
        s.batch(
            *linked(
                LinkType.OTOCO,
                0,
                primary(BUY, 100, 1),
                leg(SELL, STOP, 90, 1),
                leg(SELL, TAKE, 110, 1),
            )
        )
    )
    blocked = pair.run(s.batch(cmd(K.BLOCK_ACCOUNT, account=A)))
    assert set(reasons(blocked, EventKind.TRIGGER_CANCELLED)) == {Reason.CANCEL_ACCOUNT_BLOCKED}
    assert live_triggers(pair) == []
    pair.run(s.batch(cmd(K.UNBLOCK_ACCOUNT, account=A)))
    pair.run(s.batch(*linked(LinkType.OCO, 0, leg(SELL, STOP, 90, 1), leg(SELL, TAKE, 110, 1))))
    closed = pair.run(s.batch(cmd(K.CLOSE_INSTRUMENT, instrument=0)))
    assert reasons(closed, EventKind.TRIGGER_CANCELLED) == [Reason.CANCEL_INSTRUMENT_CLOSED] * 2
    pair.check_replay()


def test_liquidation_clears_a_group():
    """A leveraged long with an OCO bracket (reduce-only take 110,000 and stop 95,000 on the
    last price): the index falls 1.6%, the account is liquidated and both legs leave with
    CANCEL_LIQUIDATION before the link pass could act on them."""
    from tests.core.test_lifecycle import index, leveraged_long
    from tests.core.test_lifecycle import venue as lifecycle_venue

    ex, clock, perp, dealer = lifecycle_venue()
    trader = leveraged_long(ex, perp, dealer)
    ex.place(dealer, perp, "buy", 100, 9_830_000)
    legs = [trigger(K.LINKED_TRIGGER, SELL, kind, price, 40, account=trader)
            for kind, price in ((TAKE, 11_000_000), (STOP, 9_500_000))]  # fmt: skip
    for record in legs:
        record["instrument"] = perp
        record["flags"] = 4  # reduce-only
    group = linked(LinkType.OCO, 0, *legs, account=trader)
    records = command_array(len(group))
    for k, record in enumerate(group):
        records[k] = record
    placed = ex.submit(records)
    members = ids(placed, EventKind.TRIGGER_PLACED)
    assert len(members) == 2
    events = index(ex, clock, 9_840_000)
    assert ids(events, EventKind.TRIGGER_CANCELLED) == members
    assert reasons(events, EventKind.TRIGGER_CANCELLED) == [Reason.CANCEL_LIQUIDATION] * 2
    assert ex.trigger_orders() == []
    ex.check_invariants()


def amend(order_id, qty, trigger, limit=0, account=A):
    return cmd(K.AMEND_TRIGGER, account=account, order_id=order_id, qty_lots=qty,
               price_ticks=limit, new_trigger_ticks=trigger)  # fmt: skip


def test_amend_an_untriggered_trigger_order():
    """AMEND_TRIGGER changes quantity, limit and trigger price in place (same id, same time
    priority), refuses a price that would fire at once and a trigger that is queued or in a
    group; a trailing order's new offset applies from the best price seen so far."""
    pair, s = venue()
    pair.run(s.batch(place(B, 0, SELL, 100, 1), place(C, 0, BUY, 100, 1)))  # last = 100
    placed = pair.run(
        s.batch(
            trigger(K.PLACE_TRIGGER, SELL, STOP, 90, 2, limit=89),
            trigger(K.PLACE_TRIGGER, SELL, TRAILING, 5, 1),
        )
    )
    stop, trail = ids(placed, EventKind.TRIGGER_PLACED)
    edited = pair.run(s.batch(amend(stop, 3, 95, limit=94)))
    assert [int(k) for k in edited["kind"]] == [EventKind.ACCEPTED, EventKind.TRIGGER_AMENDED]
    assert int(edited["price_ticks"][1]) == 95 and int(edited["qty_lots"][1]) == 3
    assert int(edited["a"][1]) == 94 and live_triggers(pair)[0] == stop
    refused = pair.run(
        s.batch(amend(stop, 3, 100, 99), amend(stop, 3, 95, 94, account=B), amend(trail, 1, 0))
    )
    assert [Reason(int(r)) for r in refused["reason"]] == [
        Reason.TRIGGER_WOULD_FIRE,
        Reason.NOT_ORDER_OWNER,
        Reason.PRICE_NOT_POSITIVE,
    ]
    pair.run(s.batch(place(B, 0, SELL, 104, 1), place(C, 0, BUY, 104, 1)))  # best seen 104
    trailing = pair.run(s.batch(amend(trail, 1, 2)))
    assert int(trailing["price_ticks"][1]) == 102  # 104 - 2
    fired = pair.run(s.batch(place(B, 0, BUY, 95, 5), place(C, 0, SELL, 95, 1)))
    assert sorted(ids(fired, EventKind.TRIGGER_FIRED)) == sorted([stop, trail])
    grouped = pair.run(
        s.batch(*linked(LinkType.OCO, 0, leg(SELL, STOP, 80, 1), leg(SELL, TAKE, 120, 1)))
    )
    member = ids(grouped, EventKind.TRIGGER_PLACED)[0]
    assert int(pair.run(s.batch(amend(member, 1, 81)))["reason"][0]) == (
        Reason.TRIGGER_NOT_EDITABLE
    )
    pair.check_replay()


# ------------------------------------------------------------------ random streams


class LinkedCommands:
    """Mixed into a trigger stream generator: PLACE_LINKED groups of every type and fill
    condition (and malformed ones), on the accounts and instruments of the stream."""

    linked_share = 150  # per mille of commands

    def command(self) -> list[np.ndarray]:
        ch = self.ch  # type: ignore[attr-defined]
        if ch.chance(40):
            return [self._amend_trigger()]
        if not ch.chance(self.linked_share):
            return super().command()  # type: ignore[misc]
        link_type = ch.pick([1, 1, 2, 2, 3, 3, 3]) if not ch.chance(20) else ch.pick([0, 4])
        fill = ch.pick([0, 1, 2]) if not ch.chance(20) else 3
        account = self.account()  # type: ignore[attr-defined]
        inst, tick, step = self.instrument()  # type: ignore[attr-defined]
        legs = []
        count = {1: ch.pick([2, 2, 3]), 2: 2, 3: 3}.get(link_type, 2)
        for j in range(count):
            plain = j == 0 and link_type != 2 and ch.chance(700)
            side = ch.pick([0, 1])
            fields = dict(
                account=account if not ch.chance(15) else self.account(),  # type: ignore[attr-defined]
                instrument=inst,
                side=side,
                tif=ch.pick([0, 0, 1]),
                qty_lots=self.qty(step),  # type: ignore[attr-defined]
                price_ticks=self.price(tick),  # type: ignore[attr-defined]
                label=ch.int(0, 3),
            )
            if plain:
                legs.append(self.record(K.LINKED_ORDER, order_type=ch.pick([0, 0, 1]), **fields))  # type: ignore[attr-defined]
                continue
            trigger_type = ch.pick([1, 1, 2, 2, 3])
            order_type = 1 if trigger_type == 3 or ch.chance(500) else 0
            value = tick * ch.int(90, 110) if trigger_type != 3 else tick * ch.int(1, 8)
            legs.append(
                self.record(  # type: ignore[attr-defined]
                    K.LINKED_TRIGGER,
                    order_type=order_type,
                    trigger_type=trigger_type,
                    trigger_source=ch.pick([0, 0, 0, 1, 2]),
                    trigger_price_ticks=value,
                    flags=ch.pick([0, 0, 4]),
                    **fields,
                )
            )
        if ch.chance(20):
            legs = legs[:-1]  # a header whose legs are short
        header = self.record(  # type: ignore[attr-defined]
            K.PLACE_LINKED, account=account, link_type=link_type, fill_condition=fill,
            count=count,
        )  # fmt: skip
        return [header, *legs]

    def _amend_trigger(self) -> np.ndarray:
        ch = self.ch  # type: ignore[attr-defined]
        oid = self.order_id()  # type: ignore[attr-defined]
        _inst, tick, step = self.instrument()  # type: ignore[attr-defined]
        value = tick * ch.int(90, 110) if ch.chance(700) else tick * ch.int(1, 8)
        return self.record(  # type: ignore[attr-defined]
            K.AMEND_TRIGGER,
            account=self.order_owner.get(oid, self.account()),  # type: ignore[attr-defined]
            order_id=oid,
            price_ticks=self.price(tick),  # type: ignore[attr-defined]
            qty_lots=self.qty(step),  # type: ignore[attr-defined]
            new_trigger_ticks=value,
        )


class LinkedStreamGen(LinkedCommands, TriggerStreamGen):
    pass


class RiskLinkedStreamGen(LinkedCommands, RiskTriggerStreamGen):
    pass


@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_linked_differential_random_streams(data):
    from tests.core.test_differential import run_stream

    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_trigger_config,
        generator=LinkedStreamGen,
    )


# (seeds drawn so that each stream links, activates and cancels legs; liquidation with a
# group resting: test_liquidation_clears_a_group)
@pytest.mark.parametrize(("seed", "risk"), [(3, False), (13, False), (36, True), (22, True)])
def test_linked_differential_long_seeded(seed, risk):
    """~2k commands per seed through both; the streams must really link, activate and
    cancel legs (counted), or the test proves nothing."""
    ch = RandomChooser(seed)
    config = (draw_risk_trigger_config if risk else draw_trigger_config)(ch)
    gen = (RiskLinkedStreamGen if risk else LinkedStreamGen)(ch, config)
    pair = Pair(config)
    seen: dict[tuple[int, int], int] = {}
    for events in run_seeded(ch, gen, pair, 2_000, 150):
        for kind, reason in zip(events["kind"].tolist(), events["reason"].tolist(), strict=True):
            seen[(kind, reason)] = seen.get((kind, reason), 0) + 1
    assert not pair.stopped_early
    assert seen.get((EventKind.ORDER_LINKED, 0), 0) > 5, seen
    assert seen.get((EventKind.LINK_ACTIVATED, 0), 0) > 0, seen
    linked_cancels = [
        (EventKind.TRIGGER_CANCELLED, r)
        for r in (Reason.OCO_OTHER_CLOSED, Reason.OTO_PRIMARY_CLOSED)
    ]
    assert sum(seen.get(key, 0) for key in linked_cancels) > 0, seen
    pair.check_replay()


def test_trigger_rows_of_an_older_snapshot_are_widened():
    """A state whose trigger rows lack the link columns (a snapshot written before them)
    loads zero-padded: the same state hash, and it runs on exactly as the original does."""
    from derivex.core.engine import Engine
    from derivex.core.state import State
    from derivex.core.trigger_layout import Trig8
    from derivex.core.trigger_query import widen_trigger_rows

    pair, s = venue()
    pair.run(s.batch(place(B, 0, SELL, 100, 2), place(C, 0, BUY, 100, 2)))
    pair.run(s.batch(trigger(K.PLACE_TRIGGER, SELL, STOP, 90, 1)))
    values = pair.kernel.state._asdict()
    values["trg_i8"] = values["trg_i8"][:, : int(Trig8.LINK)].copy()
    assert widen_trigger_rows(values) and not widen_trigger_rows(values)
    old = Engine(pair.config, State(**values))
    assert old.state_hash() == pair.kernel.state_hash()
    crash = s.batch(place(B, 0, BUY, 89, 3), place(C, 0, SELL, 89, 1))
    events = pair.run(crash)
    assert len(of(events, EventKind.TRIGGER_FIRED)) == 1
    assert np.array_equal(old.process(crash).view(np.uint8), events.view(np.uint8))
    assert old.state_hash() == pair.kernel.state_hash()
