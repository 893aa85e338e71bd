"""Subaccounts and transfers over the API (gateway/subaccount_api.py) on the real server:
create, list, rename, keys per subaccount, transfers both ways and between subaccounts,
the transfer history, what a main account's key can read of its subaccounts and what a
subaccount's key cannot read of its family, and a clear error for every bad parameter.
ccxt (sync and async, unmodified) ``transfer`` / ``fetch_transfers`` against the same
server; ``--workers 2`` in ``test_subaccounts_with_workers``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from websockets.sync.client import connect

from derivex.gateway.errors import INTERNAL_ERROR, INVALID_PARAMS, MISSING_PARAMS
from tests.gateway.conftest import DEPOSIT_UNITS, Server
from tests.gateway.test_dashboard_api import _Socket

USDC = 1_000_000
NOT_ENOUGH_FUNDS = 10009
UNAVAILABLE_IN_SUBACCOUNT = 13012


class _Key:
    def __init__(self, reply: dict[str, Any]) -> None:
        self.client_id = reply["client_id"]
        self.client_secret = reply["client_secret"]


def _socket(server: Server, stack: contextlib.ExitStack, key: Any) -> _Socket:
    sock = _Socket(stack.enter_context(connect(server.ws_url, open_timeout=10)))
    sock.login(key)
    return sock


def _result(reply: dict[str, Any]) -> Any:
    assert "result" in reply, reply
    return reply["result"]


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, reply
    assert reply["error"]["code"] != INTERNAL_ERROR, reply
    return reply["error"]  # type: ignore[no-any-return]


def _balance(sock: _Socket, subaccount_id: int | None = None) -> float:
    params: dict[str, Any] = {"currency": "USDC"}
    if subaccount_id is not None:
        params["subaccount_id"] = subaccount_id
    return float(_result(sock.call("private/get_account_summary", **params))["balance"])


def test_family_create_list_rename_keys_and_transfers(server: Server) -> None:
    deposit = DEPOSIT_UNITS / USDC
    with contextlib.ExitStack() as stack:
        main_key = server.key()
        main = _socket(server, stack, main_key)
        first = _result(main.call("private/create_subaccount"))
        second = _result(main.call("private/create_subaccount"))
        assert first["type"] == second["type"] == "subaccount"
        sub1, sub2 = first["id"], second["id"]
        listed = _result(main.call("private/get_subaccounts"))
        assert [(a["id"], a["type"]) for a in listed] == [
            (main_key.account, "main"),
            (sub1, "subaccount"),
            (sub2, "subaccount"),
        ]
        assert _result(main.call("private/change_subaccount_name", sid=sub1, name="hedge_1")) == (
            "ok"
        )
        listed = _result(main.call("private/get_subaccounts", with_portfolio=True))
        assert listed[1]["username"] == "hedge_1"
        assert listed[1]["portfolio"]["usdc"]["balance"] == 0.0
        # a key for the subaccount, made by the main account's key (read only here)
        made = _result(main.call("private/create_api_key", max_scope="trade", subaccount_id=sub1))
        sub = _socket(server, stack, _Key(made))
        # main -> sub1
        sent = _result(
            main.call(
                "private/submit_transfer_to_subaccount",
                currency="USDC",
                amount=250.5,
                destination=sub1,
            )
        )
        assert (sent["direction"], sent["amount"], sent["other_side"]) == (
            "payment",
            250.5,
            "hedge_1",
        )
        assert _balance(main) == deposit - 250.5
        assert _balance(main, sub1) == _balance(sub) == 250.5
        # sub1 -> main with the subaccount's own key
        _result(
            sub.call(
                "private/submit_transfer_to_subaccount",
                currency="USDC",
                amount="50",
                destination=main_key.account,
            )
        )
        # main moves sub1 -> sub2
        _result(
            main.call(
                "private/submit_transfer_between_subaccounts",
                currency="USDC",
                amount=100,
                source=sub1,
                destination=sub2,
            )
        )
        assert _balance(main, sub1) == 100.5
        assert _balance(main, sub2) == 100.0
        assert _balance(main) == deposit - 200.5
        mine = _result(main.call("private/get_transfers", currency="USDC"))
        assert mine["count"] == 2
        assert [(t["direction"], t["amount"]) for t in mine["data"]] == [
            ("income", 50.0),
            ("payment", 250.5),
        ]
        theirs = _result(sub.call("private/get_transfers", currency="USDC", count=2, offset=0))
        assert [(t["direction"], t["amount"]) for t in theirs["data"]] == [
            ("payment", 100.0),
            ("payment", 50.0),
        ]
        assert theirs["count"] == 3
        # money beyond the balance: refused by the engine, nothing moves
        refused = _error(
            sub.call(
                "private/submit_transfer_to_subaccount",
                currency="USDC",
                amount=1_000,
                destination=main_key.account,
            )
        )
        assert refused["code"] == NOT_ENOUGH_FUNDS
        assert _balance(sub) == 100.5
        # the transaction log names the transfers too
        log = _result(
            main.call(
                "private/get_transaction_log",
                currency="USDC",
                start_timestamp=0,
                end_timestamp=2**62,
                subaccount_id=sub1,
            )
        )
        assert sum(1 for entry in log["logs"] if entry["type"] == "transfer") == 3


def test_a_subaccount_key_sees_only_itself(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        main_key = server.key()
        main = _socket(server, stack, main_key)
        sub1 = _result(main.call("private/create_subaccount"))["id"]
        sub2 = _result(main.call("private/create_subaccount"))["id"]
        sub = _socket(server, stack, server.key(account=sub1))
        stranger_key = server.key()
        stranger = _socket(server, stack, stranger_key)
        for target in (main_key.account, sub2, stranger_key.account):
            for method in ("private/get_account_summary", "private/get_positions"):
                error = _error(sub.call(method, currency="USDC", subaccount_id=target))
                assert error["code"] == INVALID_PARAMS
                assert error["data"]["param"] == "subaccount_id"
        assert [a["id"] for a in _result(sub.call("private/get_subaccounts"))] == [sub1]
        assert _result(sub.call("private/get_subaccounts_details", currency="USDC")) == []
        assert _error(sub.call("private/create_subaccount"))["code"] == UNAVAILABLE_IN_SUBACCOUNT
        # a subaccount's key moves only its own money
        error = _error(
            sub.call(
                "private/submit_transfer_between_subaccounts",
                currency="USDC",
                amount=1,
                source=main_key.account,
                destination=sub2,
            )
        )
        assert error["data"]["param"] == "source"
        # nobody outside the family reads or pays into it
        for target in (main_key.account, sub1):
            error = _error(
                stranger.call("private/get_account_summary", currency="USDC", subaccount_id=target)
            )
            assert error["data"]["param"] == "subaccount_id"
            error = _error(
                stranger.call(
                    "private/submit_transfer_to_subaccount",
                    currency="USDC",
                    amount=1,
                    destination=target,
                )
            )
            assert error["data"]["param"] == "destination"
        # a main account's key reads its subaccounts
        assert (
            _result(main.call("private/get_positions", currency="USDC", subaccount_id=sub2)) == []
        )
        details = _result(main.call("private/get_subaccounts_details", currency="USDC"))
        assert [d["uid"] for d in details] == [sub1, sub2]


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("private/submit_transfer_to_subaccount", {"amount": 1, "destination": 0}, "currency"),
        ("private/submit_transfer_to_subaccount", {"currency": "BTC", "amount": 1}, "currency"),
        ("private/submit_transfer_to_subaccount", {"currency": "USDC", "amount": 1}, "destination"),
        ("private/submit_transfer_to_subaccount", {"currency": "USDC", "destination": 1}, None),
        ("private/submit_transfer_to_subaccount", {"currency": "USDC", "amount": -1}, None),
        ("private/submit_transfer_to_subaccount", {"currency": "USDC", "amount": "x"}, None),
        ("private/submit_transfer_to_subaccount", {"currency": 5, "amount": 1}, "currency"),
        ("private/submit_transfer_to_subaccount", {"currency": "USDC", "amount": 1e-9}, None),
        ("private/submit_transfer_between_subaccounts", {"currency": "USDC", "amount": 1}, None),
        ("private/submit_transfer_between_subaccounts", {"currency": "USDC", "nope": 1}, "nope"),
        ("private/get_transfers", {"currency": "USDC", "count": 0}, "count"),
        ("private/get_transfers", {"currency": "USDC", "offset": -1}, "offset"),
        ("private/get_transfers", {}, "currency"),
        ("private/change_subaccount_name", {"sid": 1, "name": "x"}, "sid"),
        ("private/change_subaccount_name", {"sid": "me", "name": "x"}, "sid"),
        ("private/get_subaccounts", {"with_portfolio": "maybe"}, "with_portfolio"),
        ("private/get_account_summary", {"currency": "USDC", "subaccount_id": -3}, None),
        ("private/create_api_key", {"max_scope": "admin"}, "max_scope"),
        ("private/create_api_key", {"max_scope": "read", "subaccount_id": 1}, "subaccount_id"),
        ("private/create_subaccount", {"name": "x"}, "name"),
    ],
)
def test_bad_parameters_are_named(
    server: Server, method: str, params: dict[str, Any], param: str | None
) -> None:
    with contextlib.ExitStack() as stack:
        sock = _socket(server, stack, server.key())
        error = _error(sock.call(method, **params))
        assert error["code"] in (INVALID_PARAMS, MISSING_PARAMS, 10021), error
        if param is not None:
            assert error["data"]["param"] == param, error


def test_names_are_checked(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        main = _socket(server, stack, server.key())
        sub = _result(main.call("private/create_subaccount"))["id"]
        for name in ("", "white space", "x" * 65, "account-1"):
            error = _error(main.call("private/change_subaccount_name", sid=sub, name=name))
            assert error["data"]["param"] == "name", name


def test_ccxt_transfer_and_fetch_transfers_sync_and_async(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        main_key = server.key()
        main = _socket(server, stack, main_key)
        sub = _result(main.call("private/create_subaccount"))["id"]
    client = server.sync(main_key)
    sent = client.transfer("USDC", 12.5, str(main_key.account), str(sub))
    assert (sent["amount"], sent["currency"], sent["status"]) == (12.5, "USDC", "ok")
    listed = client.fetch_transfers("USDC")
    assert [(t["id"], t["amount"]) for t in listed] == [(sent["id"], 12.5)]
    accounts = client.fetch_accounts()
    assert [(a["id"], a["type"]) for a in accounts] == [
        (str(main_key.account), "main"),
        (str(sub), "subaccount"),
    ]

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async_client = server.asynchronous(main_key)
        try:
            await async_client.load_markets()
            made = await async_client.transfer("USDC", 7, str(main_key.account), str(sub))
            return made, await async_client.fetch_transfers("USDC")
        finally:
            await async_client.close()

    made, listed = asyncio.run(run())
    assert made["amount"] == 7.0
    assert sorted(t["amount"] for t in listed) == [7.0, 12.5]  # (ccxt sorts by time)
    with contextlib.ExitStack() as stack:
        main = _socket(server, stack, main_key)
        assert _balance(main) == DEPOSIT_UNITS / USDC - 19.5
        assert _balance(main, sub) == 19.5


@pytest.mark.integration
def test_subaccounts_with_workers(tmp_path: Any) -> None:
    """The same through ``derivex serve --workers 2``: every answer is the same whichever
    worker gives it (fresh connections spread over both), every worker's replica ends in
    the engine's state, and a restarted venue answers as before."""
    from tests.gateway.test_serve_workers import ServedWorkers, _free_port

    data, log = tmp_path / "venue", tmp_path / "serve.log"
    served = ServedWorkers(data, log, _free_port())
    try:
        main = served.client()
        own = int(main.private_get_get_account_summary({"currency": "USDC"})["result"]["id"])
        sub = int(main.private_get_create_subaccount()["result"]["id"])
        assert main.private_get_change_subaccount_name({"sid": sub, "name": "w_1"})["result"]
        sent = main.transfer("USDC", 3.25, str(own), str(sub))
        made = main.private_get_create_api_key({"max_scope": "trade", "subaccount_id": sub})
        key = made["result"]
        answers = set()
        for _ in range(6):
            client = served.client()
            family = client.private_get_get_subaccounts()["result"]
            moves = client.fetch_transfers("USDC")
            summary = client.private_get_get_account_summary(
                {"currency": "USDC", "subaccount_id": sub}
            )["result"]
            answers.add(
                (
                    tuple((a["id"], a["username"], a["type"]) for a in family),
                    tuple((t["id"], t["amount"]) for t in moves),
                    summary["balance"],
                )
            )
        assert answers == {
            (
                ((own, f"account-{own}", "main"), (sub, "w_1", "subaccount")),
                ((sent["id"], 3.25),),
                3.25,
            )
        }
        time.sleep(1.5)  # the other worker reloads the key file
        for _ in range(4):
            client = served.client(key["client_id"], key["client_secret"])
            assert [t["amount"] for t in client.fetch_transfers("USDC")] == [3.25]
            with pytest.raises(Exception, match="subaccount_id"):
                client.private_get_get_account_summary({"currency": "USDC", "subaccount_id": own})
    finally:
        code, summary_out = served.stop()
    assert code == 0
    finals = {w["state_hash"] for w in summary_out["workers"] if w["state_hash"] is not None}
    assert len(finals) == 1
    # a restart recovers the links from the journal, the transfers from its replay and the
    # names from their file
    again = ServedWorkers(data, log, _free_port())
    try:
        client = again.client()
        family = client.private_get_get_subaccounts()["result"]
        assert [(a["id"], a["username"]) for a in family] == [
            (own, f"account-{own}"),
            (sub, "w_1"),
        ]
        assert [(t["id"], t["amount"]) for t in client.fetch_transfers("USDC")] == [
            (sent["id"], 3.25)
        ]
    finally:
        code, _ = again.stop()
    assert code == 0
