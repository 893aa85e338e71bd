"""The venue's keys in the ``dx_keys`` bucket (``cluster.shared_keys``), on a real
3-node nats-server cluster: stores in three directories (two leaders and a router, say)
follow one another's creations and revocations, revocation fires ``on_revoke`` (which
closes sessions in a gateway), a node that was away during a revocation does not bring
the key back, nor does an old copy of a keys file, and a damaged file at one node
revokes nothing elsewhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest

from derivex.cluster.servers import LocalCluster
from derivex.cluster.shared_keys import SharedKeys, encode
from derivex.gateway.keys import KEYS_FILE, KeyStore

pytestmark = pytest.mark.integration


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.02)


async def _follow(nc: object, directory: Path) -> tuple[KeyStore, SharedKeys, list[str]]:
    store = KeyStore(directory)
    revoked: list[str] = []
    store.on_revoke.append(lambda ids: revoked.extend(sorted(ids)))
    shared = SharedKeys(
        store, nc.jetstream(timeout=5.0), asyncio.ensure_future, lambda function: function()
    )  # type: ignore[attr-defined]
    await shared.start()
    return store, shared, revoked


def _run(work: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(work(), 60.0))


def test_keys_follow_one_bucket(nats_cluster: LocalCluster, tmp_path: Path) -> None:
    async def work() -> None:
        nc = await nats.connect(servers=nats_cluster.urls)
        try:
            a, shared_a, revoked_a = await _follow(nc, tmp_path / "a")
            b, shared_b, revoked_b = await _follow(nc, tmp_path / "b")
            made = a.create(7, ("read", "trade"), name="mm")
            await _until(lambda: b.lookup(made.client_id) == made, "a's key at b")
            # saved in b's keys.json too: a restart without NATS still knows it
            saved = json.loads((tmp_path / "b" / KEYS_FILE).read_text())
            assert [item["client_id"] for item in saved] == [made.client_id]
            # c is away while the key is revoked; its file still has the key
            (tmp_path / "c").mkdir()
            (tmp_path / "c" / KEYS_FILE).write_bytes((tmp_path / "b" / KEYS_FILE).read_bytes())
            assert a.revoke(made.client_id)
            await _until(lambda: b.lookup(made.client_id) is None, "revoked at b")
            assert revoked_b == [made.client_id] and revoked_a == [made.client_id]
            # the watch's echo of the creation, arriving after the revocation (a slow watch
            # under load), does not bring the key back for a moment anywhere
            shared_a._apply_put(encode(made))
            shared_b._apply_put(encode(made))
            assert a.lookup(made.client_id) is None and b.lookup(made.client_id) is None
            assert revoked_b == [made.client_id] and revoked_a == [made.client_id]
            c, shared_c, revoked_c = await _follow(nc, tmp_path / "c")
            await _until(lambda: c.lookup(made.client_id) is None, "revoked at c on start")
            assert revoked_c == [made.client_id]
            # a key only in c's file (made while c was away from NATS) is published
            (tmp_path / "d").mkdir()
            own = KeyStore(tmp_path / "d").create(9, ("read",))
            d, shared_d, _ = await _follow(nc, tmp_path / "d")
            await _until(lambda: a.lookup(own.client_id) == own, "d's own key at a")
            await _until(lambda: c.lookup(own.client_id) == own, "d's own key at c")
            # a revocation made in another process (``derivex keys revoke``: the file
            # rewritten) goes venue-wide through the store's file poll
            KeyStore(tmp_path / "d").revoke(own.client_id)
            d.refresh()
            await _until(lambda: a.lookup(own.client_id) is None, "file revoke at a")
            await _until(lambda: b.lookup(own.client_id) is None, "file revoke at b")
            # a damaged keys.json refuses every key at its node, and nowhere else
            third = a.create(11, ("read",))
            await _until(lambda: b.lookup(third.client_id) == third, "a's third key at b")
            (tmp_path / "b" / KEYS_FILE).write_text("not json")
            b.refresh()
            assert b.lookup(third.client_id) is None
            await asyncio.sleep(0.5)  # (time for a wrong delete to travel: none may come)
            assert a.lookup(third.client_id) == third and c.lookup(third.client_id) == third
            # repaired from an old copy that still holds the revoked key: it stays revoked
            old = [json.loads(encode(made)), json.loads(encode(third))]
            (tmp_path / "b" / KEYS_FILE).write_text(json.dumps(old))
            b.refresh()
            assert b.lookup(third.client_id) == third
            await _until(lambda: b.lookup(made.client_id) is None, "revoked again at b")
            assert a.lookup(made.client_id) is None and c.lookup(made.client_id) is None
            for shared in (shared_a, shared_b, shared_c, shared_d):
                await shared.close()
        finally:
            await nc.close()

    _run(work)
