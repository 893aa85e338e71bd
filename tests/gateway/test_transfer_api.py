"""``private/submit_transfer_to_domain`` and ``private/get_domain_transfers`` on a real
gateway (the risk engine on): a transfer moves the amount into escrow, one beyond the free
collateral is refused with 10009 and changes nothing, bad parameters get -32602."""

from __future__ import annotations

from tests.gateway.test_margin_api import Risky, _take, _trader, risky  # noqa: F401


def test_transfer_to_another_domain_and_its_limits(risky: Risky) -> None:  # noqa: F811
    with _trader(risky, funds=50_000 * 10**6) as (socket, account):
        reply = socket.call("private/submit_transfer_to_domain", domain=1, amount="250.5")
        assert reply["result"] == {
            "transfer_id": 1,
            "domain": 1,
            "amount": 250.5,
            "balance": 49_749.5,
        }, reply
        table = socket.call("private/get_domain_transfers")["result"]
        assert table["escrow_out"] == 250.5 and table["credited_in"] == 0
        assert table["domains"][0]["domain"] == 1
        assert table["domains"][0]["out_count"] == 1
        # a position's initial margin binds: more than the free collateral is refused
        _take(risky, socket, "buy", 40)
        summary = socket.call("private/get_account_summary", currency="USDC")["result"]
        free = summary["available_funds"]
        refused = socket.call(
            "private/submit_transfer_to_domain", domain=1, amount=str(round(free + 1, 6))
        )
        assert refused["error"]["code"] == 10009, refused
        again = socket.call("private/get_domain_transfers")["result"]
        assert again == table  # nothing changed
        for params, name in (
            ({"domain": 16, "amount": 1}, "domain"),
            ({"domain": 1, "amount": 0}, "amount"),
            ({"domain": 1, "amount": "0.0000001"}, "amount"),
            ({"domain": "x", "amount": 1}, "domain"),
        ):
            bad = socket.call("private/submit_transfer_to_domain", **params)
            assert bad["error"]["code"] == -32602, (params, bad)
            assert bad["error"]["data"]["param"] == name, bad
    assert account > 2
