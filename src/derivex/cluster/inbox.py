"""A domain leader's inbox: commands other services hand to the domain's sequencer (today
the transfer relay's TRANSFER_IN and TRANSFER_REFUND), as core NATS requests on
``dx.<domain>.inbox``.

A request's payload is whole command records (``COMMAND_DTYPE``, 64 bytes each; ``seq``
and ``ts_ns`` are stamped by the leader). The callback only checks and queues them (it runs
on the log's loop thread); the leader's own loop calls :meth:`Inbox.drain` between its
batches, which sequences every queued request as one frame and answers each with
``ok <first seq> <last seq>`` once the frame is quorum-durable, or ``error <why>`` for a
request it refused (wrong size, a kind the inbox does not take, too many records). A
request the leader never answers (it died, or lost the lease) times out at the sender,
who sends it again: the kinds taken here are idempotent in the core (a transfer or refund
number is processed once), so a repeat is refused there and changes nothing.

**Authentication.** With a key (``inbox.key``, 32 random bytes in hex, shared by the
leaders and the relay: ``cluster up`` writes one per venue), a request must carry the
header ``Dx-Inbox-Sig``: the hex HMAC-SHA256 under that key of the domain's name, a
newline and the payload. Anything else is refused with ``error unauthenticated`` and
counted (``refused``); it never reaches the sequencer. The domain is signed so a request
for one domain cannot be replayed into another; a replay into the same domain is a repeat
the core already refuses (above). Without a key (a node started by hand without one) the
inbox takes every request and says so once in the log.

Cost: O(records) per request, plus one HMAC with a key; the queue holds at most ``limit``
records (a request that would exceed it is refused with ``error busy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import queue
import secrets
import threading
from pathlib import Path
from typing import Any

import numpy as np

from derivex.cluster.jetstream import JetStreamLog
from derivex.core.records import COMMAND_DTYPE, RECORD_BYTES, CommandKind, concat_commands

__all__ = [
    "ACCEPTED_KINDS",
    "INBOX_KEY_FILE",
    "SIGNATURE_HEADER",
    "Inbox",
    "inbox_subject",
    "load_inbox_key",
    "new_inbox_key",
    "sign_request",
]

_log = logging.getLogger("derivex.cluster.inbox")

#: what the inbox sequences: the idempotent cross-domain commands
ACCEPTED_KINDS = (int(CommandKind.TRANSFER_IN), int(CommandKind.TRANSFER_REFUND))


INBOX_KEY_FILE = "inbox.key"
SIGNATURE_HEADER = "Dx-Inbox-Sig"


def inbox_subject(domain: str) -> str:
    return f"dx.{domain}.inbox"


def new_inbox_key(path: Path) -> bytes:
    """Write a new random key to ``path`` (mode 0600); returns it."""
    key = secrets.token_bytes(32)
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key


def load_inbox_key(path: Path | None) -> bytes | None:
    """The key in ``path`` (None for no path, or no file there). Raises ``ValueError``
    for a file that holds no key (refusing to run unauthenticated by mistake)."""
    if path is None or not path.exists():
        return None
    key = bytes.fromhex(path.read_text().strip())
    if len(key) < 16:
        raise ValueError(f"{path}: an inbox key is at least 16 bytes")
    return key


def sign_request(key: bytes, domain: str, payload: bytes) -> str:
    """The ``Dx-Inbox-Sig`` header of ``payload`` for ``domain``'s inbox."""
    return hmac.new(key, domain.encode() + b"\n" + payload, hashlib.sha256).hexdigest()


def check_request(payload: bytes, limit: int) -> np.ndarray | str:
    """The records of a request, or why it is refused."""
    if not payload or len(payload) % RECORD_BYTES:
        return "payload is not whole 64-byte command records"
    if len(payload) // RECORD_BYTES > limit:
        return f"more than {limit} records"
    records = np.frombuffer(payload, dtype=COMMAND_DTYPE).copy()
    if not np.isin(records["kind"], ACCEPTED_KINDS).all():
        return "only TRANSFER_IN and TRANSFER_REFUND are taken"
    return records


class Inbox:
    """Listens on ``log``'s domain inbox (see the module docstring). Thread-safe between
    the loop thread (requests) and one caller of :meth:`drain`."""

    def __init__(self, log: JetStreamLog, *, limit: int = 256, key: bytes | None = None) -> None:
        self.log = log
        self.limit = limit
        self.key = key
        self.refused = 0  # requests refused for a missing or wrong signature
        if key is None:
            _log.warning("inbox of %s takes unauthenticated requests (no key)", log.domain)
        self._queue: queue.SimpleQueue[tuple[np.ndarray, str]] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self._subscription = log.loop.call(
            log.nc.subscribe(inbox_subject(log.domain), cb=self._on_request), 5.0
        )

    def authentic(self, message: Any) -> bool:
        """Whether ``message`` carries the right signature (always, without a key)."""
        if self.key is None:
            return True
        given = (message.headers or {}).get(SIGNATURE_HEADER, "")
        expected = sign_request(self.key, self.log.domain, message.data)
        return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))

    async def _on_request(self, message: Any) -> None:
        if not self.authentic(message):
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:  # a flood must not flood the log
                _log.warning("inbox of %s: %d unauthenticated requests refused",
                             self.log.domain, self.refused)  # fmt: skip
            if message.reply:
                await self.log.nc.publish(message.reply, b"error unauthenticated")
            return
        checked = check_request(message.data, self.limit)
        if isinstance(checked, str):
            if message.reply:
                await self.log.nc.publish(message.reply, f"error {checked}".encode())
            return
        with self._lock:
            if self._queued + len(checked) > self.limit:
                busy = True
            else:
                busy = False
                self._queued += len(checked)
        if busy:
            if message.reply:
                await self.log.nc.publish(message.reply, b"error busy")
            return
        self._queue.put((checked, message.reply or ""))

    def drain(self, sequence: Any, acked: Any = None) -> int:
        """Sequence every queued request as one frame through ``sequence`` (the leader's
        ``sequence``), then answer them. Returns the records sequenced. What ``sequence``
        raises (a fenced leader) propagates, the requests unanswered. ``acked`` (a
        pipelined leader's ``FramePipeline``): ``sequence`` returned once applied, so the
        answers wait, on the log's loop, until the pipeline's ``acked_seq`` covers the
        frame (never answered if the pipeline fails: the sender sends again)."""
        requests = []
        while True:
            try:
                requests.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not requests:
            return 0
        with self._lock:
            self._queued -= sum(len(records) for records, _ in requests)
        batch = concat_commands([records for records, _ in requests])
        sequence(batch)
        first = int(batch["seq"][0])
        answers = []
        for records, reply in requests:
            last = first + len(records) - 1
            if reply:
                answers.append((reply, f"ok {first} {last}".encode()))
            first = last + 1
        if acked is None:
            for reply, answer in answers:
                with contextlib.suppress(Exception):  # the sender may be gone
                    self.log.loop.call(self.log.nc.publish(reply, answer), 5.0)
        elif answers:
            asyncio.run_coroutine_threadsafe(
                self._answer_when_acked(acked, int(batch["seq"][-1]), answers),
                self.log.loop.loop,
            )
        return len(batch)

    async def _answer_when_acked(
        self, pipe: Any, last: int, answers: list[tuple[str, bytes]]
    ) -> None:
        while pipe.acked_seq < last:
            if pipe.failed is not None:
                return
            await asyncio.sleep(0.001)
        for reply, answer in answers:
            with contextlib.suppress(Exception):  # the sender may be gone
                await self.log.nc.publish(reply, answer)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the connection may already be closed
            self.log.loop.call(self._subscription.unsubscribe(), 5.0)
