"""``derivex serve --workers 2``: a signature accepted by one gateway worker is a replay for
every worker; a key revoked by ``derivex keys revoke`` stops working on every worker, and
every worker closes its WebSockets authenticated with it."""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path

import aiohttp
import ccxt
import pytest

from derivex.gateway import ApiKey
from tests.adversarial.creds_support import (
    Socket,
    error_of,
    http,
    revoke,
    run,
    signature_header,
)
from tests.gateway.test_serve_workers import PERPETUAL, ServedWorkers, _free_port

CONNECTIONS = 8  # spread over both workers by SO_REUSEPORT (all on one: p = 2 / 2**8)


def test_replay_and_revocation_reach_every_worker(tmp_path: Path) -> None:
    data, log = tmp_path / "venue", tmp_path / "serve.log"
    served = ServedWorkers(data, log, _free_port())
    try:
        key = ApiKey(served.client_id, served.secret, 0)
        credentials = {
            "grant_type": "client_credentials",
            "client_id": key.client_id,
            "client_secret": key.client_secret,
        }
        ws_url = served.url.replace("http://", "ws://") + "/ws/api/v2"
        client = served.client()
        assert client.fetch_open_orders(PERPETUAL) == []
        # a signed order replayed on fresh connections (either worker) is refused by all
        buy = "/api/v2/private/buy?" + urllib.parse.urlencode(
            {
                "instrument_name": "BTC_USDC-PERPETUAL",
                "amount": "0.01",
                "price": "58500",
                "type": "limit",
            }
        )
        header = signature_header(key, "GET", buy)
        assert "result" in http(served.url, buy, header=header)
        for _ in range(CONNECTIONS):
            assert error_of(http(served.url, buy, header=header))["data"] == {
                "reason": "replayed signature"
            }
        assert len(client.fetch_open_orders(PERPETUAL)) == 1

        async def scenario() -> list[tuple[int, str]]:
            async with aiohttp.ClientSession() as session:
                sockets = []
                for _ in range(CONNECTIONS):
                    ws = await session.ws_connect(ws_url)
                    sock = Socket(ws)
                    assert "result" in await sock.call("public/auth", credentials)
                    sockets.append(sock)
                await asyncio.to_thread(revoke, data, key.client_id)
                closes = [await sock.closed() for sock in sockets]
                for sock in sockets:
                    await sock.ws.close()
                return closes

        assert run(scenario()) == [(1008, "credentials revoked")] * CONNECTIONS
        # fresh connections reach both workers; after a few failures the id is backed off
        # (10028), which refuses it as well
        for _ in range(CONNECTIONS):
            with pytest.raises((ccxt.AuthenticationError, ccxt.DDoSProtection)):
                served.client().fetch_open_orders(PERPETUAL)
            granted = http(served.url, "/api/v2/public/auth?" + urllib.parse.urlencode(credentials))
            assert error_of(granted)["code"] in (13004, 10028)
    finally:
        code, _ = served.stop()
    assert code == 0
    workers = {
        line
        for line in log.read_text().splitlines()
        if "websocket closed: credentials revoked" in line
    }
    assert len(workers) == CONNECTIONS
