"""The operator's controls over the API: halt / resume an instrument and block / unblock an
account (the kill switch), reachable only with the ``admin`` scope, on a real server (one
process here; ``--workers 2`` in ``test_kill_switch_with_workers``)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from derivex.gateway.admin_control import instrument_state
from derivex.gateway.errors import FORBIDDEN, INVALID_INSTRUMENT, INVALID_PARAMS
from tests.gateway.conftest import Server
from tests.gateway.test_dashboard_api import _Socket

CONTROLS = (
    ("private/admin_halt_instrument", {"instrument_name": "BTC_USDC-PERPETUAL"}),
    ("private/admin_resume_instrument", {"instrument_name": "BTC_USDC-PERPETUAL"}),
    ("private/admin_block_account", {"account": 3}),
    ("private/admin_unblock_account", {"account": 3}),
    ("private/admin_get_controls", {}),
)
LOCKED_BY_ADMIN = 10019


def _sockets(server: Server, stack: contextlib.ExitStack, count: int) -> list[_Socket]:
    return [
        _Socket(stack.enter_context(connect(server.ws_url, open_timeout=10))) for _ in range(count)
    ]


def _buy(trader: _Socket, name: str, price: float, amount: float = 1.0) -> dict[str, Any]:
    return trader.call(
        "private/buy", instrument_name=name, amount=amount, price=price, type="limit"
    )


def test_controls_need_the_admin_scope(server: Server) -> None:
    """A real trading key (read and trade) gets 13021 for every control, its own account as
    the target too, and nothing is sequenced (the sequencer's number does not move)."""
    with contextlib.ExitStack() as stack:
        trader, anonymous = _sockets(server, stack, 2)
        key = server.key(("read", "trade"))
        trader.login(key)
        exchange = server.gateway.venue.exchange
        before = server.thread.call(lambda: exchange.sequencer.seq)
        own = (
            ("private/admin_block_account", {"account": key.account}),
            ("private/admin_unblock_account", {"account": key.account}),
        )
        for name, params in (*CONTROLS, *own):
            assert trader.call(name, **params)["error"]["code"] == FORBIDDEN == 13021, name
            assert "error" in anonymous.call(name, **params), name
        assert server.thread.call(lambda: exchange.sequencer.seq) == before
        # nothing was sequenced by the refused calls: the perpetual trades, nobody is blocked
        assert "blocked_accounts" not in server.thread.call(exchange.engine.canonical)
        venue = server.gateway.venue
        perpetual = venue.catalog.get("BTC_USDC-PERPETUAL").instrument
        assert server.thread.call(lambda: instrument_state(venue, perpetual)) == "active"


def test_block_cancels_everything_and_refuses_until_unblocked(server: Server) -> None:
    name = server.option()
    with contextlib.ExitStack() as stack:
        trader, other, admin = _sockets(server, stack, 3)
        trader_key = server.key(("read", "trade"))
        trader.login(trader_key)
        other.login(server.key(("read", "trade")))
        admin.login(server.key(("admin",)))
        account = trader_key.account
        for price in (100.0, 110.0):
            assert "result" in _buy(trader, name, price), price
        kept = _buy(other, name, 105.0)["result"]["order"]["order_id"]
        reply = admin.call("private/admin_block_account", account=account)["result"]
        assert reply == {"account": account, "blocked": True, "cancelled": 2}
        assert trader.call("private/get_open_orders")["result"] == []
        refused = _buy(trader, name, 100.0)["error"]
        assert refused["code"] == LOCKED_BY_ADMIN and refused["data"]["reason"] == "account_blocked"
        assert [o["order_id"] for o in other.call("private/get_open_orders")["result"]] == [kept]
        controls = admin.call("private/admin_get_controls")["result"]
        assert account in controls["blocked_accounts"]
        exchange = server.gateway.venue.exchange
        blocked = server.thread.call(lambda: exchange.engine.canonical()["blocked_accounts"])
        assert account in blocked  # in the canonical state, hence the state hash
        again = admin.call("private/admin_block_account", account=account)["error"]
        assert again["data"]["reason"] == "account_blocked"
        unblocked = admin.call("private/admin_unblock_account", account=account)["result"]
        assert unblocked == {"account": account, "blocked": False}
        assert "result" in _buy(trader, name, 100.0)
        assert account not in admin.call("private/admin_get_controls")["result"]["blocked_accounts"]
        not_blocked = admin.call("private/admin_unblock_account", account=account)["error"]
        assert not_blocked["data"]["reason"] == "account_not_blocked"
        other.call("private/cancel_all")
        trader.call("private/cancel_all")


def test_the_kill_switch_cancels_trigger_orders(server: Server) -> None:
    """Blocking an account cancels its untriggered trigger orders with its resting ones: the
    trigger order reads ``cancelled`` and leaves ``get_open_orders``; another account's
    trigger order stays."""
    name = server.option()
    with contextlib.ExitStack() as stack:
        trader, other, admin = _sockets(server, stack, 3)
        trader_key = server.key(("read", "trade"))
        trader.login(trader_key)
        other.login(server.key(("read", "trade")))
        admin.login(server.key(("admin",)))
        stop = dict(instrument_name=name, amount=1.0, type="stop_market", trigger_price=50.0)
        mine = trader.call("private/sell", **stop)["result"]["order"]
        assert mine["order_state"] == "untriggered"
        theirs = other.call("private/sell", **stop)["result"]["order"]["order_id"]
        reply = admin.call("private/admin_block_account", account=trader_key.account)["result"]
        assert reply["blocked"] is True
        state = trader.call("private/get_order_state", order_id=mine["order_id"])["result"]
        assert state["order_state"] == "cancelled"
        assert trader.call("private/get_open_orders", type="trigger_all")["result"] == []
        listed = other.call("private/get_open_orders", type="trigger_all")["result"]
        assert [o["order_id"] for o in listed] == [theirs]
        admin.call("private/admin_unblock_account", account=trader_key.account)
        other.call("private/cancel_all")


def test_halt_and_resume_an_instrument(server: Server) -> None:
    name = server.option()
    with contextlib.ExitStack() as stack:
        trader, admin = _sockets(server, stack, 2)
        trader.login(server.key(("read", "trade")))
        admin.login(server.key(("admin",)))
        resting = _buy(trader, name, 100.0)["result"]["order"]["order_id"]
        halted = admin.call("private/admin_halt_instrument", instrument_name=name)["result"]
        assert halted == {"instrument_name": name, "state": "halted"}
        refused = _buy(trader, name, 105.0)["error"]
        assert refused["code"] == LOCKED_BY_ADMIN
        assert {"instrument_name": name, "state": "halted"} in admin.call(
            "private/admin_get_controls"
        )["result"]["instruments"]
        twice = admin.call("private/admin_halt_instrument", instrument_name=name)["error"]
        assert twice["data"]["reason"] == "instrument_not_active"
        # cancels go on while halted
        assert trader.call("private/cancel", order_id=resting)["result"]["order_state"] == (
            "cancelled"
        )
        resumed = admin.call("private/admin_resume_instrument", instrument_name=name)["result"]
        assert resumed == {"instrument_name": name, "state": "active"}
        assert "result" in _buy(trader, name, 105.0)
        trader.call("private/cancel_all")


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("private/admin_block_account", {"account": -1}, INVALID_PARAMS),
        ("private/admin_block_account", {"account": "three"}, INVALID_PARAMS),
        ("private/admin_block_account", {"account": 2**40}, INVALID_PARAMS),
        ("private/admin_block_account", {}, None),
        ("private/admin_block_account", {"account": 1}, FORBIDDEN),  # the insurance fund
        ("private/admin_block_account", {"account": 2**32 - 1}, None),  # no such account
        ("private/admin_halt_instrument", {"instrument_name": "NOPE"}, INVALID_INSTRUMENT),
        ("private/admin_halt_instrument", {"instrument_name": 5}, INVALID_PARAMS),
        ("private/admin_resume_instrument", {"instrument_name": "BTC_USDC-PERPETUAL"}, None),
    ],
)
def test_bad_control_requests_get_clear_errors(
    server: Server, method: str, params: dict[str, Any], code: int | None
) -> None:
    with contextlib.ExitStack() as stack:
        (admin,) = _sockets(server, stack, 1)
        admin.login(server.key(("admin",)))
        error = admin.call(method, **params)["error"]
        assert error["code"] != 11094  # never an internal error
        if code is not None:
            assert error["code"] == code, error


# ---- --workers 2 ----


def _rpc(url: str, method: str, token: str | None = None, **params: Any) -> dict[str, Any]:
    if token is not None:
        params["access_token"] = token
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        url + "/api/v2/" + method, body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        return json.loads(error.read())  # type: ignore[no-any-return]


def _token(url: str, client_id: str, secret: str) -> str:
    reply = _rpc(
        url,
        "public/auth",
        grant_type="client_credentials",
        client_id=client_id,
        client_secret=secret,
    )
    return str(reply["result"]["access_token"])


@pytest.mark.integration
def test_kill_switch_with_workers(tmp_path: Path) -> None:
    from tests.gateway.test_serve_workers import (
        DERIVEX,
        PERPETUAL,
        ServedWorkers,
        _free_port,
    )

    data, log, port = tmp_path / "venue", tmp_path / "serve.log", _free_port()
    served = ServedWorkers(data, log, port)
    try:
        alice = served.client()
        account = int(alice.private_get_get_account_summary({"currency": "USDC"})["result"]["id"])
        command = [*DERIVEX, "keys", "create", "--data-dir", str(data), "--account", "3"]
        made = subprocess.run(
            [*command, "--scope", "admin"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert made.returncode == 0, made.stderr
        words = made.stdout.split()
        admin_id = words[words.index("client_id") + 1]
        admin_secret = words[words.index("client_secret") + 1]
        # no wait: a running server picks a new key up at once (``derivex keys create``),
        # every worker re-reads the changed key file at the key's first use
        token = _token(served.url, admin_id, admin_secret)
        band_low = alice.fetch_ticker(PERPETUAL)["info"]["min_price"]
        price = float(alice.price_to_precision(PERPETUAL, band_low * 1.01))
        order = alice.create_order(PERPETUAL, "limit", "buy", 0.01, price)
        blocked = _rpc(served.url, "private/admin_block_account", token, account=account)
        assert blocked["result"]["cancelled"] >= 1, blocked
        assert alice.fetch_order(order["id"], PERPETUAL)["status"] == "canceled"
        with pytest.raises(Exception, match="locked_by_admin"):
            alice.create_order(PERPETUAL, "limit", "buy", 0.01, price)
        trader = _rpc(served.url, "private/admin_block_account", None, account=account)
        assert "error" in trader
        _rpc(served.url, "private/admin_unblock_account", token, account=account)
        again = alice.create_order(PERPETUAL, "limit", "buy", 0.01, price)
        alice.cancel_order(again["id"], PERPETUAL)
    finally:
        code, summary = served.stop()
    assert code == 0
    finals = {w["state_hash"] for w in summary["workers"] if w["state_hash"] is not None}
    assert len(finals) == 1  # every worker's replica saw the same blocks and unblocks
