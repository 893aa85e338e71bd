"""State roots and proofs: the Merkle tree against a from-scratch build, the incremental root
(dirty leaves from events) against a full rebuild after every command of varied sessions,
and account proofs that verify and fail under any tampering."""

from __future__ import annotations

import copy
import doctest
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind, command_array
from derivex.exchange import Exchange, Quote
from derivex.journal import Journal, full_root, merkle, prove, recover, verify, verify_proof
from derivex.journal.merkle import MerkleTree, fold_path, leaf_hash

from .conftest import START_NS, StepClock

VERIFY_SOURCE = Path(__file__).resolve().parents[2] / "src/derivex/journal/verify.py"


@pytest.mark.parametrize("module", [merkle, verify])
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_incremental_tree_equals_full_build(seed) -> None:
    rng = np.random.default_rng(seed)
    tree, leaves = MerkleTree(), []
    for _ in range(60):
        grow = int(rng.integers(0, 9))
        indices = sorted(
            set(rng.integers(0, len(leaves) + grow, 5).tolist())
            | set(range(len(leaves), len(leaves) + grow))
        )
        leaves.extend([b""] * grow)
        values = [leaf_hash(rng.bytes(8)) for _ in indices]
        for index, value in zip(indices, values, strict=True):
            leaves[index] = value
        tree.update(indices, values, len(leaves))
        fresh = MerkleTree()
        fresh.set_all(b"".join(leaves))
        assert tree.root == fresh.root and tree.count == fresh.count == len(leaves)
    for index in range(len(leaves)):
        assert fold_path(leaves[index], index, tree.path(index)) == tree.root
    assert len(tree.path(0)) == tree.depth == (len(leaves) - 1).bit_length()


class Session:
    """Random commands of every kind through a journaled exchange (seeded)."""

    def __init__(self, directory: Path, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.clock = StepClock()
        self.exchange = Exchange(
            EngineConfig(risk_checks=False),
            clock=self.clock,
            journal=Journal(directory, fsync="none"),
        )
        ex = self.exchange
        self.instruments = [
            ex.add_perpetual("BTC", tick_size_ticks=50, maker_fee_ppm=-100, taker_fee_ppm=500),
            ex.add_option(
                "BTC",
                START_NS + 8 * 3_600_000_000_000,
                10_000_000,
                "call",
                tick_size_ticks=5,
                min_trade_lots=10,
                maker_fee_ppm=200,
                taker_fee_ppm=300,
            ),
        ]
        self.accounts = [ex.create_account() for _ in range(5)]
        for account in self.accounts:
            ex.deposit(account, 10**12)
        self.orders: list[tuple[int, int]] = []

    def price(self, instrument: int) -> int:
        mid, tick = (10_000_000, 50) if instrument == 0 else (400_000, 5)
        return mid + int(self.rng.integers(-6, 7)) * tick

    def step(self) -> None:  # noqa: C901  one branch per kind of command: a table to read
        rng, ex = self.rng, self.exchange
        account = int(rng.choice(self.accounts))
        instrument = int(rng.choice(self.instruments))
        lots = 10 * int(rng.integers(1, 6))
        action = rng.random()
        if action < 0.40:
            result = ex.place(
                account,
                instrument,
                "buy" if rng.random() < 0.5 else "sell",
                lots,
                self.price(instrument),
                order_type="market" if rng.random() < 0.1 else "limit",
                time_in_force=str(rng.choice(["gtc", "gtc", "ioc", "fok"])),
                post_only=rng.random() < 0.15,
                reduce_only=rng.random() < 0.1,
                label=int(rng.integers(0, 1000)),
            )
            if result.accepted and result.status == "resting":
                self.orders.append((account, result.order_id))
        elif action < 0.55 and self.orders:
            owner, order = self.orders.pop(int(rng.integers(0, len(self.orders))))
            ex.cancel(owner if rng.random() < 0.9 else account, order)
        elif action < 0.65 and self.orders:
            owner, order = self.orders[int(rng.integers(0, len(self.orders)))]
            ex.amend(owner, order, self.price(instrument), lots)
        elif action < 0.72:
            legs = [
                Quote(i, self.price(i) - 200, lots, self.price(i) + 200, lots)
                for i in self.instruments
                if rng.random() < 0.7
            ]
            ex.mass_quote(account, legs)
        elif action < 0.76:
            ex.cancel_all(account, instrument if rng.random() < 0.5 else None)
        elif action < 0.82:
            ex.deposit(account, int(rng.integers(1, 10**6)))
        elif action < 0.87:
            ex.withdraw(int(rng.choice([*self.accounts, 0])), int(rng.integers(1, 10**11)))
        elif action < 0.89:
            ex.set_self_trade_prevention(
                account, str(rng.choice(["cancel_resting", "reject_incoming"]))
            )
        elif action < 0.91:
            if not ex.halt(instrument).accepted:
                ex.resume(instrument)
        elif action < 0.92:
            self.accounts.append(ex.create_account())
        elif action < 0.93:
            strike = 9_000_000 + 100_000 * len(self.instruments)  # unique name
            self.instruments.append(
                ex.add_option(
                    "BTC",
                    START_NS + 86_400_000_000_000,
                    strike,
                    "put",
                    tick_size_ticks=5,
                    min_trade_lots=10,
                )
            )
        elif action < 0.935 and len(self.instruments) > 2:
            ex.close(self.instruments[-1])
        elif action < 0.96:
            self.split_mass_quote(account, lots)
        else:
            self.clock.now_ns += int(rng.integers(0, 5_000_000))
            ex.advance_time()

    def split_mass_quote(self, account: int, lots: int) -> None:
        """A mass quote whose legs arrive in the next batch: rejected, legs orphaned."""
        head = command_array(1)
        head["kind"], head["account"], head["count"] = CommandKind.MASS_QUOTE, account, 1
        leg = command_array(1)
        leg["kind"], leg["instrument"] = CommandKind.QUOTE_LEG, 0
        leg["bid_price_ticks"], leg["bid_qty_lots"] = 9_999_000, lots
        leg["ask_price_ticks"], leg["ask_qty_lots"] = 10_001_000, lots
        self.exchange.submit(head)
        self.exchange.submit(leg)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_incremental_root_equals_full_rebuild_after_every_command(tmp_path, seed) -> None:
    session = Session(tmp_path, seed)
    ex = session.exchange
    roots = ex.journal.roots
    live = {}
    for _ in range(500):
        session.step()
        root = roots.update(ex.engine.state)
        assert root == full_root(ex.engine.state), f"seed {seed} at seq {ex.journal.last_seq}"
        live[ex.journal.last_seq] = root.hex()
    ex.check_invariants()
    ex.journal.close()
    # the replay path (staged small batches, dirty marks from process_into) agrees at every
    # batch end
    recovered = recover(tmp_path, use_snapshot=False, checkpoint_every=1)
    points = {point.seq: point.root for point in recovered.checkpoints}
    assert all(points[seq] == root for seq, root in live.items())
    assert recovered.engine.state_hash() == ex.state_hash()


@pytest.fixture(scope="module")
def proved(tmp_path_factory):
    session = Session(tmp_path_factory.mktemp("proofs"), 5)
    for _ in range(300):
        session.step()
    ex = session.exchange
    account = max(session.accounts, key=lambda a: len(ex.positions(a)))
    proof = ex.prove(account)
    return ex, account, json.loads(json.dumps(proof))


def test_proof_verifies_and_matches_every_source(proved) -> None:
    ex, account, proof = proved
    assert verify_proof(proof, proof["root"])
    assert verify_proof(proof, bytes.fromhex(proof["root"]))
    assert proof["seq"] == ex.journal.last_seq and proof["index"] == account
    assert proof["account"]["balance_units"] == ex.balance(account)
    assert [p["qty_lots"] for p in proof["account"]["positions"] if p["qty_lots"]] == [
        p.qty_lots for p in ex.positions(account)
    ]
    assert proof["root"] == full_root(ex.engine.state).hex()
    assert prove(ex.engine.state, account, seq=proof["seq"]) == proof  # full build, same
    assert len(proof["siblings"]) == (proof["accounts"] - 1).bit_length()
    for other in range(proof["accounts"]):
        assert verify_proof(prove(ex, other), proof["root"])
    with pytest.raises(KeyError):
        prove(ex, proof["accounts"])


def tampered(proof: dict, change) -> dict:
    forged = copy.deepcopy(proof)
    change(forged)
    return forged


def _bump_leaf_balance(p: dict) -> None:
    leaf = bytearray.fromhex(p["leaf"])
    leaf[13] ^= 1  # inside balance_units (offset 13..21)
    p["leaf"] = leaf.hex()


def _sibling(p: dict) -> None:
    p["siblings"][1] = ("00" if p["siblings"][1][:2] != "00" else "11") + p["siblings"][1][2:]


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["account"].update(balance_units=p["account"]["balance_units"] + 1),
        _bump_leaf_balance,
        lambda p: (
            _bump_leaf_balance(p),
            p["account"].update(balance_units=p["account"]["balance_units"] ^ (1 << 8)),
        ),
        lambda p: p["account"]["positions"][0].update(
            qty_lots=p["account"]["positions"][0]["qty_lots"] + 1
        ),
        lambda p: p.update(index=p["index"] + 1),
        lambda p: p.update(index=p["index"] ^ 1, leaf=p["leaf"]),
        _sibling,
        lambda p: p["siblings"].pop(),
        lambda p: p.update(accounts=p["accounts"] * 2),
        lambda p: p.update(instruments_root="ab" * 32),
        lambda p: p.update(globals_hash="cd" * 32),
        lambda p: p.update(root="ef" * 32),
        lambda p: p.update(format="derivex-account-proof-v0"),
        lambda p: p.pop("leaf"),
    ],
    ids=[
        "balance field",
        "leaf bytes",
        "leaf and field together",
        "position",
        "index",
        "index neighbour",
        "sibling",
        "short path",
        "leaf count",
        "instruments root",
        "globals",
        "root in proof",
        "format",
        "missing leaf",
    ],
)
def test_tampered_proof_fails(proved, change) -> None:
    _, _, proof = proved
    assert verify_proof(proof, proof["root"])
    assert not verify_proof(tampered(proof, change), proof["root"])


def test_proof_fails_against_another_root(proved) -> None:
    ex, account, proof = proved
    assert not verify_proof(proof, "00" * 32)
    ex.deposit(account, 1)
    later = ex.prove(account)
    assert later["root"] != proof["root"]
    assert not verify_proof(proof, later["root"]) and verify_proof(later, later["root"])


def test_verifier_needs_only_the_standard_library(proved) -> None:
    _, _, proof = proved
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('v', {str(VERIFY_SOURCE)!r})\n"
        "v = importlib.util.module_from_spec(spec); spec.loader.exec_module(v)\n"
        "proof = json.loads(sys.stdin.read())\n"
        "bad = dict(proof, index=proof['index'] + 1)\n"
        "print(v.verify_proof(proof, proof['root']), v.verify_proof(bad, proof['root']),\n"
        "      'numpy' in sys.modules, 'derivex' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(proof),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.split() == ["True", "False", "False", "False"]
