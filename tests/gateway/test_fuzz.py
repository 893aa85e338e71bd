"""Fuzzed frames: whatever a client sends over WebSocket or HTTP, the server answers each
frame with one JSON-RPC reply and keeps the connection (and itself) up."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from derivex.gateway.keys import ApiKey
from derivex.gateway.methods import METHODS
from tests.gateway.conftest import Server

# public/auth with client_signature closes the socket on failure (what ccxt.pro needs);
# tests/gateway/test_ccxt_async.py covers that path
METHOD_NAMES = [*sorted(set(METHODS) - {"public/auth"}), "public/auth", "private/nope", ""]
INSTRUMENTS = ["BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL", "NOPE", "", "BTC.USDC"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "0.1",
            "100",
            "-1",
            "1e9",
            "true",
            "limit",
            "market",
            "immediate_or_cancel",
            "any",
            "BTC",
            "1.5e-300",
        ]
    ),
    st.sampled_from(INSTRUMENTS),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
param_names = st.sampled_from(
    [
        "instrument_name",
        "amount",
        "price",
        "type",
        "order_id",
        "currency",
        "kind",
        "count",
        "depth",
        "channels",
        "label",
        "post_only",
        "reduce_only",
        "time_in_force",
        "grant_type",
        "start_timestamp",
        "interval",
        "access_token",
    ]
)
requests = st.fixed_dictionaries(
    {"method": st.sampled_from(METHOD_NAMES)},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": st.one_of(
            st.integers(-10, 2**40),
            st.text(max_size=5),
            st.none(),
            st.lists(st.integers(), max_size=1),
        ),
        "params": st.one_of(st.dictionaries(param_names, values, max_size=6), values),
    },
)


def frames() -> st.SearchStrategy[bytes]:
    shaped = requests.map(lambda r: json.dumps(r).encode())
    raw = st.binary(max_size=200)
    texts = st.text(max_size=200).map(str.encode)
    json_values = values.map(lambda v: json.dumps(v).encode())
    big = st.integers(65 * 1024, 200 * 1024).map(lambda n: b'{"method":"' + b"x" * n + b'"}')
    return st.one_of(shaped, shaped, shaped, raw, texts, json_values, big)


def _no_auth_signature(frame: bytes) -> bool:
    """Frames after which the socket stays open: a failed signature grant and a logout
    close it (by design; tests/adversarial/test_creds_*.py)."""
    return b"client_signature" not in frame and b"private/logout" not in frame


def _check_reply(text: Any) -> dict[str, Any]:
    reply = orjson.loads(text)
    assert isinstance(reply, dict) and reply.get("jsonrpc") == "2.0"
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        assert isinstance(reply["error"]["code"], int)
        assert reply["error"]["code"] != 11094, reply  # an unexpected exception in a handler
    return reply


@pytest.fixture(scope="module")
def fuzz_key(server: Server) -> ApiKey:
    return server.key()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(frames().filter(_no_auth_signature), min_size=1, max_size=8))
def test_websocket_answers_every_frame(
    server: Server, fuzz_key: ApiKey, batch: list[bytes]
) -> None:
    key = fuzz_key
    with connect(server.ws_url, max_size=2**22, open_timeout=10) as ws:
        ws.send(
            orjson.dumps(
                {
                    "id": 0,
                    "method": "public/auth",
                    "params": {
                        "grant_type": "client_credentials",
                        "client_id": key.client_id,
                        "client_secret": key.client_secret,
                    },
                }
            ).decode()
        )
        assert "access_token" in _check_reply(ws.recv(timeout=10))["result"]
        for frame in batch:
            ws.send(frame.decode("utf-8", "replace") if frame[:1] != b"\xff" else frame)
            while True:  # skip subscription notifications
                reply = orjson.loads(ws.recv(timeout=10))
                if reply.get("method") not in ("subscription", "heartbeat"):
                    break
            _check_reply(orjson.dumps(reply))
        ws.send('{"jsonrpc":"2.0","id":99,"method":"public/test"}')
        while True:
            reply = orjson.loads(ws.recv(timeout=10))
            if reply.get("id") == 99:
                break
        assert reply["result"]["version"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from([*METHOD_NAMES, "public/" + "x" * 300, "private/../../etc"]),
    query=st.dictionaries(param_names, scalars.map(str), max_size=5),
    header=st.sampled_from(
        [None, "deri-hmac-sha256 id=a,ts=1,sig=2,nonce=3", "bearer x", "garbage"]
    ),
)
def test_http_answers_every_request(
    server: Server, method: str, query: dict[str, str], header: str | None
) -> None:
    path = method if method.startswith(("public/", "private/")) else "public/" + method
    url = f"{server.url}/api/v2/{urllib.parse.quote(path, safe='/')}"
    if query:
        url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    request = urllib.request.Request(url, headers={"Authorization": header} if header else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    if status == 404:  # a path outside /api/v2/{public,private}/<name>
        assert "/" in path.split("/", 1)[1] or not path.split("/", 1)[1]
        return
    reply = _check_reply(body)
    assert (status == 200) == ("result" in reply)


def test_websocket_data_frames_take_the_inline_path(server: Server) -> None:
    """With the installed aiohttp, data frames bypass the per-message receive loop
    (``server.attach_inline``): if its internals change, this fails rather than the gateway
    silently falling back to the slower path. A frame sent in the same packet as the
    upgrade request (parsed before the swap) and pipelined frames are all answered in
    order."""
    import base64
    import socket

    from derivex.gateway.connection import _InlineQueue

    host, port = server.url.removeprefix("http://").split(":")
    payloads = [
        orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "public/test"}) for i in range(5)
    ]

    def masked(payload: bytes) -> bytes:
        return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload

    with socket.create_connection((host, int(port)), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws/api/v2 HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + masked(payloads[0])
        )
        sock.sendall(b"".join(masked(p) for p in payloads[1:]))
        data = b""
        while data.count(b'"version"') < len(payloads):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
        ids = [
            orjson.loads(part)["id"] for part in _text_payloads(data[data.index(b"\r\n\r\n") + 4 :])
        ]
        assert ids == list(range(len(payloads)))
        queues = server.thread.call(
            lambda: [type(c.ws._reader) for c in server.gateway.connections]
        )
        assert _InlineQueue in queues


def _text_payloads(stream: bytes) -> list[bytes]:
    """Payloads of the unmasked server frames in ``stream`` (short and 16-bit lengths)."""
    out, at = [], 0
    while at < len(stream):
        size, head = stream[at + 1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(stream[at + 2 : at + 4], "big"), 4
        out.append(stream[at + head : at + head + size])
        at += head + size
    return out
