"""Where each domain's leader serves its API: one key per domain in the JetStream KV
bucket ``dx_endpoints`` (R3, file storage, history 1), value ``{"url", "node",
"epoch"}`` as JSON.

A ``serve --cluster`` node writes its key once it serves as leader (``publish``); the
router (``derivex.cluster.router``) reads the keys (``Endpoints.refresh``) at start, every
``poll_s``, and at once when a domain's leader does not answer, so it follows a takeover
by itself. A key may name a dead leader until the next one writes: the router then meets a
refused connection and answers the retryable 10040 until the key changes. The lease epoch
orders the writes: a key is only replaced by a write of a later epoch or the same one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js import api

__all__ = ["BUCKET", "Endpoint", "Endpoints", "open_bucket", "publish"]

BUCKET = "dx_endpoints"
_log = logging.getLogger("derivex.cluster.endpoints")


@dataclass(frozen=True)
class Endpoint:
    url: str
    node: str
    epoch: int


async def open_bucket(js: Any) -> Any:
    """The bucket (created if missing). Cost: one or two round trips."""
    config = api.KeyValueConfig(bucket=BUCKET, history=1, replicas=3, storage=api.StorageType.FILE)
    return await js.create_key_value(config)


async def publish(js: Any, domain: str, endpoint: Endpoint) -> None:
    """Write ``domain``'s endpoint (a new leader's URL)."""
    kv = await open_bucket(js)
    value = {"url": endpoint.url, "node": endpoint.node, "epoch": endpoint.epoch}
    await kv.put(domain, json.dumps(value).encode())


class Endpoints:
    """The endpoints of ``domains`` as last read. Not thread-safe (one asyncio loop)."""

    def __init__(self, js: Any, domains: list[str]) -> None:
        self.js = js
        self.domains = domains
        self.known: dict[str, Endpoint] = {}
        self._kv: Any = None

    async def refresh(self) -> dict[str, Endpoint]:
        """Read every domain's key; a domain with none (no leader served yet) keeps what
        it had. Cost: one KV get per domain. Raises what nats-py raises on a lost
        connection (the caller tries again later)."""
        if self._kv is None:
            self._kv = await open_bucket(self.js)
        for domain in self.domains:
            try:
                entry = await self._kv.get(domain)
            except nats.js.errors.KeyNotFoundError:
                continue
            try:
                value = json.loads(entry.value or b"")
                found = Endpoint(str(value["url"]), str(value["node"]), int(value["epoch"]))
            except (ValueError, KeyError, TypeError):
                _log.warning("endpoint of %s unreadable: %r", domain, entry.value)
                continue
            old = self.known.get(domain)
            if old is None or found.epoch >= old.epoch:
                if old != found:
                    _log.info("endpoint of %s: %s (%s)", domain, found.url, found.node)
                self.known[domain] = found
        return self.known
