"""Group commit at the gateway: an order's reply (and everything after it on the socket)
leaves only once the ``fdatasync`` covering it has returned, and the event loop keeps
serving while the disk works. The disk is held by blocking ``os.fdatasync`` in the
journal's flusher thread."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import aiohttp

from derivex.exchange import Exchange
from derivex.gateway import Gateway, GatewayThread, KeyStore, Venue
from derivex.gateway.listing import list_all, perpetual
from derivex.journal import Journal

from ..gateway.conftest import test_config as engine_config


def test_reply_waits_for_the_flush_and_the_loop_does_not(tmp_path, monkeypatch) -> None:
    held = threading.Event()
    release = threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if threading.current_thread().name.startswith("journal-flush") and held.is_set():
            release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    keys = KeyStore(None)
    journal = Journal(tmp_path / "journal")

    def build() -> Gateway:
        exchange = Exchange(engine_config(), journal=journal)
        return Gateway(Venue(exchange, list_all(exchange, [perpetual("BTC")])), keys)

    thread = GatewayThread(build)
    thread.start()
    try:

        def fund() -> tuple[str, str]:
            exchange = thread.gateway.venue.exchange
            account = exchange.create_account()
            exchange.deposit(account, 10**12)
            key = keys.create(account)
            return key.client_id, key.client_secret

        client_id, secret = thread.call(fund)
        asyncio.run(_scenario(thread, journal, client_id, secret, held, release))
    finally:
        release.set()
        thread.stop()
        journal.close()


async def _scenario(
    thread: GatewayThread,
    journal: Journal,
    client_id: str,
    secret: str,
    held: threading.Event,
    release: threading.Event,
) -> None:
    url = thread.gateway.url.replace("http", "ws", 1) + "/ws/api/v2"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json(
            {
                "id": 1,
                "method": "public/auth",
                "params": {
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            }
        )
        assert "result" in json.loads((await ws.receive()).data)
        before = journal.last_seq
        held.set()  # from now on the disk does not return
        await ws.send_json(
            {
                "id": 2,
                "method": "private/buy",
                "params": {
                    "instrument_name": "BTC_USDC-PERPETUAL",
                    "amount": 0.001,
                    "type": "limit",
                    "price": 58_500,
                },
            }
        )
        deadline = time.monotonic() + 30
        while journal.last_seq == before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the engine placed it and the journal wrote it...
        assert journal.last_seq > before and journal.durable_seq < journal.last_seq
        # ...but no reply while its flush is held, and the event loop is not blocked: it
        # runs a call at once (the engine could take the next tick's orders)
        seen = await asyncio.to_thread(thread.call, lambda: journal.last_seq, 10)
        assert seen == journal.last_seq
        pending = asyncio.ensure_future(ws.receive())
        await asyncio.sleep(0.2)
        assert not pending.done(), "the order was acknowledged before it was durable"
        release.set()
        reply = json.loads((await asyncio.wait_for(pending, 30)).data)
        assert reply["id"] == 2 and "result" in reply, reply
        assert journal.durable_seq >= before + 1
