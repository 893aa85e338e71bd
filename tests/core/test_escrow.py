"""Cross-domain transfers in one engine (core/escrow.py): TRANSFER_OUT refused at the
margin boundary exactly where a withdrawal is, the transfer table in the state hash, the
state root and snapshots, and conservation with escrow."""

from __future__ import annotations

from pathlib import Path

import pytest

from derivex.core import query
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, EventKind, Reason, command_array
from derivex.journal import full_root, load_snapshot, restore_engine, write_snapshot
from tests.core.test_risk import USDC, Venue

pytestmark = pytest.mark.nojit

K = CommandKind


def _transfer(kind: int, account: int, domain: int, amount: int, number: int = 0):
    records = command_array(1)
    records["kind"] = kind
    records["account"] = account
    records["domain"] = domain
    records["amount_units"] = amount
    records["transfer_id"] = number
    return records


def test_transfer_out_is_refused_at_the_margin_boundary_like_a_withdrawal() -> None:
    v = Venue()
    mark = v.ex.mark(v.perp)
    price = mark // 50 * 50
    probe = v.account(10**6 * USDC)
    assert v.ex.place(probe, v.perp, "buy", 10, price).accepted
    need = v.im(probe)
    account = v.account(need)
    assert v.ex.place(account, v.perp, "buy", 10, price).accepted
    assert v.ex.withdraw(account, 1).reason == Reason.INSUFFICIENT_MARGIN
    events = v.ex.submit(_transfer(K.TRANSFER_OUT, account, 1, 1))
    assert events["reason"][0] == Reason.INSUFFICIENT_MARGIN
    assert query.transfers(v.ex.engine.state) == {}  # a refused transfer leaves no trace
    assert v.ex.cancel_all(account).accepted
    events = v.ex.submit(_transfer(K.TRANSFER_OUT, account, 1, need))
    sent = events[events["kind"] == EventKind.TRANSFER_SENT]
    assert len(sent) == 1 and int(sent["order_id"][0]) == 1
    assert int(sent["cash_units"][0]) == -need and int(sent["balance_units"][0]) == 0
    assert query.escrow(v.ex.engine.state) == (need, 0)
    v.ex.engine.check_invariants()  # conservation counts the escrow


def _engine_with_transfers() -> tuple[Engine, list]:
    engine = Engine()
    setup = command_array(2)
    setup["kind"] = [K.CREATE_ACCOUNT, K.DEPOSIT]
    setup["account"][1] = 3
    setup["amount_units"][1] = 1_000
    batches = [
        setup,
        _transfer(K.TRANSFER_OUT, 3, 1, 300),
        _transfer(K.TRANSFER_IN, 3, 2, 50, 1),
        _transfer(K.TRANSFER_IN, 3, 2, 70, 3),
    ]
    seq = 0
    for batch in batches:
        batch["seq"] = range(seq + 1, seq + 1 + len(batch))
        seq += len(batch)
    return engine, batches


def test_the_transfer_table_is_in_the_hash_the_root_and_snapshots(tmp_path: Path) -> None:
    engine, batches = _engine_with_transfers()
    engine.process(batches[0])
    hash_before, root_before = engine.state_hash(), full_root(engine.state)
    assert "transfers" not in engine.canonical()  # no transfer yet: old hashes hold
    roots = []
    for batch in batches[1:]:
        engine.process(batch)
        roots.append(full_root(engine.state))
        engine.check_invariants()
    assert len({root_before, *roots}) == 4  # every transfer moves the root
    assert engine.state_hash() != hash_before
    table = query.transfers(engine.state)
    assert table[1]["out_count"] == 1 and table[1]["out_units"] == 300
    assert table[2]["in_mark"] == 1 and table[2]["in_window"] == 0b10  # 3 ahead of 2
    assert query.transfer_processed(engine.state, 2, 3)
    assert not query.transfer_processed(engine.state, 2, 2)
    assert query.escrow(engine.state) == (300, 120)
    path = write_snapshot(tmp_path, engine.state, engine.config, 5, root=full_root(engine.state))
    restored = restore_engine(load_snapshot(path))
    assert restored.state_hash() == engine.state_hash()
    assert full_root(restored.state) == full_root(engine.state)
    # the duplicate is refused on the restored engine too, and changes nothing
    again = _transfer(K.TRANSFER_IN, 3, 2, 70, 3)
    again["seq"] = 6
    events = restored.process(again)
    assert events["reason"][0] == Reason.DUPLICATE_TRANSFER
    assert query.transfers(restored.state) == table
    assert query.balance_units(restored.state, 3) == query.balance_units(engine.state, 3)
