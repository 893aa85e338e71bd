"""Self-trade prevention extended to a main account's family (core/stp.py): fixed streams
through the kernel and the reference model in lockstep (events byte-identical, canonical
state equal after every batch), seeded random streams with subaccounts and FAMILY scopes
mixed in, and the setting carried by the state hash, replay and a snapshot.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derivex.core.config import EngineConfig
from derivex.core.records import (
    CommandKind,
    EventKind,
    Reason,
    SelfTradePrevention,
    SelfTradeScope,
    Side,
    TimeInForce,
)
from tests.core.test_differential import (
    HypothesisChooser,
    Pair,
    RandomChooser,
    draw_config,
    run_seeded,
    run_stream,
)
from tests.core.test_risk_differential import draw_risk_config
from tests.core.test_subaccount_differential import RiskSubaccountStreamGen, SubaccountStreamGen
from tests.reference.builders import Stream, cmd, perpetual, place

pytestmark = pytest.mark.nojit

K = CommandKind
CANCEL = int(SelfTradePrevention.CANCEL_RESTING)
REJECT = int(SelfTradePrevention.REJECT_INCOMING)
FAMILY = int(SelfTradeScope.FAMILY)
MAIN, SUB1, SUB2, OTHER = 3, 4, 5, 6
SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def _family_pair() -> tuple[Pair, Stream]:
    """A main account (3) with two subaccounts (4, 5), an unrelated account (6), all funded,
    and one perpetual (instrument 0)."""
    pair = Pair(EngineConfig(risk_checks=False))
    s = Stream(None, ts_ns=10)
    pair.run(
        s.batch(
            cmd(K.CREATE_ACCOUNT),
            cmd(K.CREATE_SUBACCOUNT, account=MAIN),
            cmd(K.CREATE_SUBACCOUNT, account=MAIN),
            cmd(K.CREATE_ACCOUNT),
            *[cmd(K.DEPOSIT, account=a, amount_units=10**9) for a in (MAIN, SUB1, SUB2, OTHER)],
            perpetual(),
        )
    )
    return pair, s


def _set(pair: Pair, s: Stream, account: int, stp: int) -> None:
    events = pair.run(s.batch(cmd(K.SET_ACCOUNT, account=account, stp=stp)))
    assert events[0]["kind"] == EventKind.ACCEPTED and int(events[0]["status"]) == stp


def _of(events: np.ndarray, kind: int) -> np.ndarray:
    return events[events["kind"] == kind]


def test_scope_account_trades_within_the_family():
    """The default scope: a subaccount's order trades against its main account's."""
    pair, s = _family_pair()
    pair.run(s.batch(place(MAIN, 0, Side.SELL, 100, 5)))
    events = pair.run(s.batch(place(SUB1, 0, Side.BUY, 100, 5)))
    fills = _of(events, EventKind.FILLED)
    assert sorted(int(a) for a in fills["account"]) == [MAIN, SUB1]
    assert not len(_of(events, EventKind.CANCELLED))


@pytest.mark.parametrize("incoming", [SUB1, MAIN])
def test_family_cancel_resting_cancels_the_members_order(incoming):
    """FAMILY | CANCEL_RESTING: the family member's resting order is cancelled
    (CANCEL_SELF_TRADE) whoever of main and subaccount comes in; matching goes on to the
    unrelated account's order behind it, and the rest of the incoming order rests."""
    resting = SUB2 if incoming == MAIN else MAIN
    pair, s = _family_pair()
    _set(pair, s, incoming, FAMILY | CANCEL)
    pair.run(s.batch(place(resting, 0, Side.SELL, 100, 5), place(OTHER, 0, Side.SELL, 100, 2)))
    events = pair.run(s.batch(place(incoming, 0, Side.BUY, 100, 5)))
    cancelled = _of(events, EventKind.CANCELLED)
    assert [(int(e["account"]), Reason(int(e["reason"]))) for e in cancelled] == [
        (resting, Reason.CANCEL_SELF_TRADE)
    ]
    fills = _of(events, EventKind.FILLED)
    assert sorted(int(a) for a in fills["account"]) == sorted([incoming, OTHER])
    assert int(pair.kernel.canonical()["books"][0]["bids"][0][1][0][2]) == 3


def test_family_reject_incoming_rejects_whole_and_changes_nothing():
    """FAMILY | REJECT_INCOMING: a crossing order reaching a sibling's order is rejected
    whole (SELF_TRADE_REJECTED), the book unchanged; an amend that would cross is refused
    the same way; without the scope the same order trades."""
    pair, s = _family_pair()
    _set(pair, s, SUB1, FAMILY | REJECT)
    pair.run(s.batch(place(SUB2, 0, Side.SELL, 100, 5), place(SUB1, 0, Side.BUY, 90, 1)))
    books = pair.kernel.canonical()["books"]
    events = pair.run(s.batch(place(SUB1, 0, Side.BUY, 100, 5)))
    assert Reason(int(events[0]["reason"])) == Reason.SELF_TRADE_REJECTED
    bid = pair.kernel.canonical()["books"][0]["bids"][0][1][0][0]
    amend = cmd(K.AMEND_ORDER, account=SUB1, order_id=bid, price_ticks=100, qty_lots=1)
    events = pair.run(s.batch(amend))
    assert Reason(int(events[0]["reason"])) == Reason.SELF_TRADE_REJECTED
    assert pair.kernel.canonical()["books"] == books
    _set(pair, s, SUB1, REJECT)
    events = pair.run(s.batch(place(SUB1, 0, Side.BUY, 100, 5)))
    assert len(_of(events, EventKind.FILLED)) == 2


def test_family_scope_belongs_to_the_incoming_owner_and_to_one_family():
    """The resting side's scope does not matter (an ACCOUNT-scope sibling trades against a
    FAMILY-scope one), an unrelated account never counts, and a FOK order counts family
    orders as not fillable (they would be cancelled)."""
    pair, s = _family_pair()
    _set(pair, s, SUB1, FAMILY | CANCEL)
    pair.run(s.batch(place(SUB1, 0, Side.SELL, 100, 2)))
    events = pair.run(s.batch(place(SUB2, 0, Side.BUY, 100, 2)))
    assert len(_of(events, EventKind.FILLED)) == 2  # SUB2 has ACCOUNT scope
    _set(pair, s, OTHER, FAMILY | REJECT)
    pair.run(s.batch(place(MAIN, 0, Side.SELL, 100, 2)))
    events = pair.run(s.batch(place(OTHER, 0, Side.BUY, 100, 2)))
    assert len(_of(events, EventKind.FILLED)) == 2  # OTHER's family is itself
    pair.run(s.batch(place(MAIN, 0, Side.SELL, 100, 2)))
    fok = place(SUB1, 0, Side.BUY, 100, 2, tif=TimeInForce.FOK)
    events = pair.run(s.batch(fok))
    assert Reason(int(events[0]["reason"])) == Reason.FOK_NOT_FILLED
    pair.check_replay()


def test_bad_settings_are_refused_and_the_setting_is_in_the_hash(tmp_path):
    """Values with bits other than the mode and the scope: BAD_STP_MODE on every command
    that carries the field. The scope changes the state hash; replay reaches it; a snapshot
    restores it (the setting lives in the account arena, no new array)."""
    from derivex.journal.snapshot import load_snapshot, restore_engine, write_snapshot

    pair, s = _family_pair()
    for value in (2, 64, 130, 255):
        for record in (
            cmd(K.CREATE_ACCOUNT, stp=value),
            cmd(K.CREATE_SUBACCOUNT, account=MAIN, stp=value),
            cmd(K.SET_ACCOUNT, account=SUB1, stp=value),
        ):
            events = pair.run(s.batch(record))
            assert Reason(int(events[0]["reason"])) == Reason.BAD_STP_MODE
    before = pair.kernel.state_hash()
    events = pair.run(s.batch(cmd(K.CREATE_SUBACCOUNT, account=MAIN, stp=FAMILY | REJECT)))
    created = _of(events, EventKind.ACCOUNT_CREATED)
    assert int(created["status"][0]) == FAMILY | REJECT
    _set(pair, s, SUB1, FAMILY)
    assert pair.kernel.state_hash() != before
    pair.check_replay()
    kernel = pair.kernel
    path = write_snapshot(tmp_path, kernel.state, kernel.config, pair.commands_run())
    restored = restore_engine(load_snapshot(path))
    assert restored.state_hash() == pair.kernel.state_hash()
    assert restored.canonical() == pair.kernel.canonical()


class FamilyScopes:
    """Mixed into a stream generator: half of the ``stp`` fields get the FAMILY bit (the
    invalid values stay invalid: 2 | 128 is still refused)."""

    def record(self, kind: int, **fields) -> np.ndarray:
        if "stp" in fields and self.ch.chance(500):  # type: ignore[attr-defined]
            fields["stp"] = int(fields["stp"]) | FAMILY
        return super().record(kind, **fields)  # type: ignore[misc]


class FamilyStreamGen(FamilyScopes, SubaccountStreamGen):
    share = 300


class RiskFamilyStreamGen(FamilyScopes, RiskSubaccountStreamGen):
    share = 300


@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_family_differential_random_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_config if data.draw(st.booleans()) else draw_risk_config,
        generator=FamilyStreamGen,
    )


@pytest.mark.parametrize(("seed", "risk"), [(1, False), (4, False), (2, True)])
def test_family_differential_long_seeded(seed, risk):
    """~3k commands per seed; the stream really cancelled a family member's order for a
    self-trade (maker and taker different accounts), else the seed checks nothing."""
    ch = RandomChooser(seed)
    config = (draw_risk_config if risk else draw_config)(ch)
    gen = (RiskFamilyStreamGen if risk else FamilyStreamGen)(ch, config)
    pair = Pair(config)
    family_cancels = 0
    for events in run_seeded(ch, gen, pair, 3_000, 200):
        takers = {int(e["seq"]): int(e["account"]) for e in _of(events, EventKind.ACCEPTED)}
        for e in _of(events, EventKind.CANCELLED):
            taker = takers.get(int(e["seq"]))
            if e["reason"] == Reason.CANCEL_SELF_TRADE and taker not in (None, int(e["account"])):
                family_cancels += 1
    assert not pair.stopped_early
    assert family_cancels > 0
    pair.check_replay()
