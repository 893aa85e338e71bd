"""The leader lease of a domain: one key in a JetStream KV bucket (``dx_leases``, R3,
file storage, history 1), written with a per-message TTL.

- **acquire**: create the key (fails while it exists), with TTL ``ttl_s``;
- **renew**: compare-and-set on the revision we wrote last (``Nats-Expected-Last-
  Subject-Sequence``), with a fresh TTL; fails once the key expired or another holder
  created it;
- expiry: the server deletes the message after its TTL; the key is then free to create.

The revision at acquisition is the holder's **epoch** (strictly increasing over the
bucket's life): the leader puts it in its frames' Msg-Ids so that a new leader's frames
never pass as an old leader's retries.

The lease keeps elections tidy; it is not what keeps two writers out of the stream. The
stream's expected-last-sequence fence does that (docs/cluster.md): a leader paused past
its TTL may still believe it leads until it tries to write. ``valid`` is a local,
conservative check (TTL counted from the moment the renew was *sent*, on the monotonic
clock, which runs on while a process is stopped) so a resumed leader usually stops before
it even publishes.
"""

from __future__ import annotations

import contextlib
import time

import nats.js.errors
from nats.js import api

from derivex.cluster.jetstream import TRANSIENT, JetStreamLog

__all__ = ["BUCKET", "Lease"]

BUCKET = "dx_leases"


class Lease:
    """The lease of ``domain`` for ``holder`` (a name for logs), over the connection and
    loop thread of ``log``. Not thread-safe."""

    def __init__(self, log: JetStreamLog, holder: str, *, ttl_s: int = 2) -> None:
        if ttl_s < 1:
            raise ValueError("the server counts TTLs in whole seconds: ttl_s >= 1")
        self.log = log
        self.key = log.domain
        self.holder = holder
        self.ttl_s = ttl_s
        self.revision = 0  # of our last write; 0: not held
        self.epoch = 0  # the revision we acquired with
        self._valid_until = 0.0
        self._kv = log.loop.call(self._bucket(), log.setup_for + 5)

    async def _bucket(self):  # type: ignore[no-untyped-def]
        config = api.KeyValueConfig(
            bucket=BUCKET, history=1, replicas=3, storage=api.StorageType.FILE
        )
        return await self.log.retrying(
            lambda: self.log.js.create_key_value(config), self.log.setup_for
        )

    @property
    def held(self) -> bool:
        return self.revision > 0

    @property
    def valid(self) -> bool:
        """Held, and its TTL (counted from the last renew's send) has not run out."""
        return self.held and time.monotonic() < self._valid_until

    def try_acquire(self) -> bool:
        """Create the key if it is free; True when we now hold it. Cost: one round trip;
        a stream leader election (no responders, timeouts) is retried for the log's
        ``retry_for`` seconds, then raised. A create that landed but whose reply was
        lost reads as taken on the retry: the key expires after its TTL (a delay, never
        two holders)."""
        sent = time.monotonic()
        try:
            revision = self.log.loop.call(
                self.log.retrying(
                    lambda: self._kv.create(self.key, self.holder.encode(), msg_ttl=self.ttl_s)
                ),
                self.log.retry_for + 5,
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        self.revision = self.epoch = revision
        self._valid_until = sent + self.ttl_s
        return True

    def acquire(self, timeout: float, poll_s: float = 0.2) -> bool:
        """Try until the key is free (the holder's TTL ran out) or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
        return True

    def renew(self) -> bool:
        """CAS on our revision with a fresh TTL. False (and no longer held) when the key
        expired, someone else holds it, or the bucket did not answer within the log's
        ``retry_for`` (a renewal that landed but whose reply was lost also reads as lost
        on the retry: the leader stops, never two leaders). Cost: one round trip."""
        try:
            return self.log.loop.call(self.renew_async(), self.log.retry_for + 5)
        except TRANSIENT:
            self.revision = 0
            return False

    async def renew_async(self) -> bool:
        """:meth:`renew` as a coroutine on the log's loop (a serving leader renews without
        blocking its gateway: ``Leader.keep_lease``)."""
        if not self.held:
            return False
        sent = time.monotonic()
        try:
            ack = await self.log.retrying(
                lambda: self.log.js.publish(
                    f"$KV.{BUCKET}.{self.key}",
                    self.holder.encode(),
                    headers={api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(self.revision)},
                    msg_ttl=self.ttl_s,
                )
            )
        except (nats.js.errors.APIError, *TRANSIENT):
            self.revision = 0
            return False
        self.revision = ack.seq
        self._valid_until = sent + self.ttl_s
        return True

    def holder_now(self) -> str | None:
        """Who holds the key now (None: free)."""
        try:
            entry = self.log.loop.call(self._kv.get(self.key), self.log.retry_for + 5)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return entry.value.decode() if entry.value else None

    def peek(self) -> tuple[str, int] | None:
        """(holder, revision) of the key now, None when free or not known now (for logs:
        a stream leader election is not waited out)."""
        try:
            entry = self.log.loop.call(self._kv.get(self.key), self.log.retry_for + 5)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError, *TRANSIENT):
            return None
        return (entry.value or b"").decode(), entry.revision or 0

    def release(self) -> None:
        """Give the lease up (delete the key if we still hold it)."""
        if self.held:
            with contextlib.suppress(nats.js.errors.APIError):
                self.log.loop.call(self._kv.delete(self.key, last=self.revision), 5.0)
        self.revision = 0
