"""Regenerate the golden files of tests/test_golden.py. Run by hand, only on a deliberate
change of a record format, a code or the engine's semantics; never from a test:

    .venv/bin/python scripts/golden.py     # rewrites tests/golden/{records.json,journal*}
    git diff --stat tests/golden           # review: every change must be the intended one

It writes
- ``records.json``: every command, event and reason code with its name, every value enum and
  both record layouts (``tests/golden/describe.py``);
- ``journal/``: a short recorded session (instruments, accounts, every order type, a mass
  quote, index and risk arrays, funding, a liquidation, an option expiry) with a snapshot in
  the middle, as ``Exchange(journal=...)`` writes it;
- ``journal.json``: what replaying that journal must give: command and batch counts, a digest
  of every event, the events per kind, the state hash and state root, and the snapshot's.
Cost: about a second once the kernels are cached.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT))

from tests.golden.describe import describe  # noqa: E402

from derivex.core.config import EngineConfig  # noqa: E402
from derivex.core.engine import Engine  # noqa: E402
from derivex.core.records import CommandKind, command_array  # noqa: E402
from derivex.exchange import Exchange, Quote  # noqa: E402
from derivex.journal import Journal, full_root, list_snapshots, read, snapshot  # noqa: E402
from derivex.pricing.service import OptionSpec, PricingService  # noqa: E402

START_NS = 1_798_761_600_000_000_000  # 2027-01-01T00:00:00Z
HOUR_NS = 3_600_000_000_000
USDC = 1_000_000
#: small pools keep the snapshot small; the session grows some of them (growth is recorded)
CONFIG = EngineConfig(
    initial_orders=64,
    initial_levels=32,
    initial_accounts=8,
    initial_instruments=4,
    initial_positions=16,
    initial_levels_per_side=8,
)


class Clock:
    """Sequencer time: 1 ms per reading, and jumps when the session says so."""

    def __init__(self) -> None:
        self.now_ns = START_NS

    def __call__(self) -> int:
        self.now_ns += 1_000_000
        return self.now_ns

    def jump(self, nanoseconds: int) -> None:
        self.now_ns += nanoseconds


def _index(ex: Exchange, clock: Clock, price_ticks: int) -> None:
    t = clock.now_ns
    ex.set_index("BTC", [(0, t, price_ticks), (1, t, price_ticks + 500), (2, t, price_ticks - 500)])


def _records(*rows: dict[str, int]) -> np.ndarray:
    records = command_array(len(rows))
    for k, row in enumerate(rows):
        for name, value in row.items():
            records[k][name] = value
    return records


def _linked_orders(ex: Exchange, perp: int, call: int, accounts: tuple[int, int, int], stop: int):
    """Linked orders and AMEND_TRIGGER (docs/conditional-orders.md): the maker's stop-limit
    edited; on the call (bid 68,000, ask 71,000, last 71,000): an OTO whose primary sells
    into the bid at once (its held buy stop placed: LINK_ACTIVATED); an incremental OCO whose
    take fires at the next trade and whose order then fills by half (the stop halves:
    LINK_REDUCED). What is left goes at expiry."""
    maker, taker, hedger = accounts
    amend = {"kind": CommandKind.AMEND_TRIGGER, "account": maker, "order_id": stop}
    ex.submit(_records({**amend, "qty_lots": 2_000, "price_ticks": 8_950_000,
                        "new_trigger_ticks": 9_050_000}))  # fmt: skip
    leg = {"instrument": call, "tif": 1, "qty_lots": 1_000, "account": hedger}
    ex.submit(
        _records(
            {"kind": CommandKind.PLACE_LINKED, "account": hedger, "link_type": 1, "count": 2},
            {**leg, "kind": CommandKind.LINKED_ORDER, "side": 1, "price_ticks": 68_000},
            {**leg, "kind": CommandKind.LINKED_TRIGGER, "side": 0, "order_type": 1,
             "trigger_type": 1, "trigger_price_ticks": 80_000},
        )
    )  # fmt: skip
    oco = {"instrument": call, "account": taker, "side": 1, "qty_lots": 2_000}
    ex.submit(
        _records(
            {"kind": CommandKind.PLACE_LINKED, "account": taker, "link_type": 2,
             "fill_condition": 2, "count": 2},
            {**oco, "kind": CommandKind.LINKED_TRIGGER, "trigger_type": 2, "tif": 0,
             "trigger_price_ticks": 69_000, "price_ticks": 69_000},
            {**oco, "kind": CommandKind.LINKED_TRIGGER, "trigger_type": 1, "order_type": 1,
             "tif": 1, "trigger_price_ticks": 50_000},
        )
    )  # fmt: skip
    ex.place(hedger, call, "buy", 1_000, 71_000, time_in_force="ioc", label=62)
    ex.place(hedger, call, "buy", 1_000, 69_000, time_in_force="ioc", label=63)


def record_session(directory: Path) -> int:
    """Journal the golden session into ``directory``; return the snapshot's seq."""
    clock = Clock()
    ex = Exchange(CONFIG, clock=clock, journal=Journal(directory, fsync="none"))
    perp = ex.add_perpetual("BTC", tick_size_ticks=50, maker_fee_ppm=-100, taker_fee_ppm=500)
    expiry = START_NS + 8 * HOUR_NS
    call = ex.add_option(
        "BTC", expiry, 10_000_000, "call", tick_size_ticks=500, min_trade_lots=1000
    )
    put = ex.add_option("BTC", expiry, 9_500_000, "put", tick_size_ticks=500, min_trade_lots=1000)
    ex.set_price_band(perp, 60_000)
    ex.set_funding_cap(perp, 500_000)
    _index(ex, clock, 10_000_000)
    pricing = PricingService(
        [
            OptionSpec(call, 10_000_000, expiry, True, 1, 500),
            OptionSpec(put, 9_500_000, expiry, False, 1, 500),
        ],
        scenarios=ex.engine.config,
    )
    ex.submit(pricing.records(clock.now_ns, 10_000_000))
    maker, taker = ex.create_account(), ex.create_account("reject_incoming")
    hedger = ex.create_account(margin_mode="portfolio")
    levered = ex.create_account()
    for account in (maker, taker, hedger):
        ex.deposit(account, 1_000_000 * USDC)
    ex.deposit(levered, 500 * USDC)
    ex.withdraw(taker, 1_000 * USDC)
    ex.withdraw(levered, 10**15)  # rejected: more than the balance
    ex.set_self_trade_prevention(maker, "cancel_resting")
    ex.mass_quote(
        maker,
        [
            Quote(perp, 9_999_500, 5_000, 10_000_500, 5_000),
            Quote(call, 68_000, 10_000, 71_000, 10_000),
        ],
        label=1,
    )
    for step in range(1, 6):
        ex.place(maker, perp, "buy", 4_000, 9_999_500 - 500 * step, label=10 + step)
        ex.place(maker, perp, "sell", 4_000, 10_000_500 + 500 * step, label=20 + step)
    ex.place(taker, perp, "buy", 12_000, order_type="market", label=30)
    ex.place(hedger, call, "buy", 5_000, 71_000, time_in_force="ioc", label=31)
    ex.place(taker, perp, "sell", 3_000, 9_999_500, post_only=True, label=32)
    ex.place(taker, perp, "sell", 3_000, 9_999_500, post_only=True, reject_post_only=True)
    ex.place(hedger, perp, "sell", 8_000, 9_999_000, label=33)
    ex.place(taker, perp, "buy", 500_000, 10_003_000, time_in_force="fok", label=34)
    ex.place(taker, perp, "sell", 1_000, 10_100_000, reduce_only=True, label=35)
    ex.place(hedger, perp, "buy", 100_000, 10_001_500, time_in_force="ioc", label=37)
    resting = ex.place(taker, perp, "buy", 1_000, 9_990_000, label=36)
    ex.amend(taker, resting.order_id, 9_991_000, 2_000)
    ex.cancel(maker, resting.order_id)  # rejected: not the owner
    ex.cancel(taker, resting.order_id)
    ex.place(levered, perp, "buy", 4_000, order_type="market")  # rejected: margin
    ex.place(levered, perp, "buy", 1_400, 10_002_000, time_in_force="ioc", label=40)
    ex.place(taker, put, "buy", 2_000, 5_000, label=41)
    ex.halt(put)
    ex.place(taker, put, "buy", 2_000, 5_000)  # rejected: halted
    ex.resume(put)
    ex.cancel_all(taker, put)
    ex.submit(command_array(1))  # a NOOP
    ex.check_invariants()
    snapshot_seq = snapshot(ex).name
    # second half, after the snapshot: the index falls 6 %, the levered account is
    # liquidated, funding is paid, and the options expire
    for _ in range(6):
        clock.jump(HOUR_NS // 6)
        _index(ex, clock, 9_400_000)
        ex.advance_time()
    ex.place(maker, perp, "buy", 4_000, 9_400_000, label=50)
    ex.advance_time()
    # conditional orders (docs/conditional-orders.md): an index stop that the index's
    # recovery below fires, a take-profit cancelled by its owner, a stop-limit that the
    # maker's cancel-all takes
    ex.place_trigger(hedger, perp, "buy", 1_000, "stop", 9_500_000, source="index", label=60)
    take = ex.place_trigger(taker, perp, "sell", 1_000, "take", 11_000_000, source="mark")
    ex.cancel(taker, int(take.events["order_id"][0]))
    stop = ex.place_trigger(
        maker, perp, "sell", 1_000, "stop", 9_000_000, order_type="limit", price_ticks=8_900_000
    )
    _linked_orders(ex, perp, call, (maker, taker, hedger), int(stop.events["order_id"][0]))
    # market-maker protection (core/mmp.py): a buy through the maker's quotes in group 7
    # reaches its lot limit: the group freezes (its bid is cancelled, a new quote refused)
    # until the maker resets it
    ex.set_mmp_config(maker, "BTC", 10, 0, qty_limit_lots=1_000, group=7)
    quote = Quote(call, 66_000, 1_000, 72_000, 1_000)
    ex.mass_quote(maker, [quote], label=70, mmp_group=7)
    # (2,000 lots: the first 1,000 take the rest of the linked take-profit at 69,000)
    ex.place(hedger, call, "buy", 2_000, 72_000, time_in_force="ioc", label=71)
    ex.mass_quote(maker, [quote], mmp_group=7)  # rejected: frozen
    ex.reset_mmp(maker, "BTC", group=7)
    ex.place(maker, call, "sell", 1_000, 73_000, mmp=True, label=72)
    clock.jump(8 * HOUR_NS)
    _index(ex, clock, 9_600_000)
    ex.advance_time()
    ex.cancel_all(maker)
    ex.close(perp)
    # subaccounts (core/subaccounts.py): one created, money moved there and back, and a
    # transfer of more than the balance refused
    desk = ex.create_subaccount(maker)
    ex.transfer(maker, desk, 1_000 * USDC)
    ex.transfer(desk, maker, 400 * USDC)
    ex.transfer(desk, maker, 10**15)  # rejected: more than the balance
    # cross-domain transfers (core/escrow.py): one sent to domain 1 (refused there, so
    # refunded here), one received from domain 2, one refused here (no such account)
    for kind, account, number in (
        (CommandKind.TRANSFER_OUT, taker, 0),
        (CommandKind.TRANSFER_IN, hedger, 1),
        (CommandKind.TRANSFER_IN, 99, 2),
        (CommandKind.TRANSFER_REFUND, taker, 1),
    ):
        transfer = command_array(1)
        transfer["kind"], transfer["account"], transfer["amount_units"] = kind, account, USDC
        transfer["domain"] = 2 if kind == CommandKind.TRANSFER_IN else 1
        transfer["transfer_id"] = number
        transfer["refund_of"] = number  # the refusal 1 in domain 1 was of transfer 1
        ex.submit(transfer)
    ex.check_invariants()
    ex.journal.close()  # type: ignore[union-attr]
    return int(snapshot_seq.split("-")[1].split(".")[0])


def replay_summary(directory: Path) -> dict[str, object]:
    """Replay the journal one engine call per batch and summarise what it gives."""
    config = EngineConfig.from_dict(json.loads((directory / "config.json").read_text()))
    engine = Engine(config)
    digest = hashlib.sha256()
    commands = batches = 0
    per_kind: dict[str, int] = {}
    commands_per_kind: dict[str, int] = {}
    for batch in read(directory):
        events = engine.process(batch.commands)
        digest.update(events.tobytes())
        commands += len(batch.commands)
        batches += 1
        for kind, count in zip(*np.unique(events["kind"], return_counts=True), strict=True):
            per_kind[str(int(kind))] = per_kind.get(str(int(kind)), 0) + int(count)
        for kind, count in zip(*np.unique(batch.commands["kind"], return_counts=True), strict=True):
            key = str(int(kind))
            commands_per_kind[key] = commands_per_kind.get(key, 0) + int(count)
    engine.check_invariants()
    return {
        "commands": commands,
        "batches": batches,
        "commands_per_kind": dict(sorted(commands_per_kind.items(), key=lambda kv: int(kv[0]))),
        "events_per_kind": dict(sorted(per_kind.items(), key=lambda kv: int(kv[0]))),
        "events_sha256": digest.hexdigest(),
        "state_hash": engine.state_hash(),
        "state_root": full_root(engine.state).hex(),
    }


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "records.json").write_text(json.dumps(describe(), indent=1) + "\n")
    directory = GOLDEN / "journal"
    shutil.rmtree(directory, ignore_errors=True)
    snapshot_seq = record_session(directory)
    (directory / "LOCK").unlink()  # the writer's lock file: not part of the format
    summary = replay_summary(directory)
    [(seq, path)] = [(seq, path) for seq, path in list_snapshots(directory)]
    assert seq == snapshot_seq
    summary["snapshot"] = {"file": path.name, "seq": seq}
    (GOLDEN / "journal.json").write_text(json.dumps(summary, indent=1) + "\n")
    kinds = {int(k) for k in summary["commands_per_kind"]}  # type: ignore[union-attr]
    missing = sorted(CommandKind(k).name for k in set(map(int, CommandKind)) - kinds)
    print(f"wrote {GOLDEN}: {summary['commands']} commands; command kinds not in the journal:")
    print("  " + (", ".join(missing) or "none"))


if __name__ == "__main__":
    main()
