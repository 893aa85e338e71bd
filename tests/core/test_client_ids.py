"""Client order ids in the core (``OrderFlag.CLIENT_ORDER_ID``): a cancel or an amend in
the same batch as the place names the order by its client id; the id is unique among the
account's open orders (docs/core-semantics.md). Kernel and reference model agree."""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import (
    CommandKind,
    EventKind,
    OrderFlag,
    Reason,
    command_array,
    concat_commands,
)
from tests.core.test_differential import Pair
from tests.reference.builders import Stream, cmd, perpetual, place

pytestmark = pytest.mark.nojit

CID = int(OrderFlag.CLIENT_ORDER_ID)


def by_label(kind: int, account: int, label: int, **fields: int) -> np.void:
    return cmd(kind, account=account, flags=CID, label=label, **fields)


def setup_batch(stream: Stream) -> np.ndarray:
    return stream.batch(
        cmd(CommandKind.CREATE_ACCOUNT),
        cmd(CommandKind.CREATE_ACCOUNT),
        cmd(CommandKind.DEPOSIT, account=3, amount_units=10**12),
        cmd(CommandKind.DEPOSIT, account=4, amount_units=10**12),
        perpetual(maker=0, taker=0),
    )


def run_both(*records: np.ndarray) -> tuple[np.ndarray, Engine]:
    """Run setup + ``records`` as one batch through the kernel and the reference model
    (``Pair`` compares every event and the canonical state); returns the events after the
    setup and the kernel's engine."""
    stream = Stream(None, ts_ns=10)
    setup = setup_batch(stream)
    batch = concat_commands([setup, stream.batch(*records)])
    pair = Pair(EngineConfig(risk_checks=False))
    events = pair.run(batch)
    pair.check_replay()
    return events[events["seq"] > len(setup)], pair.kernel


def test_cancel_and_amend_by_client_id_in_the_same_batch():
    events, engine = run_both(
        place(3, 0, 0, 100, 5, label=77, flags=CID),
        by_label(CommandKind.AMEND_ORDER, 3, 77, price_ticks=100, qty_lots=3),
        place(4, 0, 1, 100, 1),  # takes one lot from the amended order
        by_label(CommandKind.CANCEL_ORDER, 3, 77),
        by_label(CommandKind.CANCEL_ORDER, 3, 77),  # gone now
    )
    order_id = int(events["order_id"][0])
    amended = events[events["kind"] == EventKind.AMENDED]
    assert amended["order_id"].tolist() == [order_id] and amended["qty_lots"].tolist() == [3]
    cancelled = events[events["kind"] == EventKind.CANCELLED]
    assert cancelled["order_id"].tolist() == [order_id]
    assert cancelled["qty_lots"].tolist() == [2]  # 3 - the lot taken
    assert cancelled["label"].tolist() == [77]
    last = events[events["seq"] == events["seq"].max()]
    assert last["kind"].tolist() == [EventKind.REJECTED]
    assert last["reason"].tolist() == [Reason.UNKNOWN_ORDER]
    engine.check_invariants()


def test_client_ids_are_unique_among_open_orders_and_non_zero():
    events, _ = run_both(
        place(3, 0, 0, 100, 5, label=9, flags=CID),
        place(3, 0, 0, 99, 5, label=9, flags=CID),  # duplicate while 9 is open
        place(4, 0, 0, 99, 5, label=9, flags=CID),  # another account: its own ids
        place(3, 0, 0, 99, 5, label=0, flags=CID),  # zero is no id
        by_label(CommandKind.CANCEL_ORDER, 3, 9),
        place(3, 0, 0, 98, 5, label=9, flags=CID),  # free again once 9 is closed
        by_label(CommandKind.CANCEL_ORDER, 4, 0),  # a cancel naming id 0
    )
    firsts = [events[events["seq"] == seq][0] for seq in np.unique(events["seq"])]
    assert [(int(e["kind"]), int(e["reason"])) for e in firsts] == [
        (EventKind.ACCEPTED, 0),
        (EventKind.REJECTED, Reason.DUPLICATE_CLIENT_ORDER_ID),
        (EventKind.ACCEPTED, 0),
        (EventKind.REJECTED, Reason.BAD_CLIENT_ORDER_ID),
        (EventKind.ACCEPTED, 0),
        (EventKind.ACCEPTED, 0),
        (EventKind.REJECTED, Reason.BAD_CLIENT_ORDER_ID),
    ]


def test_an_ambiguous_label_is_rejected_not_guessed():
    """Labels placed without the flag need not be unique; naming one of two is refused."""
    events, _ = run_both(
        place(3, 0, 0, 100, 5, label=4),
        place(3, 0, 0, 99, 5, label=4),
        by_label(CommandKind.CANCEL_ORDER, 3, 4),
        place(3, 0, 0, 98, 5, label=4, flags=CID),
    )
    rejects = events[events["kind"] == EventKind.REJECTED]
    assert rejects["reason"].tolist() == [Reason.DUPLICATE_CLIENT_ORDER_ID] * 2
    assert int(np.sum(events["kind"] == EventKind.CANCELLED)) == 0


def test_an_amend_by_client_id_that_sweeps_has_event_room():
    """The engine's worst-case event count finds the target by client id too: an amend
    that crosses many resting orders never overruns the event buffer."""
    resting = [place(4, 0, 1, 100 + k, 1) for k in range(40)]
    events, _ = run_both(
        place(3, 0, 0, 50, 40, label=5, flags=CID),
        *resting,
        by_label(CommandKind.AMEND_ORDER, 3, 5, price_ticks=200, qty_lots=40),
    )
    assert int(np.sum(events["kind"] == EventKind.FILLED)) == 80


def test_command_record_names_the_fields():
    records = command_array(1)
    records["flags"] = CID
    assert int(records["flags"][0]) & OrderFlag.CLIENT_ORDER_ID
