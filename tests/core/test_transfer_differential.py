"""Differential tests of cross-domain transfers (core/escrow.py): the random streams of
test_differential.py and test_risk_differential.py with TRANSFER_OUT, TRANSFER_IN (new,
duplicated, out of order, beyond the window, to unknown or system accounts) and
TRANSFER_REFUND mixed in, through the kernel and the reference model; events byte-identical,
canonical states equal and invariants (conservation with escrow) after every batch.
"""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind, EventKind, Reason
from tests.core.test_differential import Pair, RandomChooser, StreamGen, run_seeded
from tests.core.test_risk_differential import RiskStreamGen, draw_risk_config
from tests.reference.builders import Stream, cmd

pytestmark = pytest.mark.nojit

K = CommandKind


class TransferMixin:
    """Adds transfer commands to a stream generator (one in five commands)."""

    ch: RandomChooser
    sent: dict[int, int]  # peer -> transfers sent (from TRANSFER_SENT events)
    refused: list[tuple[int, int, int, int, int]]  # (peer, refusal, number, account, amount)
    next_in: dict[int, int]

    def init_transfers(self) -> None:
        self.sent = {}
        self.refused = []
        self.next_in = {}

    def observe_transfers(self, events: np.ndarray) -> None:
        for ev in events:
            if int(ev["kind"]) == EventKind.TRANSFER_SENT:
                self.sent[int(ev["instrument"])] = int(ev["order_id"])
            elif int(ev["kind"]) == EventKind.TRANSFER_REFUSED:
                self.refused.append(
                    (
                        int(ev["instrument"]),
                        int(ev["price_ticks"]),
                        int(ev["order_id"]),
                        int(ev["account"]),
                        int(ev["cash_units"]),
                    )
                )

    def transfer(self) -> list[np.ndarray]:
        ch = self.ch
        peer = ch.pick([0, 1, 1, 1, 2, 2, 15, 16, 1 << 20])
        amount = ch.pick(
            [
                ch.int(1, 300),
                ch.int(300, 3_000),
                ch.int(3_000, 30_000),
                ch.int(1, 10**6),
                ch.int(10**6, 5 * 10**6),
                0,
                -3,
                1 << 62,
            ]
        )
        r = ch.int(0, 99)
        account = self.account()  # type: ignore[attr-defined]
        if r < 35:
            return [self.record(K.TRANSFER_OUT, account=account, domain=peer, amount_units=amount)]  # type: ignore[attr-defined]
        if r < 80:
            following = self.next_in.get(peer, 0) + 1
            number = ch.pick(
                [following, following, following + ch.int(1, 70), ch.int(1, following), 0,
                 1 << 63]
            )  # fmt: skip
            if number == following:
                self.next_in[peer] = following
            return [
                self.record(  # type: ignore[attr-defined]
                    K.TRANSFER_IN,
                    account=account,
                    domain=peer,
                    transfer_id=number,
                    amount_units=amount,
                )
            ]
        if self.refused and ch.chance(700):
            peer, number, original, account, amount = ch.pick(self.refused)
        else:
            number = ch.int(0, self.sent.get(peer, 0) + 2)
            original = ch.pick([number, ch.int(0, self.sent.get(peer, 0) + 2)])
        return [
            self.record(  # type: ignore[attr-defined]
                K.TRANSFER_REFUND,
                account=account,
                domain=peer,
                transfer_id=number,
                refund_of=original,
                amount_units=amount,
            )
        ]


class TransferStreamGen(TransferMixin, StreamGen):
    def __init__(self, ch, config: EngineConfig):
        super().__init__(ch, config)
        self.init_transfers()

    def observe(self, events: np.ndarray) -> None:
        super().observe(events)
        self.observe_transfers(events)

    def command(self) -> list[np.ndarray]:
        if self.ch.chance(200):
            return self.transfer()
        return super().command()


class RiskTransferStreamGen(TransferMixin, RiskStreamGen):
    def __init__(self, ch, config: EngineConfig):
        super().__init__(ch, config)
        self.init_transfers()

    def observe(self, events: np.ndarray) -> None:
        super().observe(events)
        self.observe_transfers(events)

    def command(self) -> list[np.ndarray]:
        if self.ch.chance(150):
            return self.transfer()
        return super().command()


def _count(events: np.ndarray, seen: dict[str, int]) -> None:
    for kind in ("TRANSFER_SENT", "TRANSFER_RECEIVED", "TRANSFER_REFUSED", "TRANSFER_REFUNDED"):
        seen[kind] += int(np.sum(events["kind"] == EventKind[kind]))
    for reason in ("DUPLICATE_TRANSFER", "TRANSFER_AHEAD", "INSUFFICIENT_FUNDS", "INDEX_STALE"):
        rejected = (events["kind"] == EventKind.REJECTED) & (events["reason"] == Reason[reason])
        commands = np.isin(events["command"], [60, 61, 62])
        seen[reason] += int(np.sum(rejected & commands))


def test_transfers_identical_on_fixed_stream() -> None:
    """Each outcome once: sent, received, a duplicate, one beyond the window, refused (no
    such account), refunded, a refund twice, a transfer beyond the free collateral."""
    pair = Pair(EngineConfig(risk_checks=False))
    s = Stream(None, ts_ns=10)
    events = pair.run(
        s.batch(
            cmd(K.CREATE_ACCOUNT),
            cmd(K.DEPOSIT, account=3, amount_units=1000),
            cmd(K.TRANSFER_OUT, account=3, domain=1, amount_units=400),
            cmd(K.TRANSFER_OUT, account=3, domain=1, amount_units=601),
            cmd(K.TRANSFER_IN, account=3, domain=2, transfer_id=1, amount_units=50),
            cmd(K.TRANSFER_IN, account=3, domain=2, transfer_id=1, amount_units=50),
            cmd(K.TRANSFER_IN, account=3, domain=2, transfer_id=64, amount_units=50),
            cmd(K.TRANSFER_IN, account=3, domain=2, transfer_id=63, amount_units=50),
            cmd(K.TRANSFER_IN, account=9, domain=2, transfer_id=2, amount_units=70),
            cmd(
                K.TRANSFER_REFUND, account=3, domain=1, transfer_id=1, refund_of=1, amount_units=400
            ),
            cmd(
                K.TRANSFER_REFUND, account=3, domain=1, transfer_id=1, refund_of=1, amount_units=400
            ),
        )
    )
    kinds = [EventKind(k).name for k in events["kind"]]
    reasons = [Reason(r).name for r in events["reason"][events["kind"] == EventKind.REJECTED]]
    assert kinds.count("TRANSFER_SENT") == 1
    assert kinds.count("TRANSFER_RECEIVED") == 2  # numbers 1 and 63
    assert kinds.count("TRANSFER_REFUSED") == 1
    assert kinds.count("TRANSFER_REFUNDED") == 1
    assert reasons == [
        "INSUFFICIENT_FUNDS",
        "DUPLICATE_TRANSFER",
        "TRANSFER_AHEAD",
        "DUPLICATE_TRANSFER",
    ]
    transfers = pair.kernel.canonical()["transfers"]
    # from domain 2: 1 and 2 processed (mark 2), 63 in the window (bit 60)
    assert transfers[2][5:7] == (2, 1 << 60)
    assert transfers[1][:3] == (1, 400, 400)


def test_transfer_differential_seeded() -> None:
    """Seeded streams with transfers, plain and with risk checks on (TRANSFER_OUT refused
    for a stale index; the margin boundary is in test_escrow.py): every outcome shows up,
    kernel and model agree throughout."""
    seen = dict.fromkeys(
        (
            "TRANSFER_SENT",
            "TRANSFER_RECEIVED",
            "TRANSFER_REFUSED",
            "TRANSFER_REFUNDED",
            "DUPLICATE_TRANSFER",
            "TRANSFER_AHEAD",
            "INSUFFICIENT_FUNDS",
            "INDEX_STALE",
        ),
        0,
    )
    for seed in (1, 2, 3):
        ch = RandomChooser(seed)
        config = EngineConfig(risk_checks=False)
        pair = Pair(config)
        for events in run_seeded(ch, TransferStreamGen(ch, config), pair, 1_500, 60):
            _count(events, seen)
        assert pair.commands_run() > 1_000, seed
        pair.check_replay()
    for seed in (21, 22, 23, 24):
        ch = RandomChooser(seed)
        config = draw_risk_config(ch)
        pair = Pair(config)
        for events in run_seeded(ch, RiskTransferStreamGen(ch, config), pair, 1_500, 100):
            _count(events, seen)
        assert pair.commands_run() > 1_000, seed
        pair.check_replay()
    assert all(count > 0 for count in seen.values()), seen
