"""Differential tests of subaccounts and transfers (core/subaccounts.py): the random streams
of the matching and the risk differential suites with CREATE_SUBACCOUNT and TRANSFER mixed
in (amounts around the balances and the limits, unknown, system, blocked, liquidating and
identical parties, transfers out of accounts with positions and orders under risk checks).
Events byte-identical and ``canonical()`` (which includes the links) equal after every
batch; both sides' invariants hold after every batch, conservation among them: the sum of
the balances equals deposits minus withdrawals, so transfers created or destroyed nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derivex.core.config import EngineConfig
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
K = CommandKind


class SubaccountCommands:
    """Mixed into a stream generator: CREATE_SUBACCOUNT and TRANSFER."""

    share = 200  # per mille of commands

    def observe(self, events: np.ndarray) -> None:
        super().observe(events)  # type: ignore[misc]
        balances = self.__dict__.setdefault("balances", {})
        for ev in events:
            if int(ev["kind"]) in (EventKind.BALANCE_CHANGED, EventKind.POSITION_CHANGED):
                balances[int(ev["account"])] = int(ev["balance_units"])

    def command(self) -> list[np.ndarray]:
        ch = self.ch  # type: ignore[attr-defined]
        if not ch.chance(self.share):
            return super().command()  # type: ignore[misc]
        if ch.chance(150):
            return [
                self.record(  # type: ignore[attr-defined]
                    K.CREATE_SUBACCOUNT,
                    account=self.account(),  # type: ignore[attr-defined]
                    stp=ch.pick([0, 0, 1, 2]),
                    margin_mode=ch.pick([0, 0, 1, 3]),
                )
            ]
        source = self.account()  # type: ignore[attr-defined]
        # the whole balance (or nearly) of an account with positions: the margin refusal
        balance = self.__dict__.get("balances", {}).get(source, 0)
        fixed = [ch.int(1, 10**6), ch.int(10**6, 6 * 10**6), 0, -5, 1 << 60, 1 << 62]
        amount = ch.pick([*fixed, balance, balance, balance // 2, balance - 1])
        return [
            self.record(  # type: ignore[attr-defined]
                K.TRANSFER,
                account=source,
                to_account=self.account(),  # type: ignore[attr-defined]
                amount_units=amount,
            )
        ]


class SubaccountStreamGen(SubaccountCommands, StreamGen):
    pass


class RiskSubaccountStreamGen(SubaccountCommands, RiskStreamGen):
    pass


@settings(max_examples=100, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_subaccount_differential_random_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_config,
        generator=SubaccountStreamGen,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_subaccount_differential_risk_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_risk_config,
        generator=RiskSubaccountStreamGen,
    )


@pytest.mark.parametrize("seed", [2, 8, 12])
def test_subaccount_differential_long_seeded(seed):
    """~3k commands per seed of the risk streams; the stream really transferred money, was
    refused for margin and created subaccounts (else the seed checks nothing: seeds drawn
    among 1-12 for that)."""
    ch = RandomChooser(seed)
    config = draw_risk_config(ch)
    pair = Pair(config)
    seen: dict[str, int] = {"moved": 0, "margin": 0, "linked": 0}
    for events in run_seeded(ch, RiskSubaccountStreamGen(ch, config), pair, 3_000, 200):
        transfers = events["command"] == K.TRANSFER
        seen["moved"] += int(np.sum(transfers & (events["kind"] == EventKind.BALANCE_CHANGED)))
        seen["margin"] += int(np.sum(transfers & (events["reason"] == Reason.INSUFFICIENT_MARGIN)))
        seen["linked"] += int(np.sum(events["kind"] == EventKind.SUBACCOUNT_LINKED))
    assert not pair.stopped_early
    assert all(count > 0 for count in seen.values()), seen
    pair.check_replay()


def test_transfer_and_links_fixed_stream():
    """Every refusal of the spec once, a transfer each way between a main account and its
    subaccount, and the events of each, through both engines."""
    from tests.reference.builders import Stream, cmd

    pair = Pair(EngineConfig(risk_checks=False))
    s = Stream(None, ts_ns=10)
    setup = s.batch(
        cmd(K.CREATE_ACCOUNT),  # 3: main
        cmd(K.CREATE_SUBACCOUNT, account=3),  # 4: its subaccount
        cmd(K.CREATE_ACCOUNT),  # 5: another main
        cmd(K.DEPOSIT, account=3, amount_units=1_000),
    )
    events = pair.run(setup)
    linked = events[events["kind"] == EventKind.SUBACCOUNT_LINKED]
    assert [(int(e["account"]), int(e["status"])) for e in linked] == [(4, 3)]
    events = pair.run(
        s.batch(
            cmd(K.TRANSFER, account=3, to_account=4, amount_units=400),
            cmd(K.TRANSFER, account=4, to_account=3, amount_units=100),
        )
    )
    moves = events[events["kind"] == EventKind.BALANCE_CHANGED]
    assert [(int(e["account"]), int(e["counterpart"]), int(e["cash_units"])) for e in moves] == [
        (3, 4, -400),
        (4, 3, 400),
        (4, 3, -100),
        (3, 4, 100),
    ]
    refused = s.batch(
        cmd(K.TRANSFER, account=99, to_account=4, amount_units=1),
        cmd(K.TRANSFER, account=1, to_account=4, amount_units=1),
        cmd(K.TRANSFER, account=3, to_account=99, amount_units=1),
        cmd(K.TRANSFER, account=3, to_account=0, amount_units=1),
        cmd(K.TRANSFER, account=3, to_account=3, amount_units=1),
        cmd(K.TRANSFER, account=3, to_account=4, amount_units=0),
        cmd(K.TRANSFER, account=3, to_account=4, amount_units=10_000),
        cmd(K.CREATE_SUBACCOUNT, account=4),
        cmd(K.CREATE_SUBACCOUNT, account=2),
        cmd(K.BLOCK_ACCOUNT, account=5),
        cmd(K.TRANSFER, account=3, to_account=5, amount_units=1),
        cmd(K.TRANSFER, account=5, to_account=3, amount_units=1),
        cmd(K.CREATE_SUBACCOUNT, account=5),
    )
    events = pair.run(refused)
    rejected = events[events["kind"] == EventKind.REJECTED]
    assert [Reason(int(r)) for r in rejected["reason"]] == [
        Reason.UNKNOWN_ACCOUNT,
        Reason.SYSTEM_ACCOUNT,
        Reason.UNKNOWN_RECIPIENT,
        Reason.SYSTEM_ACCOUNT,
        Reason.SAME_ACCOUNT,
        Reason.AMOUNT_NOT_POSITIVE,
        Reason.INSUFFICIENT_FUNDS,
        Reason.PARENT_IS_SUBACCOUNT,
        Reason.SYSTEM_ACCOUNT,
        Reason.RECIPIENT_BLOCKED,
        Reason.ACCOUNT_BLOCKED,
        Reason.ACCOUNT_BLOCKED,
    ]
    assert pair.kernel.canonical()["subaccounts"] == [(4, 3)]
    pair.check_replay()


def test_subaccount_limit():
    """A main account has at most MAX_SUBACCOUNTS subaccounts; the next is refused."""
    from derivex.core.subaccounts import MAX_SUBACCOUNTS
    from tests.reference.builders import Stream, cmd

    pair = Pair(EngineConfig(risk_checks=False))
    s = Stream(None, ts_ns=10)
    batch = s.batch(
        cmd(K.CREATE_ACCOUNT),
        *[cmd(K.CREATE_SUBACCOUNT, account=3) for _ in range(MAX_SUBACCOUNTS + 1)],
    )
    events = pair.run(batch)
    assert int(np.sum(events["kind"] == EventKind.SUBACCOUNT_LINKED)) == MAX_SUBACCOUNTS
    assert int(events["reason"][-1]) == Reason.SUBACCOUNT_LIMIT
