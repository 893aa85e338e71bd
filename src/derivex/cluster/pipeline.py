"""Group commit on JetStream for a serving leader: the gateway's loop never waits for
the cluster.

Unpipelined, a ``Leader`` publishes each frame and waits for its PubAck in the
sequencer's before-hook, on the caller's thread: a gateway loop that sequences a batch
waits a round trip for it, and waits out a whole stream leader election (seconds, up to
the log's ``retry_for``) during which no client, not even a reader, is answered.

A :class:`FramePipeline` moves the waiting off that thread, as the embedded venue's group
commit journal does (``derivex.gateway.durability``):

- the before-hook only *queues* the stamped frame (:meth:`FramePipeline.push`); one writer
  task on the log's loop thread publishes the queue in order, one frame at a time, each
  with the fence (expected last stream seq) and its dedupe id, retrying elections with the
  same ids (``JetStreamLog``);
- the engine applies the frame at once; the gateway's ``DurabilityGate`` holds every reply
  and notification until ``acked_seq`` (the last command seq whose frame has its PubAck)
  covers what they report, so a client still hears of a command only once a quorum holds
  it. Queries read the leader's engine and keep being answered;
- **write outage**: once the oldest queued frame has waited ``outage_s`` for its PubAck,
  the before-hook refuses batches that would add risk (:class:`WriteOutage`, answered with
  the retryable 10040 ``write_outage``; nothing applied, no seq used) and still queues
  cancels, market inputs and operator commands: they are published first when writing
  resumes;
- a frame that fails (fenced by another writer, or no PubAck within ``retry_for``) stops
  the pipeline for good (:attr:`failed`): later frames are never published, the leader
  stops, and the replies still held are answered 13888 (outcome unknown) by the gate.

What the engine applied beyond ``acked_seq`` when a leader stops was never acknowledged
to anyone; the standby rebuilds from the stream, which is the truth.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.log import LogError, check_frame
from derivex.core.codec import KIND_OFFSET
from derivex.core.records import RECORD_BYTES, CommandKind

__all__ = ["QUEUED_IN_OUTAGE", "AckBell", "FramePipeline", "WriteOutage"]

#: command kinds still queued during a write outage: they take risk away (cancels), keep
#: the risk engine's inputs flowing (index, marks, time) or are the operator's
QUEUED_IN_OUTAGE = frozenset(
    int(kind)
    for kind in (
        CommandKind.NOOP,
        CommandKind.CANCEL_ORDER,
        CommandKind.CANCEL_ALL,
        CommandKind.CANCEL_ALL_INSTRUMENT,
        CommandKind.ADVANCE_TIME,
        CommandKind.SET_INDEX,
        CommandKind.INDEX_SOURCE,
        CommandKind.SET_RISK_ARRAY,
        CommandKind.RISK_GREEKS,
        CommandKind.RISK_VALUES,
        CommandKind.HALT_INSTRUMENT,
        CommandKind.RESUME_INSTRUMENT,
        CommandKind.CLOSE_INSTRUMENT,
        CommandKind.SET_INSTRUMENT,
        CommandKind.BLOCK_ACCOUNT,
        CommandKind.UNBLOCK_ACCOUNT,
    )
)
_QUEUED_TABLE = np.zeros(256, dtype=bool)
_QUEUED_TABLE[list(QUEUED_IN_OUTAGE)] = True


class WriteOutage(Exception):
    """The stream has not acknowledged the oldest queued frame for ``outage_s``: the batch
    (which would add risk) is refused before anything is applied; retry shortly."""


class AckBell:
    """What ``SharedDurability`` blocks on between looks at ``acked_seq``: rung by the
    writer after each PubAck."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()


class FramePipeline:
    """Publishes the frames :meth:`push` queues, in order, on ``log``'s loop thread.
    ``after_ack(position, last_seq)`` (optional, a coroutine function) runs on that thread
    after each PubAck. ``push``/``check``/``wait`` are for one caller thread."""

    def __init__(
        self,
        log: JetStreamLog,
        *,
        outage_s: float = 0.5,
        after_ack: Callable[[int, int], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.log = log
        self.outage_s = outage_s
        self.after_ack = after_ack
        self.acked_seq = log.last_seq
        self.acked_position = log.stream_last
        self.pushed_seq = log.last_seq
        self.failed: BaseException | None = None
        self.bell = AckBell()
        self._sent: deque[float] = deque()  # monotonic push time of each frame in flight
        self._acked = threading.Condition()
        self._queue: asyncio.Queue[tuple[bytes, int, int] | None] = log.loop.call(_new_queue(), 5.0)
        self._task = asyncio.run_coroutine_threadsafe(self._write(), log.loop.loop)

    # ---- the caller's side (the gateway loop) ----

    @property
    def in_flight(self) -> int:
        """Frames queued or being published."""
        return len(self._sent)

    def outage(self) -> bool:
        """The oldest frame in flight has waited ``outage_s`` for its PubAck."""
        try:
            return time.monotonic() - self._sent[0] > self.outage_s
        except IndexError:
            return False

    def check(self, commands: np.ndarray) -> None:
        """Raise the pipeline's failure, or :class:`WriteOutage` for a batch that would
        add risk during an outage. Cost: one table look-up per record, only in an outage."""
        if self.failed is not None:
            raise self.failed
        if self.outage():
            kinds = commands.view(np.uint8)[KIND_OFFSET::RECORD_BYTES]
            if not _QUEUED_TABLE[kinds].all():
                raise WriteOutage(
                    f"no PubAck for {self.outage_s} s: the stream is electing a leader or "
                    "unreachable"
                )

    def push(self, commands: np.ndarray) -> int:
        """Queue the stamped frame ``commands`` (continuing the last pushed seq); returns
        its last seq. Cost: one copy of the records and a thread hand-over."""
        first, last = check_frame(commands, self.pushed_seq)
        self.pushed_seq = last
        self._sent.append(time.monotonic())
        self.log.loop.loop.call_soon_threadsafe(
            self._queue.put_nowait, (commands.tobytes(), first, last)
        )
        return last

    def wait(self, seq: int, timeout: float) -> None:
        """Block until every command up to ``seq`` is acknowledged. Raises the failure,
        or LogError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._acked:
            while self.acked_seq < seq:
                if self.failed is not None:
                    raise self.failed
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LogError(f"seq {seq} not acknowledged within {timeout} s")
                self._acked.wait(left)

    def close(self) -> None:
        """Stop the writer (what is still queued is not published)."""
        self.log.loop.loop.call_soon_threadsafe(self._queue.put_nowait, None)
        try:
            self._task.result(5.0)
        except BaseException:  # closing: a writer that failed said so already
            self._task.cancel()

    # ---- the writer (the log's loop thread) ----

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if self.failed is not None:
                continue  # nothing after a failed frame may land
            payload, first, last = item
            try:
                await self.log._append(payload, first, last, first - 1)
            except BaseException as error:  # every failure stops the leader
                self._fail(error if isinstance(error, Exception) else LogError(repr(error)))
                if not isinstance(error, Exception):
                    raise
                continue
            self._sent.popleft()
            with self._acked:
                self.acked_seq = last
                self.acked_position = self.log.stream_last
                self._acked.notify_all()
            self.bell.ring()
            if self.after_ack is not None:
                await self.after_ack(self.acked_position, last)

    def _fail(self, error: BaseException) -> None:
        with self._acked:
            self.failed = error
            self._acked.notify_all()
        self.bell.ring()


async def _new_queue() -> asyncio.Queue[tuple[bytes, int, int] | None]:
    return asyncio.Queue()
