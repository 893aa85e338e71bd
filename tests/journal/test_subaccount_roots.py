"""Subaccount links and transfers in the state root (core/subaccounts.py): the incremental
root equals a full rebuild after every batch, a link changes the root (the globals leaf
commits to it) and a state without subaccounts has the globals leaf it had before they
existed."""

from __future__ import annotations

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind, command_array
from derivex.journal import full_root
from derivex.journal.leaves import globals_payload, trigger_digest
from derivex.journal.roots import StateRoots


def _batch(*rows: dict[str, int]) -> np.ndarray:
    commands = command_array(len(rows))
    for index, row in enumerate(rows):
        for name, value in row.items():
            commands[name][index] = value
    return commands


def test_incremental_root_follows_links_and_transfers() -> None:
    engine = Engine(EngineConfig(risk_checks=False))
    roots = StateRoots()
    roots.update(engine.state)
    seq = iter(range(1, 100))
    batches = [
        _batch(
            {"seq": next(seq), "kind": CommandKind.CREATE_ACCOUNT},
            {"seq": next(seq), "kind": CommandKind.DEPOSIT, "account": 3, "amount_units": 500},
        ),
        _batch({"seq": next(seq), "kind": CommandKind.CREATE_SUBACCOUNT, "account": 3}),
        _batch(
            {
                "seq": next(seq),
                "kind": CommandKind.TRANSFER,
                "account": 3,
                "to_account": 4,
                "amount_units": 200,
            },
            {
                "seq": next(seq),
                "kind": CommandKind.TRANSFER,
                "account": 4,
                "to_account": 3,
                "amount_units": 50,
            },
        ),
    ]
    seen = []
    for commands in batches:
        roots.observe(engine.process(commands))
        root = roots.update(engine.state)
        assert root == full_root(engine.state)
        seen.append(root)
    assert len(set(seen)) == 3
    # no subaccount: the globals leaf is what it was before links existed
    plain = Engine(EngineConfig(risk_checks=False))
    plain.process(batches[0])
    payload = globals_payload(plain.state)
    assert payload.endswith(trigger_digest(plain.state))
    linked = globals_payload(engine.state)
    assert len(linked) == len(payload) + 32
