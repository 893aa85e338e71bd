"""The venue's API keys in one JetStream KV bucket, followed by every node and router.

A key made on one domain (``private/create_api_key``, ``derivex keys create`` in its data
directory) or through the router must trade on every domain, and a revocation must take
effect everywhere at once. Each leader and each router keeps its ``KeyStore`` (the
gateway checks signatures against it, so the secrets are needed) and runs a
``SharedKeys`` beside it:

- bucket ``dx_keys`` (R3, file storage, history 1), key = client id, value = the key as
  JSON (secret included: the NATS cluster is inside the venue's trust boundary, like the
  data directories that hold ``keys.json``);
- a key added to the local store is put into the bucket (``KeyStore.on_add``); a key
  revoked locally (a deleted line in ``keys.json``) is deleted from it
  (``KeyStore.on_revoke``);
- a watch on the bucket installs every put into the local store and revokes every
  delete, which closes the key's sessions and drops its tokens at once (the gateway's
  and the router's ``on_revoke`` listeners); a client id once revoked venue-wide is never
  installed again (the watch's echo of a key's creation can arrive after its revocation);
- on start, a local key the bucket has never seen is published, one the bucket holds
  as deleted is revoked here (a node that was down during a revocation does not bring
  the key back), one it holds differently is replaced by the bucket's.

Why a shared store and not a fan-out of each change by the router: a standby that takes
over later, a router started later, a node that was down, all read the same bucket; a
fan-out would have to be replayed to them. And a leader that cannot reach NATS to hear
of a revocation cannot acknowledge a command either (every command waits for its
PubAck), so a revoked key cannot trade anywhere once the delete is in the bucket.

Threads: the watch runs on the loop that owns the NATS connection; ``deliver`` hands
each change to the loop that owns the ``KeyStore`` (the same loop at the router).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from nats.js import api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from derivex.gateway.keys import ApiKey, KeyStore

__all__ = ["BUCKET", "SharedKeys", "decode", "encode"]

BUCKET = "dx_keys"

_log = logging.getLogger("derivex.cluster.keys")


def encode(key: ApiKey) -> bytes:
    return orjson.dumps(
        {
            "client_id": key.client_id,
            "client_secret": key.client_secret,
            "account": key.account,
            "scopes": list(key.scopes),
            "name": key.name,
            "created_ms": key.created_ms,
        }
    )


def decode(value: bytes) -> ApiKey:
    """Raises ValueError/KeyError/TypeError on a damaged value."""
    item = orjson.loads(value)
    return ApiKey(
        str(item["client_id"]),
        str(item["client_secret"]),
        int(item["account"]),
        tuple(str(s) for s in item["scopes"]),
        str(item.get("name", "")),
        int(item.get("created_ms", 0)),
    )


async def open_bucket(js: Any) -> Any:
    config = api.KeyValueConfig(bucket=BUCKET, history=1, replicas=3, storage=api.StorageType.FILE)
    return await js.create_key_value(config)


class SharedKeys:
    """Follows ``dx_keys`` into ``store`` and publishes ``store``'s own changes.

    ``submit(coroutine)`` runs a coroutine on the NATS connection's loop without
    waiting; ``deliver(function)`` runs a function on the store's loop. ``start`` (on
    the NATS loop) merges and starts the watch; ``close`` stops it."""

    def __init__(
        self,
        store: KeyStore,
        js: Any,
        submit: Callable[[Coroutine[Any, Any, Any]], Any],
        deliver: Callable[[Callable[[], None]], Any],
    ) -> None:
        self.store = store
        self.js = js
        self.submit = submit
        self.deliver = deliver
        self.applied = 0  # bucket changes applied here (the tests wait on it)
        self._kv: Any = None
        self._watch: asyncio.Task[None] | None = None
        self._from_bucket: set[str] = set()  # revocations the bucket told us of: no echo
        # ids revoked venue-wide (here or by the bucket): a put of one that arrives later
        # (the echo of its creation, delayed past the revocation) never installs it again
        self._dead: set[str] = set()
        store.on_add.append(self._added)
        store.on_revoke.append(self._revoked)

    async def start(self) -> None:
        """Open the bucket, merge the local keys (see the module), start the watch.
        Cost: one round trip per local key. Raises the NATS error if unreachable."""
        self._kv = await open_bucket(self.js)
        for key in self.store.list_keys():
            try:
                entry = await self._kv.get(key.client_id)
            except KeyNotFoundError as missing:
                # nats-py reports a deleted key as not found, with the delete marker's op
                if getattr(missing, "op", None) in ("DEL", "PURGE"):
                    self._apply_delete(key.client_id)
                else:  # never seen: published (``create`` would overwrite a delete)
                    with contextlib.suppress(KeyWrongLastSequenceError):  # raced: the watch
                        await self._kv.update(key.client_id, encode(key), last=0)
                continue
            self._apply_put(entry.value)
        watcher = await self._kv.watchall()
        self._watch = asyncio.create_task(self._follow(watcher))

    async def _follow(self, watcher: Any) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=3600.0)
            except Exception as error:  # a timeout with nothing new, or NATS reconnecting
                _log.debug("keys watch: %r", error)
                continue
            if entry is None:  # the initial values are all delivered
                continue
            if entry.operation in ("DEL", "PURGE"):
                self._apply_delete(entry.key)
            elif entry.value:
                self._apply_put(entry.value)

    def _apply_put(self, value: bytes) -> None:
        try:
            key = decode(value)
        except (ValueError, KeyError, TypeError) as error:
            _log.error("dx_keys: a damaged key ignored: %r", error)
            return
        self.deliver(lambda: self._install(key))

    def _apply_delete(self, client_id: str) -> None:
        self.deliver(lambda: self._revoke(client_id))

    def _install(self, key: ApiKey) -> None:
        if key.client_id not in self._dead:
            self.store.install(key)
        self.applied += 1

    def _revoke(self, client_id: str) -> None:
        self._dead.add(client_id)
        self._from_bucket.add(client_id)
        try:
            self.store.revoke(client_id)
        finally:
            self._from_bucket.discard(client_id)
        self.applied += 1

    # ---- local changes -> the bucket (called on the store's loop) ----

    def _added(self, key: ApiKey) -> None:
        if self._kv is not None:
            self.submit(self._put(key))

    def _revoked(self, client_ids: set[str]) -> None:
        if self._kv is None:
            return
        if self.store.damaged:  # a lost or broken keys.json: refused here, not everywhere
            _log.error("keys file missing or damaged: %d keys refused here only", len(client_ids))
            return
        for client_id in client_ids - self._from_bucket:
            if self.store.lookup(client_id) is None:  # a replaced key is still there
                self._dead.add(client_id)
                self.submit(self.delete(client_id))

    async def _put(self, key: ApiKey) -> None:
        """Publish a key added here, unless the bucket holds it as deleted: a key
        revoked venue-wide and then found again in a keys file (a restored backup, a
        repaired file) stays revoked, here too."""
        try:
            try:
                entry = await self._kv.get(key.client_id)
            except KeyNotFoundError as missing:
                if getattr(missing, "op", None) in ("DEL", "PURGE"):
                    _log.warning("dx_keys: key %s was revoked: not restored", key.client_id)
                    self._apply_delete(key.client_id)
                    return
                await self._kv.update(key.client_id, encode(key), last=0)
                return
            if entry.value != encode(key):
                await self._kv.update(key.client_id, encode(key), last=entry.revision)
        except Exception as error:
            _log.error("dx_keys: key %s not published: %r", key.client_id, error)

    async def delete(self, client_id: str) -> None:
        """Delete ``client_id`` venue-wide (on the NATS loop). Raises the NATS error."""
        if self._kv is None:
            self._kv = await open_bucket(self.js)
        await self._kv.delete(client_id)

    async def put(self, key: ApiKey) -> None:
        """Publish ``key`` venue-wide (on the NATS loop). Raises the NATS error."""
        if self._kv is None:
            self._kv = await open_bucket(self.js)
        await self._kv.put(key.client_id, encode(key))

    async def close(self) -> None:
        """Stop the watch (on the NATS loop)."""
        if self._added in self.store.on_add:
            self.store.on_add.remove(self._added)
        if self._revoked in self.store.on_revoke:
            self.store.on_revoke.remove(self._revoked)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch


async def follow_from(store: KeyStore, log: Any, node: str) -> SharedKeys | None:
    """``SharedKeys`` for a node whose NATS connection runs on ``log.loop`` (a
    ``LoopThread``), started from the loop that owns ``store`` (the gateway's); None,
    logged loudly, when NATS does not answer within 10 s (the node serves its local keys).
    Stop it with ``stop_from``."""
    nats_loop = log.loop
    shared = SharedKeys(
        store,
        log.js,
        lambda work: asyncio.run_coroutine_threadsafe(work, nats_loop.loop),
        asyncio.get_running_loop().call_soon_threadsafe,
    )
    try:
        await asyncio.to_thread(nats_loop.call, shared.start(), 10.0)
    except Exception as error:
        _log.error("%s: the shared keys bucket %s is not followed: %r", node, BUCKET, error)
        await stop_from(shared, log)
        return None
    return shared


async def stop_from(shared: SharedKeys | None, log: Any) -> None:
    if shared is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(log.loop.call, shared.close(), 5.0)
