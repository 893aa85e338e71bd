"""The link index (core/link_index.py): derived from the trigger rows, so it must equal a
rebuild after every batch (``check_invariants``), survive pool growth and snapshot loads
with groups resting, never be trusted from a state handed in, and leave the state hash
alone. The reactions it drives are checked against the reference model (``Pair``)."""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.link_index import INDEX_COLUMNS, bucket_of, check_link_index, link_index_of
from derivex.core.records import CommandKind as K
from derivex.core.records import EventKind, FillCondition, LinkType, Reason
from derivex.core.state import State
from derivex.core.trigger_layout import Trig8
from derivex.journal.snapshot import load_snapshot, restore_engine, write_snapshot
from tests.core.test_differential import Pair
from tests.core.test_linked_orders import (
    BUY,
    SELL,
    STOP,
    TAKE,
    B,
    C,
    linked,
    of,
    primary,
    reasons,
    trigger,
)
from tests.reference.builders import Stream, cmd, perpetual, place

pytestmark = pytest.mark.nojit

GROUPS = 12  # OTOCO groups of 3 legs: 24 trigger rows, the pool starts at 4


def leg(side, trigger_type, price, qty, account):
    return trigger(K.LINKED_TRIGGER, side, trigger_type, price, qty, account=account)


def small_pool_venue() -> tuple[Pair, Stream]:
    pair = Pair(EngineConfig(risk_checks=False, initial_triggers=4))
    s = Stream(None, ts_ns=10)
    setup = [cmd(K.CREATE_ACCOUNT) for _ in range(3 + GROUPS)]
    setup += [cmd(K.DEPOSIT, account=x, amount_units=10**12) for x in range(3, 6 + GROUPS)]
    setup += [perpetual()]
    pair.run(s.batch(*setup))
    return pair, s


def rest_groups(pair: Pair, s: Stream) -> list[int]:
    """One OTOCO entry per account (buys at 90 - g, unfilled: both brackets held) and one
    OCO bracket per account (take 200 + g, stop 50 - g). Returns the entries' ids."""
    entries = []
    for g in range(GROUPS):
        account = 6 + g
        placed = pair.run(
            s.batch(
                *linked(LinkType.OTOCO, FillCondition.INCREMENTAL,
                        primary(BUY, 90 - g, 4, account=account),
                        leg(SELL, TAKE, 200 + g, 4, account), leg(SELL, STOP, 50 - g, 4, account),
                        account=account),
                *linked(LinkType.OCO, FillCondition.FIRST_HIT,
                        leg(SELL, TAKE, 200 + g, 1, account), leg(SELL, STOP, 50 - g, 1, account),
                        account=account),
            )
        )  # fmt: skip
        [entry] = [int(x) for x in of(placed, EventKind.ACCEPTED)["order_id"][:1]]
        entries.append(entry)
        pair.kernel.check_invariants()
    return entries


def test_groups_resting_across_pool_growth_react_as_the_model_does():
    """The pool grows from 4 rows to 64 with groups resting (each growth changes the bucket
    count): the index equals a rebuild after every batch, fills of the entries activate
    their brackets, a cancel of an entry cancels its held brackets, all as the model."""
    pair, s = small_pool_venue()
    entries = rest_groups(pair, s)
    rows = pair.kernel.state.trg_i8
    assert rows.shape[0] >= 4 * GROUPS > 4  # grown
    assert np.count_nonzero(rows[:, INDEX_COLUMNS]) > 0
    fills = pair.run(s.batch(place(B, 0, SELL, 90 - GROUPS // 2, 4 * (GROUPS // 2) + 2)))
    activated = of(fills, EventKind.LINK_ACTIVATED)
    assert len(activated) == 2 * (GROUPS // 2 + 1)  # the entries at 90 .. 84 filled
    pair.kernel.check_invariants()
    cancelled = pair.run(s.batch(*[cmd(K.CANCEL_ORDER, account=6 + g, instrument=0,
                                       order_id=entries[g]) for g in range(GROUPS)]))  # fmt: skip
    assert Reason.OTO_PRIMARY_CLOSED in reasons(cancelled, EventKind.TRIGGER_CANCELLED)
    pair.kernel.check_invariants()
    crash = pair.run(s.batch(place(C, 0, BUY, 40, 100), place(B, 0, SELL, 40, 100)))
    assert Reason.OCO_OTHER_CLOSED in reasons(crash, EventKind.TRIGGER_CANCELLED)
    pair.kernel.check_invariants()
    pair.check_replay()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_snapshot_with_groups_resting_loads_with_the_index_rebuilt(tmp_path, compression):
    """A snapshot taken with groups resting, loaded (mapped or decompressed), runs on
    exactly as the original: the same events byte for byte and the same state hash; the
    index columns stored in the file are not trusted (zeroed here, rebuilt on load)."""
    if compression == "zstd":
        pytest.importorskip("zstandard")
    pair, s = small_pool_venue()
    rest_groups(pair, s)
    original = pair.kernel
    values = original.state._asdict()
    values["trg_i8"] = values["trg_i8"].copy()
    values["trg_i8"][:, INDEX_COLUMNS] = 0  # as a writer that never kept the index would
    path = write_snapshot(tmp_path, State(**values), original.config, 1, compression=compression)
    restored = restore_engine(load_snapshot(path))
    check_link_index(restored.state.trg_i8)
    assert restored.state_hash() == original.state_hash()
    follow = s.batch(
        place(B, 0, SELL, 85, 30), place(C, 0, BUY, 45, 200), place(B, 0, SELL, 45, 200)
    )
    expected = pair.run(follow)
    actual = restored.process(follow)
    assert len(of(expected, EventKind.LINK_ACTIVATED)) > 0
    assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8))
    assert restored.state_hash() == original.state_hash()
    restored.check_invariants()


def test_a_state_handed_in_gets_its_index_rebuilt_and_the_hash_ignores_it():
    """``Engine(config, state)`` rebuilds the index whatever the state carried (garbage
    here); the state hash does not read the index columns."""
    pair, s = small_pool_venue()
    rest_groups(pair, s)
    values = pair.kernel.state._asdict()
    garbled = values["trg_i8"].copy()
    garbled[:, INDEX_COLUMNS] = np.arange(garbled.shape[0] * 4).reshape(-1, 4) % 7
    values["trg_i8"] = garbled
    other = Engine(pair.config, State(**values))
    assert other.state_hash() == pair.kernel.state_hash()
    with pytest.raises(AssertionError, match="link index"):
        check_link_index(garbled)
    check_link_index(other.state.trg_i8)
    follow = s.batch(place(B, 0, SELL, 80, 60))
    assert np.array_equal(other.process(follow).view(np.uint8), pair.run(follow).view(np.uint8))


def test_the_index_gives_chains_in_entry_order_and_buckets_are_plain_arithmetic():
    """Every entry (2 x slot + role of a non-zero PRIMARY / PARTNER) sits in exactly one
    chain, the chain of its value's bucket, in ascending entry order; the bucket is the
    same for the same id in every process (no randomness) and spreads consecutive ids."""
    capacity = 64
    rows = np.zeros((capacity, len(Trig8)), dtype=np.int64)
    rng = np.random.default_rng(7)
    ids = (1 << 32) + rng.choice(40, size=2 * capacity)  # collisions on purpose
    ids[rng.random(2 * capacity) < 0.3] = 0  # watches nothing
    rows[:, Trig8.PRIMARY] = ids[:capacity]
    rows[:, Trig8.PARTNER] = ids[capacity:]
    index = link_index_of(rows)
    buckets = 2 * capacity
    seen = []
    for bucket in range(buckets):
        at = int(index[bucket >> 1, 2 + (bucket & 1)])
        chain = []
        while at:
            entry = at - 1
            chain.append(entry)
            value = int(rows[entry >> 1, Trig8.PRIMARY + (entry & 1)])
            assert value and int(bucket_of(value, buckets)) == bucket
            at = int(index[entry >> 1, entry & 1])
        assert chain == sorted(chain)
        seen += chain
    expected = [2 * slot + role for slot in range(capacity) for role in (0, 1)
                if rows[slot, Trig8.PRIMARY + role]]  # fmt: skip
    assert sorted(seen) == expected
    assert int(bucket_of(1 << 32 | 5, 128)) == int(bucket_of(np.int64(1 << 32 | 5), 128))
    spread = {int(bucket_of((1 << 32) | slot, 1 << 12)) for slot in range(1 << 10)}
    assert len(spread) > 900
