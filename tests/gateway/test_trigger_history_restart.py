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
