"""Replays and guessing against a real gateway: a captured signed GET or POST, or a
client_signature grant, is accepted once (the replay gets 13009 "replayed signature" and
places nothing); failed attempts back off per connection and per client id, so the right
secret is refused while backed off and accepted after; an unknown client id and a wrong
secret or signature get identical errors."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import urllib.parse

import aiohttp
import pytest

from derivex.gateway import ApiKey
from derivex.gateway.auth_limits import CacheFull
from derivex.gateway.signatures import PROBE, SharedSignatureCache
from tests.adversarial import creds_support
from tests.adversarial.creds_support import (
    DERIVEX,
    Socket,
    error_of,
    grant_signature,
    http,
    run,
    signature_header,
)
from tests.gateway import conftest as gateway_fixtures
from tests.gateway.conftest import Server

server = gateway_fixtures.server  # fixtures
file_server = creds_support.file_server
BUY = {"instrument_name": "BTC_USDC-PERPETUAL", "amount": "1", "price": "1000", "type": "limit"}
VOLATILE = ("usIn", "usOut", "usDiff")


def _open_orders(server: Server, key: ApiKey) -> int:
    return server.thread.call(lambda: len(server.gateway.venue.open_orders(key.account)))


def _stable(reply: dict) -> dict:
    return {name: value for name, value in reply.items() if name not in VOLATILE}


@pytest.mark.parametrize("store", ["memory", "file"])
def test_signed_get_and_post_are_single_use(request: pytest.FixtureRequest, store: str) -> None:
    """With keys in memory (an in-process set of signatures) and in a keys file (the
    ``<data>/signatures`` table that every serving process shares)."""
    server = request.getfixturevalue("server" if store == "memory" else "file_server")
    key = server.key()
    target = "/api/v2/private/buy?" + urllib.parse.urlencode(BUY)
    header = signature_header(key, "GET", target)
    assert "result" in http(server.url, target, header=header)
    for _ in range(2):
        replayed = http(server.url, target, header=header)
        assert error_of(replayed) == {
            "code": 13009,
            "message": "unauthorized",
            "data": {"reason": "replayed signature"},
        }
    assert _open_orders(server, key) == 1
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "private/buy", "params": BUY})
    header = signature_header(key, "POST", "/api/v2", body)
    assert "result" in http(server.url, "/api/v2", header=header, body=body.encode(), method="POST")
    for _ in range(3):
        replayed = http(server.url, "/api/v2", header=header, body=body.encode(), method="POST")
        assert error_of(replayed)["data"] == {"reason": "replayed signature"}
    assert _open_orders(server, key) == 2
    # a fresh signature of the same request is a new request
    assert "result" in http(server.url, target, header=signature_header(key, "GET", target))
    assert _open_orders(server, key) == 3


def test_signature_grant_is_single_use(server: Server) -> None:
    key = server.key()
    grant = grant_signature(key)
    first = http(server.url, "/api/v2/public/auth?" + urllib.parse.urlencode(grant))
    assert first["result"]["access_token"]
    again = http(server.url, "/api/v2/public/auth?" + urllib.parse.urlencode(grant))
    assert error_of(again)["data"] == {"reason": "replayed signature"}

    async def over_websocket() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            await ws.send_str(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/auth", "params": grant})
            )
            return await Socket(ws).closed()

    assert run(over_websocket()) == (1008, "authentication failed")


def test_unknown_client_id_and_bad_secret_answer_alike(server: Server) -> None:
    key = server.key()
    unknown = secrets.token_hex(8)
    wrong = ApiKey(key.client_id, "not-the-secret", key.account)
    target = "/api/v2/private/get_open_orders"
    replies = [
        http(
            server.url, target, header=signature_header(signer, "GET", target, client_id=client_id)
        )
        for signer, client_id in ((wrong, None), (key, unknown))
    ]
    assert _stable(replies[0]) == _stable(replies[1])
    assert error_of(replies[0]) == {
        "code": 13009,
        "message": "unauthorized",
        "data": {"reason": "invalid credentials"},
    }

    async def grants() -> list[dict]:
        answers = []
        async with aiohttp.ClientSession() as session:
            for params in (
                {
                    "grant_type": "client_credentials",
                    "client_id": key.client_id,
                    "client_secret": "wrong",
                },
                {
                    "grant_type": "client_credentials",
                    "client_id": unknown,
                    "client_secret": key.client_secret,
                },
            ):
                async with session.ws_connect(server.ws_url) as ws:  # a fresh origin each
                    answers.append(_stable(await Socket(ws).call("public/auth", params)))
        return answers

    secret_wrong, id_unknown = run(grants())
    assert secret_wrong == id_unknown
    assert error_of(secret_wrong) == {"code": 13004, "message": "invalid_credentials"}
    signed = [
        http(
            server.url,
            "/api/v2/public/auth?"
            + urllib.parse.urlencode(grant_signature(signer, client_id=client_id)),
        )
        for signer, client_id in ((wrong, None), (key, unknown))
    ]
    assert _stable(signed[0]) == _stable(signed[1])
    assert error_of(signed[0]) == {"code": 13004, "message": "invalid_credentials"}


def test_brute_force_backs_off_until_it_ends(server: Server) -> None:
    key = server.key()

    async def scenario() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.ws_url) as ws,
            session.ws_connect(server.ws_url) as fresh,
        ):
            sock = Socket(ws)
            codes = []
            for attempt in range(300):
                reply = await sock.call(
                    "public/auth",
                    {
                        "grant_type": "client_credentials",
                        "client_id": key.client_id,
                        "client_secret": f"guess-{attempt}",
                    },
                )
                codes.append(error_of(reply)["code"])
            free = codes.index(10028)
            assert 1 <= free <= 10 and set(codes[:free]) == {13004}
            assert codes.count(13004) < 20  # the rest were refused unchecked
            right = {
                "grant_type": "client_credentials",
                "client_id": key.client_id,
                "client_secret": key.client_secret,
            }
            refused = await sock.call("public/auth", right)
            assert error_of(refused)["code"] == 10028
            # the key is backed off from any connection, not only the guessing one
            elsewhere = await Socket(fresh).call("public/auth", right)
            assert error_of(elsewhere)["code"] == 10028
            wait_ms = max(
                error_of(reply)["data"]["retry_after_ms"] for reply in (refused, elsewhere)
            )
            assert 0 < wait_ms <= 60_000
            await asyncio.sleep(wait_ms / 1000 + 0.05)
            accepted = await Socket(fresh).call("public/auth", right)
            assert accepted["result"]["access_token"]
            assert "result" in await Socket(fresh).call("private/get_open_orders")

    run(scenario())


def test_guessing_client_ids_backs_off_the_connection(server: Server) -> None:
    """Trying many ids from one connection (enumeration, or one secret against many keys)
    backs off that connection after a few failures, whichever ids they named; the HTTP
    peer is the connection for signed requests (one keep-alive connection here)."""
    key = server.key()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            sock = Socket(ws)
            codes = [
                error_of(
                    await sock.call(
                        "public/auth",
                        {
                            "grant_type": "client_credentials",
                            "client_id": secrets.token_hex(8),
                            "client_secret": "x",
                        },
                    )
                )["code"]
                for _ in range(30)
            ]
            assert 10028 in codes and codes.count(13004) < 20
            # the connection is backed off even for a valid key it never tried
            refused = await sock.call(
                "public/auth",
                {
                    "grant_type": "client_credentials",
                    "client_id": key.client_id,
                    "client_secret": key.client_secret,
                },
            )
            assert error_of(refused)["code"] == 10028
            async with session.ws_connect(server.ws_url) as other:  # another connection
                assert "result" in await Socket(other).call(
                    "public/auth",
                    {
                        "grant_type": "client_credentials",
                        "client_id": key.client_id,
                        "client_secret": key.client_secret,
                    },
                )

    run(scenario())

    async def signed_rest() -> list[int]:
        target = "/api/v2/private/get_open_orders"
        codes = []
        async with aiohttp.ClientSession() as session:  # one keep-alive connection
            for _ in range(30):
                header = signature_header(key, "GET", target, client_id=secrets.token_hex(8))
                async with session.get(
                    server.url + target, headers={"Authorization": header}
                ) as response:
                    codes.append((await response.json())["error"]["code"])
        return codes

    codes = run(signed_rest())
    assert 10028 in codes and codes.count(13009) < 20
    # a new connection with the right signature is not held back by that one
    assert "result" in http(
        server.url,
        "/api/v2/private/get_open_orders",
        header=signature_header(key, "GET", "/api/v2/private/get_open_orders"),
    )


def test_shared_signature_table_never_forgets_a_live_signature(tmp_path) -> None:
    """Signatures that share a home slot fill its probe window; one more is refused
    (CacheFull, answered 10028) rather than a live one forgotten; once their window has
    passed, the slots are reused. Two handles on the file (two processes) agree."""
    one = SharedSignatureCache(tmp_path / "signatures", window_ms=1000)
    other = SharedSignatureCache(tmp_path / "signatures", window_ms=1000)
    colliding = [bytes(8) + index.to_bytes(8, "little") + bytes(16) for index in range(PROBE)]
    for signature in colliding:
        assert one.use(signature, ts_ms=10_000, now_ms=10_000)
    with pytest.raises(CacheFull):
        other.use(bytes(8) + b"\xff" * 24, ts_ms=10_000, now_ms=10_500)
    assert not any(other.use(signature, 10_000, 10_999) for signature in colliding)
    assert other.use(bytes(8) + b"\xff" * 24, ts_ms=11_001, now_ms=11_001)  # expired: reused
    assert one.use(colliding[0], ts_ms=11_001, now_ms=11_001)  # its old entry expired
    one.close()
    other.close()


def test_hostile_bytes_in_credentials_get_auth_errors(server: Server) -> None:
    """Non-ASCII signatures, secrets and nonces, and raw non-UTF-8 header bytes are wrong
    credentials (13004/13009), never an internal error or a 500."""
    key = server.key()
    now = str(time.time_ns() // 1_000_000)
    for params in (
        {
            "grant_type": "client_signature",
            "client_id": key.client_id,
            "timestamp": now,
            "nonce": "é",
            "data": "",
            "signature": "é" * 64,
        },
        {
            "grant_type": "client_credentials",
            "client_id": key.client_id,
            "client_secret": "é" + key.client_secret,
        },
    ):
        reply = http(server.url, "/api/v2/public/auth?" + urllib.parse.urlencode(params))
        assert error_of(reply)["code"] == 13004
    # urllib sends header text as latin-1: \xff and \xe9 arrive as raw, non-UTF-8 bytes
    header = f"deri-hmac-sha256 id={key.client_id},ts={now},sig=\xff\xe9,nonce=\xff"
    reply = http(server.url, "/api/v2/private/get_open_orders", header=header)
    assert error_of(reply) == {
        "code": 13009,
        "message": "unauthorized",
        "data": {"reason": "invalid credentials"},
    }


def test_serve_refuses_a_malformed_auth_backoff(tmp_path) -> None:
    for text in ("5,1", "5,0,60", "5,10,1", "x,1,60"):
        done = subprocess.run(
            [*DERIVEX, "serve", "--auth-backoff", text, "--data-dir", str(tmp_path / "venue")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "--auth-backoff" in done.stderr, done.stderr
    assert not (tmp_path / "venue").exists()  # refused before anything was created


def test_damaged_signature_table_cannot_lock_signatures_out(tmp_path) -> None:
    """Garbage in ``<data>/signatures`` (times far in the future in every slot) does not
    hold slots for ever: a fresh signature is accepted once and refused as a replay."""
    from derivex.gateway.signatures import SLOTS, SharedSignatureCache

    path = tmp_path / "signatures"
    path.write_bytes(b"\xff" * (SLOTS * 24))  # every slot: time 2**64-1, never free
    table = SharedSignatureCache(path)
    try:
        signature = bytes(range(32))
        assert table.use(signature, ts_ms=5_000, now_ms=5_000)
        assert not table.use(signature, ts_ms=5_000, now_ms=5_001)
    finally:
        table.close()
