"""Trigger orders with ``derivex serve --workers 2``: a stop-loss placed through one worker
is listed by every worker, fires on a trade made through another connection, and the
engine's and every worker's replica end with the same state hash.

One venue serves the whole module (starting a worker-mode venue is most of each test's
time); the last test stops it and checks what each test used to check at its own stop:
status 0, no failure, every worker's replica at the engine's state hash, no shared-memory
segment left."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import ccxt
import pytest

from tests.gateway.test_serve_workers import (
    PERPETUAL,
    ServedWorkers,
    _free_port,
    _new_key,
    _segments,
)


class Venue:
    """The module's served venue: its data directory, port and ``ServedWorkers``."""

    def __init__(self, root: Path) -> None:
        self.data, self.port = root / "venue", _free_port()
        self.served = ServedWorkers(self.data, root / "serve.log", self.port)
        self.stopped: tuple[int, dict] | None = None

    def stop(self) -> tuple[int, dict]:
        if self.stopped is None:
            self.stopped = self.served.stop()
        return self.stopped


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("triggers"))
    try:
        yield made
    finally:
        if made.served.process.poll() is None:
            made.stop()


def _bid(client: ccxt.deribit) -> float:
    """The best bid, once there is one (the demo makers quote)."""
    deadline = time.monotonic() + 20
    while not (bid := client.fetch_ticker(PERPETUAL)["bid"]):
        assert time.monotonic() < deadline, "no bid"
        time.sleep(0.1)
    return float(bid)


def _bid_below_last(client: ccxt.deribit) -> float:
    """The best bid, once it is below the last price (the demo makers quote and trade)."""
    deadline = time.monotonic() + 20
    while True:
        ticker = client.fetch_ticker(PERPETUAL)
        bid, last = ticker["bid"], ticker["last"]
        if bid and last and bid < last:
            return float(bid)
        assert time.monotonic() < deadline, f"no bid below the last price: {ticker}"
        time.sleep(0.1)


def test_workers_list_fire_and_agree_on_trigger_orders(venue: Venue) -> None:
    data, served = venue.data, venue.served
    alice = served.client()
    bid = _bid_below_last(alice)
    far = float(alice.price_to_precision(PERPETUAL, bid * 0.9))
    parked = alice.create_order(PERPETUAL, "market", "sell", 0.01, params={"stopLossPrice": far})
    assert parked["info"]["order_state"] == "untriggered"
    for _ in range(6):  # fresh connections reach both workers
        fresh = served.client()
        deadline = time.monotonic() + 5
        while parked["id"] not in [o["id"] for o in fresh.fetch_open_orders(PERPETUAL)]:
            assert time.monotonic() < deadline, "a worker never saw the trigger order"
            time.sleep(0.01)
    assert alice.cancel_order(parked["id"], PERPETUAL)["info"]["order_state"] == "cancelled"
    # a stop at the best bid: the noise account's market sell trades there and fires it
    deadline = time.monotonic() + 20
    while True:
        trigger = float(alice.price_to_precision(PERPETUAL, _bid_below_last(alice)))
        try:
            stop = alice.create_order(
                PERPETUAL, "market", "sell", 0.01, params={"stopLossPrice": trigger}
            )
            break
        except ccxt.InvalidOrder as error:  # the makers traded down to the bid meanwhile
            assert "trigger_would_fire" in str(error), error
            assert time.monotonic() < deadline, error
    noise = json.loads((data / "serve.json").read_text())["noise_account"]
    bob = served.client(*_new_key(data, noise))
    deadline = time.monotonic() + 20
    while True:
        state = alice.private_get_get_order_state({"order_id": stop["id"]})["result"]
        if state["order_state"] != "untriggered":
            break
        assert time.monotonic() < deadline, f"the stop never fired: {state}"
        bob.create_order(PERPETUAL, "market", "sell", 0.01)
        time.sleep(0.05)
    assert state["order_state"] in ("triggered", "rejected"), state


def test_workers_show_the_same_linked_orders(venue: Venue) -> None:
    """An OTOCO group placed through one worker (ccxt passing the Deribit parameters) is
    shown by every worker with the same order objects: links, held legs, labels."""
    served = venue.served
    alice = served.client()
    bid = _bid(alice)
    price = float(alice.price_to_precision(PERPETUAL, bid * 0.97))
    trigger = float(alice.price_to_precision(PERPETUAL, bid * 0.5))
    take = float(alice.price_to_precision(PERPETUAL, bid * 1.3))
    params = {
        "label": "entry",
        "linked_order_type": "one_triggers_one_cancels_other",
        "trigger_fill_condition": "complete_fill",
        "otoco_config": [
            {"direction": "sell", "amount": 0.01, "type": "take_limit", "label": "tp",
             "price": take, "trigger_price": take},
            {"direction": "sell", "amount": 0.01, "type": "stop_market", "label": "sl",
             "trigger_price": trigger, "trigger": "mark_price"},
        ],
    }  # fmt: skip
    entry = alice.create_order(PERPETUAL, "limit", "buy", 0.01, price, params=params)
    ids = {entry["id"], *entry["info"]["oto_order_ids"]}
    assert len(ids) == 3
    seen = []
    for _ in range(6):  # fresh connections reach both workers
        fresh = served.client()
        deadline = time.monotonic() + 5
        while True:
            group = {o["id"]: o["info"] for o in fresh.fetch_open_orders(PERPETUAL)}
            if ids <= set(group):
                break
            assert time.monotonic() < deadline, "a worker never saw the linked group"
            time.sleep(0.01)
        shown = {i: {k: v for k, v in group[i].items() if k != "last_update_timestamp"}
                 for i in ids}  # fmt: skip
        seen.append(shown)
    first = seen[0]
    assert {o["label"] for o in first.values()} == {"entry", "tp", "sl"}
    legs = [o for o in first.values() if o["label"] != "entry"]
    assert all(o["primary_order_id"] == entry["id"] for o in legs)
    assert all(shown == first for shown in seen), seen


def test_workers_show_the_label_of_a_plain_trigger_order(venue: Venue) -> None:
    """A labelled stop-loss (no group) placed through one worker reads the same label on
    every worker: a worker walking another's batch takes the label from the PLACE_TRIGGER
    record (it was "" there before)."""
    served = venue.served
    alice = served.client()
    bid = _bid(alice)
    far = float(alice.price_to_precision(PERPETUAL, bid * 0.5))
    stop = alice.create_order(
        PERPETUAL, "market", "sell", 0.01, params={"stopLossPrice": far, "label": "guard"}
    )
    assert stop["info"]["label"] == "guard"
    for _ in range(8):  # fresh connections: SO_REUSEPORT spreads them over both workers
        fresh = served.client()
        deadline = time.monotonic() + 5
        while True:
            shown = {o["id"]: o["info"] for o in fresh.fetch_open_orders(PERPETUAL)}
            if stop["id"] in shown:
                break
            assert time.monotonic() < deadline, "a worker never saw the trigger order"
            time.sleep(0.01)
        assert shown[stop["id"]]["label"] == "guard", shown[stop["id"]]
        state = fresh.private_get_get_order_state({"order_id": stop["id"]})["result"]
        assert state["label"] == "guard", state


def test_the_workers_stop_cleanly_and_agree_with_the_engine(venue: Venue) -> None:
    """SIGTERM after the module's trigger orders, linked groups and trades: status 0, no
    failure, every worker's replica verified frames and ends at the engine's state hash,
    and no shared-memory segment is left."""
    status, summary = venue.stop()
    assert status == 0 and summary["failure"] is None, summary
    engine_hash = summary["engine"]["state_hash"]
    finals = [w for w in summary["workers"] if w["state_hash"] is not None]
    assert len(finals) >= 2
    assert all(w["state_hash"] == engine_hash and w["frames_verified"] > 0 for w in finals)
    assert _segments(venue.port) == []
