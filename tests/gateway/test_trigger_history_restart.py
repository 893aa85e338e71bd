"""``private/get_trigger_order_history`` survives a restart of ``derivex serve``: the
history is rebuilt from the journal (``history_replay.venue_from_journal`` walks every
TRIGGER_* event again), so a fired and a cancelled trigger order are listed after the
restart as they were before. The trigger fires on an index move set by the operator's
override (``private/admin_set_index``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from derivex.gateway.keys import KeyStore
from tests.gateway.test_admin_control import _rpc, _token
from tests.gateway.test_serve import Served

pytestmark = pytest.mark.integration
PERP = "BTC_USDC-PERPETUAL"
FIELDS = ("trigger_order_id", "order_id", "request", "order_type", "trigger", "trigger_price")


def _result(reply: dict[str, Any]) -> Any:
    assert "result" in reply, reply
    return reply["result"]


def _history(url: str, access: str) -> list[dict[str, Any]]:
    reply = _rpc(url, "private/get_trigger_order_history", access, instrument_name=PERP)
    return [{name: entry[name] for name in FIELDS} for entry in _result(reply)["entries"]]


def _stop(url: str, access: str, price: float) -> str:
    reply = _rpc(
        url,
        "private/sell",
        access,
        instrument_name=PERP,
        amount=0.001,
        type="stop_market",
        trigger="index_price",
        trigger_price=price,
    )
    order = _result(reply)["order"]
    assert order["order_state"] == "untriggered", order
    return str(order["order_id"])


def test_trigger_order_history_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "venue"
    served = Served(data, tmp_path / "serve.log")
    try:
        admin = KeyStore(data).create(3, ("admin",), name="operator")
        access = _token(served.url, served.client_id, served.secret)
        index = _result(_rpc(served.url, "public/ticker", instrument_name=PERP))["index_price"]
        fired = _stop(served.url, access, math.floor(index * 0.95 / 0.5) * 0.5)
        cancelled = _stop(served.url, access, math.floor(index * 0.5 / 0.5) * 0.5)
        _result(_rpc(served.url, "private/cancel", access, order_id=cancelled))
        operator = _token(served.url, admin.client_id, admin.client_secret)
        override = {"index_name": "btc_usdc", "price": round(index * 0.9)}
        _result(_rpc(served.url, "private/admin_set_index", operator, **override))
        before = _history(served.url, access)
        by_id = {entry["trigger_order_id"]: entry for entry in before}
        assert by_id[fired]["request"] == "trigger:order", before
        assert by_id[fired]["order_id"] != fired  # the order it placed
        assert by_id[cancelled]["request"] == "cancel", before
        assert served.stop() == 0
        served = Served(data, tmp_path / "serve.log")
        access = _token(served.url, served.client_id, served.secret)
        assert _history(served.url, access) == before
    finally:
        if served.process.poll() is None:
            served.stop()


def _linked(url: str, access: str, side: str, **params: Any) -> dict[str, Any]:
    reply = _rpc(url, f"private/{side}", access, instrument_name=PERP, **params)
    return _result(reply)["order"]  # type: ignore[no-any-return]


def _objects(url: str, access: str, ids: list[str]) -> list[dict[str, Any]]:
    """The order objects of ``ids`` (labels aside: one process keeps no label keys in its
    journal, so no order's label survives a restart) and the open ones' ids."""
    objects = []
    for order_id in ids:
        state = _result(_rpc(url, "private/get_order_state", access, order_id=order_id))
        objects.append({k: v for k, v in state.items() if k != "label"})
    opened = _result(
        _rpc(url, "private/get_open_orders_by_instrument", access, instrument_name=PERP)
    )
    objects.append({"open": sorted(order["order_id"] for order in opened)})
    return objects


def test_linked_orders_survive_a_restart(tmp_path: Path) -> None:
    """An OCO pair on the index whose stop fires (the take cancelled with
    ``oco_other_closed``) and an OTOCO entry resting below the market after that (its
    bracket held): every order object, links and states included, is the same after a
    restart (journal replay)."""
    data = tmp_path / "venue"
    served = Served(data, tmp_path / "serve.log")
    try:
        admin = KeyStore(data).create(3, ("admin",), name="operator")
        access = _token(served.url, served.client_id, served.secret)
        index = _result(_rpc(served.url, "public/ticker", instrument_name=PERP))["index_price"]

        def price(factor: float) -> float:
            return math.floor(index * factor / 0.5) * 0.5

        stop = _linked(
            served.url, access, "sell", amount=0.001, type="stop_market",
            trigger="index_price", trigger_price=price(0.95),
            linked_order_type="one_cancels_other",
            otoco_config=[
                {"direction": "sell", "amount": 0.001, "type": "take_market",
                 "trigger_price": price(1.5), "trigger": "index_price"},
            ],
        )  # fmt: skip
        opened = _result(
            _rpc(served.url, "private/get_open_orders_by_instrument", access, instrument_name=PERP)
        )
        (take,) = [o for o in opened if o["order_id"] != stop["order_id"]]
        assert take["oco_ref"] == stop["oco_ref"] and take["order_type"] == "take_market"
        operator = _token(served.url, admin.client_id, admin.client_secret)
        override = {"index_name": "btc_usdc", "price": round(index * 0.9)}
        _result(_rpc(served.url, "private/admin_set_index", operator, **override))
        entry = _linked(
            served.url, access, "buy", amount=0.001, type="limit", price=price(0.9 * 0.97),
            linked_order_type="one_triggers_one_cancels_other",
            otoco_config=[
                {"direction": "sell", "amount": 0.001, "type": "take_market",
                 "trigger_price": price(0.9 * 1.3), "trigger": "index_price"},
                {"direction": "sell", "amount": 0.001, "type": "stop_market",
                 "trigger_price": price(0.9 * 0.3), "trigger": "index_price"},
            ],
        )  # fmt: skip
        ids = [entry["order_id"], *entry["oto_order_ids"], stop["order_id"], take["order_id"]]
        before = _objects(served.url, access, ids)
        assert before[3]["order_state"] in ("triggered", "rejected"), before[3]
        assert before[4]["cancel_reason"] == "oco_other_closed", before[4]
        assert before[1]["primary_order_id"] == entry["order_id"] == before[2]["primary_order_id"]
        assert before[0]["oto_order_ids"] == entry["oto_order_ids"]
        assert served.stop() == 0
        served = Served(data, tmp_path / "serve.log")
        access = _token(served.url, served.client_id, served.secret)
        assert _objects(served.url, access, ids) == before
    finally:
        if served.process.poll() is None:
            served.stop()
