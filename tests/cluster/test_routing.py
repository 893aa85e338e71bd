"""The router's routing rules and merging (``derivex.cluster.routing``), and the inbox's
signature check (``derivex.cluster.inbox``): pure functions, no NATS."""

from __future__ import annotations

import doctest
from types import SimpleNamespace

import numpy as np
import pytest

import derivex.cluster.routing
from derivex.cluster.inbox import SIGNATURE_HEADER, Inbox, sign_request
from derivex.cluster.routing import (
    FAN_OUT,
    RoutingTable,
    domain_order_id,
    merge,
    show_order_ids,
    venue_order_id,
)
from derivex.core.records import CommandKind, command_array

TABLE = RoutingTable(["btc_usdc", "eth_usdc"])


def test_docstring_examples() -> None:
    result = doctest.testmod(derivex.cluster.routing)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("instrument", "index"),
    [
        ("BTC_USDC-PERPETUAL", 0),
        ("ETH_USDC-PERPETUAL", 1),
        ("BTC_USDC-27DEC26-100000-C", 0),
        ("eth_usdc-perpetual", 1),
        ("XRP_USDC-PERPETUAL", 0),  # no domain names XRP: the first
        ("", 0),
    ],
)
def test_an_instrument_goes_to_the_domain_of_its_underlying(instrument, index) -> None:
    route = TABLE.route("private/buy", {"instrument_name": instrument, "amount": "1"})
    assert route.targets == [index] and route.error is None


def test_order_ids_name_their_domain_and_round_trip() -> None:
    for order_id in (1, 2, 12345, 2**58):
        for index in (0, 1, 15):
            shown = venue_order_id(order_id, index)
            assert shown.isdecimal() and domain_order_id(shown) == (index, order_id)
    route = TABLE.route("private/cancel", {"order_id": venue_order_id(77, 1)})
    assert route.targets == [1] and route.params == {"order_id": "77"}
    # ids that name no domain's order, or a domain the venue does not have
    for bad in (
        "3",
        "-17",
        "abc",
        "\uff11\uff12\uff13\uff14\uff15",
        True,
        venue_order_id(5, 7),
        "9" * 30,
    ):
        assert TABLE.route("private/cancel", {"order_id": bad}).error is not None


def test_results_show_venue_order_ids_everywhere() -> None:
    result = {
        "order": {"order_id": "5", "trigger_order_id": "0", "price": 1.0},
        "trades": [{"order_id": "5", "trade_id": "9"}],
    }
    shown = show_order_ids(result, 1)
    assert shown["order"]["order_id"] == venue_order_id(5, 1)
    assert shown["order"]["trigger_order_id"] == "0"  # none: left as it is
    assert shown["trades"][0] == {"order_id": venue_order_id(5, 1), "trade_id": "9"}


def test_account_wide_requests_go_to_every_domain_and_merge() -> None:
    assert "private/get_account_summary" in FAN_OUT
    route = TABLE.route("private/get_account_summary", {"currency": "USDC"})
    assert route.targets == [0, 1]
    a = {"id": 3, "currency": "USDC", "balance": 10.0, "estimated_liquidation_ratio": 0.1}
    b = {"id": 3, "currency": "USDC", "balance": 2.5, "estimated_liquidation_ratio": 0.3}
    merged = merge("private/get_account_summary", [a, b], ["btc_usdc", "eth_usdc"])
    assert merged["balance"] == 12.5 and merged["id"] == 3
    assert merged["estimated_liquidation_ratio"] == 0.3
    assert merged["domains"] == {"btc_usdc": a, "eth_usdc": b}
    summaries = merge(
        "private/get_account_summaries",
        [{"id": 3, "summaries": [a]}, {"id": 3, "summaries": [b]}],
        ["btc_usdc", "eth_usdc"],
    )
    assert [s["balance"] for s in summaries["summaries"]] == [12.5]  # one per currency
    assert merge("private/get_positions", [[1], [2, 3]], ["a", "b"]) == [1, 2, 3]
    assert merge("private/cancel_all", [2, 3], ["a", "b"]) == 5


def test_a_transfer_goes_to_its_source_domain() -> None:
    route = TABLE.route("private/submit_transfer_to_domain", {"domain": "eth_usdc", "amount": 5})
    assert route.targets == [0] and route.params == {"domain": 1, "amount": 5}
    route = TABLE.route(
        "private/submit_transfer_to_domain", {"domain": "0", "source": "eth_usdc", "amount": 5}
    )
    assert route.targets == [1] and route.params == {"domain": 0, "amount": 5}
    for params in ({"domain": "nowhere"}, {"domain": 0, "source": 0}, {"domain": 9}):
        assert TABLE.route("private/submit_transfer_to_domain", params).error is not None


def _message(payload: bytes, signature: str | None) -> SimpleNamespace:
    headers = {SIGNATURE_HEADER: signature} if signature is not None else None
    return SimpleNamespace(data=payload, headers=headers, reply="")


def test_the_inbox_takes_only_requests_signed_for_its_domain() -> None:
    key = bytes(range(32))
    inbox = object.__new__(Inbox)  # the check alone: no NATS connection
    inbox.key = key
    inbox.log = SimpleNamespace(domain="eth_usdc")
    records = command_array(1)
    records["kind"] = CommandKind.TRANSFER_IN
    payload = records.tobytes()
    assert inbox.authentic(_message(payload, sign_request(key, "eth_usdc", payload)))
    assert not inbox.authentic(_message(payload, None))
    assert not inbox.authentic(_message(payload, "0" * 64))
    assert not inbox.authentic(_message(payload, "é"))  # not ASCII: no match, no error
    assert not inbox.authentic(_message(payload, sign_request(key, "btc_usdc", payload)))
    assert not inbox.authentic(_message(payload, sign_request(b"x" * 32, "eth_usdc", payload)))
    altered = np.frombuffer(payload, dtype=records.dtype).copy()
    altered["amount_units"] = 10**9
    assert not inbox.authentic(_message(altered.tobytes(), sign_request(key, "eth_usdc", payload)))
