"""Revocation and logout against a real gateway: ``derivex keys revoke`` run in another
process ends every credential of the key at once (signed REST through ccxt, the
client_credentials and client_signature grants, bearer, access-token parameter and refresh
tokens issued before), including a key that was in the keys file when the server started,
and closes the WebSockets authenticated with it (notice, then close 1008) while other keys'
sessions go on. ``private/logout`` ends its session's tokens and subscriptions."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import aiohttp
import ccxt
import pytest

from derivex.gateway import ApiKey, KeyStore
from derivex.gateway.auth import MAX_TOKENS_PER_KEY, Authenticator
from derivex.gateway.errors import RpcError
from tests.adversarial import creds_support
from tests.adversarial.creds_support import (
    FileServer,
    Socket,
    error_of,
    grant_signature,
    http,
    revoke,
    run,
)
from tests.gateway import conftest as gateway_fixtures
from tests.gateway.conftest import Server

file_server = creds_support.file_server  # fixtures
server = gateway_fixtures.server

BUY = {"instrument_name": "BTC_USDC-PERPETUAL", "amount": 1, "price": 1000, "type": "limit"}


def _credentials(key: ApiKey) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": key.client_id,
        "client_secret": key.client_secret,
    }


def _tokens(url: str, key: ApiKey) -> dict[str, str]:
    reply = http(url, "/api/v2/public/auth?" + urllib.parse.urlencode(_credentials(key)))
    return reply["result"]


def _every_credential_refused(
    server: FileServer, key: ApiKey, tokens: dict[str, str], client: ccxt.deribit
) -> None:
    url = server.url
    with pytest.raises(ccxt.AuthenticationError):  # signed REST (ccxt's path)
        client.fetch_balance()
    granted = http(url, "/api/v2/public/auth?" + urllib.parse.urlencode(_credentials(key)))
    assert error_of(granted)["code"] == 13004
    refreshed = http(
        url,
        "/api/v2/public/auth?"
        + urllib.parse.urlencode(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        ),
    )
    assert error_of(refreshed)["code"] == 13009
    bearer = http(url, "/api/v2/private/get_open_orders", header=f"Bearer {tokens['access_token']}")
    assert error_of(bearer)["code"] == 13009
    parameter = http(
        url,
        "/api/v2/private/get_open_orders?access_token="
        + urllib.parse.quote(tokens["access_token"]),
    )
    assert error_of(parameter)["code"] == 13009

    signed = http(url, "/api/v2/public/auth?" + urllib.parse.urlencode(grant_signature(key)))
    assert error_of(signed)["code"] == 13004

    async def signature_grant() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            sock = Socket(ws)
            await ws.send_str(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "public/auth",
                        "params": grant_signature(key),
                    }
                )
            )
            return await sock.closed()

    # over a WebSocket a failed signature grant closes it (what ccxt.pro needs)
    assert run(signature_grant()) == (1008, "authentication failed")


def test_revocation_by_another_process_ends_every_credential_and_session(
    file_server: FileServer,
) -> None:
    server = file_server
    for key in (server.boot, server.keys.create(server.account())):  # at start / at run time
        other = server.keys.create(server.account())
        client = server.sync(key)
        assert client.fetch_balance()["USDC"]["total"] > 0
        tokens = _tokens(server.url, key)
        assert "result" in http(
            server.url, "/api/v2/private/get_open_orders", header=f"Bearer {tokens['access_token']}"
        )

        async def scenario(key: ApiKey = key, other: ApiKey = other) -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(server.ws_url) as ws,
                session.ws_connect(server.ws_url) as ws_other,
            ):
                mine, theirs = Socket(ws), Socket(ws_other)
                assert "result" in await mine.call("public/auth", _credentials(key))
                assert "result" in await theirs.call("public/auth", grant_signature(other))
                assert (
                    await mine.call("private/subscribe", {"channels": ["user.orders.any.any.raw"]})
                )["result"]
                assert "result" in await mine.call("private/buy", BUY)
                await mine.notified("user.orders")
                await asyncio.to_thread(revoke, server.data, key.client_id)
                code, reason = await mine.closed()
                assert (code, reason) == (1008, "credentials revoked")
                assert {
                    "jsonrpc": "2.0",
                    "method": "session_closed",
                    "params": {"reason": "credentials_revoked"},
                } in mine.notifications
                # another key's session is untouched
                assert "result" in await theirs.call("private/buy", BUY)

        run(scenario())
        _every_credential_refused(server, key, tokens, client)
        assert server.sync(other).fetch_balance()["USDC"]["total"] > 0


def test_revocation_in_the_serving_process_closes_its_sessions_at_once(server: Server) -> None:
    """A revocation through the server's own store (no poll involved) de-authorises and
    closes the key's sessions in the same loop step; what they placed before stays."""
    key = server.key()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            sock = Socket(ws)
            assert "result" in await sock.call("public/auth", _credentials(key))
            assert "result" in await sock.call("private/buy", BUY)

            def revoke_now() -> int:
                assert server.gateway.keys.revoke(key.client_id)
                return sum(
                    1
                    for conn in server.gateway.connections
                    if conn.session.key is not None and conn.session.key.client_id == key.client_id
                )

            assert server.thread.call(revoke_now) == 0  # none left authenticated
            assert await sock.closed() == (1008, "credentials revoked")

    run(scenario())
    assert server.keys.lookup(key.client_id) is None
    orders = server.thread.call(lambda: server.gateway.venue.open_orders(key.account))
    assert len(orders) == 1  # the order placed before the revocation


def test_logout_ends_its_tokens_and_subscriptions(file_server: FileServer) -> None:
    server = file_server
    key = server.keys.create(server.account())

    async def scenario() -> dict[str, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.ws_url) as ws,
            session.ws_connect(server.ws_url) as ws_kept,
        ):
            sock, kept = Socket(ws), Socket(ws_kept)
            tokens = (await sock.call("public/auth", _credentials(key)))["result"]
            assert "result" in await kept.call("public/auth", _credentials(key))
            for each in (sock, kept):
                assert (
                    await each.call("private/subscribe", {"channels": ["user.orders.any.any.raw"]})
                )["result"]
            assert (await sock.call("private/logout"))["result"] == "ok"
            code, reason = await sock.closed()
            assert (code, reason) == (1000, "logged out")
            # the other session of the same key is not logged out
            assert "result" in await kept.call("private/buy", BUY)
            await kept.notified("user.orders")
            return tokens

    tokens = run(scenario())
    bearer = http(
        server.url, "/api/v2/private/get_open_orders", header=f"Bearer {tokens['access_token']}"
    )
    assert error_of(bearer)["code"] == 13009
    refreshed = http(
        server.url,
        "/api/v2/public/auth?"
        + urllib.parse.urlencode(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        ),
    )
    assert error_of(refreshed)["code"] == 13009
    # over REST: logging out with a bearer token ends that token and its refresh token
    rest = _tokens(server.url, key)
    header = f"Bearer {rest['access_token']}"
    assert http(server.url, "/api/v2/private/logout", header=header)["result"] == "ok"
    assert (
        error_of(http(server.url, "/api/v2/private/get_open_orders", header=header))["code"]
        == 13009
    )
    assert (
        error_of(
            http(
                server.url,
                "/api/v2/public/auth?"
                + urllib.parse.urlencode(
                    {"grant_type": "refresh_token", "refresh_token": rest["refresh_token"]}
                ),
            )
        )["code"]
        == 13009
    )
    assert server.sync(key).fetch_balance()["USDC"]["total"] > 0  # the key itself lives on


def test_logout_without_invalidating_keeps_the_tokens(file_server: FileServer) -> None:
    server = file_server
    key = server.keys.create(server.account())

    async def scenario() -> dict[str, str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            sock = Socket(ws)
            tokens = (await sock.call("public/auth", _credentials(key)))["result"]
            assert (await sock.call("private/logout", {"invalidate_token": False}))[
                "result"
            ] == "ok"
            assert (await sock.closed())[0] == 1000
            return tokens

    tokens = run(scenario())
    assert "result" in http(
        server.url, "/api/v2/private/get_open_orders", header=f"Bearer {tokens['access_token']}"
    )


def test_tokens_per_key_are_bounded() -> None:
    """Authenticating again and again keeps at most MAX_TOKENS_PER_KEY live token pairs
    per key: one more ends the oldest pair (access and refresh), not memory."""
    store = KeyStore(None)
    key = store.create(3)
    auth = Authenticator(store)
    issued = [
        auth.auth(_credentials(key), "198.51.100.7:1")[1] for _ in range(MAX_TOKENS_PER_KEY + 10)
    ]
    for old in issued[:10]:
        with pytest.raises(RpcError):
            auth.from_token(old["access_token"])
        with pytest.raises(RpcError):
            auth.auth({"grant_type": "refresh_token", "refresh_token": old["refresh_token"]})
    assert all(auth.from_token(live["access_token"]) == key for live in issued[10:])
    assert len(auth._access) == len(auth._refresh) == MAX_TOKENS_PER_KEY
