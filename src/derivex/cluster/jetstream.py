"""The sequenced command log on a NATS JetStream stream (the contract of
``derivex.cluster.log``).

One stream per risk domain (``DX_<DOMAIN>`` on subject ``dx.<domain>.cmd``; R3, file
storage, 2-minute duplicate window). **One message per frame**: its payload is the
frame's command records, byte for byte as the journal holds them (64 bytes each, stamped
``seq`` and ``ts_ns``).

Two sequence spaces, mapped per frame: the *stream seq* ``s`` counts messages (frames)
from 1; the *command seq* counts records. Frame ``s`` carries the header
``Dx-First-Seq`` (its first command seq; the records repeat it in their ``seq`` words,
which readers check). Frames are consecutive, so the frame holding command seq ``c`` is
found by a binary search over stream seqs (O(log frames) direct gets), and the writer
knows the stream seq of its previous frame without asking.

Writes: each frame is published with ``Nats-Expected-Last-Sequence`` = the stream seq
of the previous frame (the fence: a second writer's frame makes the server refuse with
error 10071) and ``Nats-Msg-Id`` = ``<domain>:<writer>:<first command seq>:<crc32>``
(dedupe of our own retries; the writer id, e.g. the lease epoch, keeps a new leader's
frame at the same seqs from passing as an old leader's retry, and the CRC-32 of the
records keeps another batch at the same seqs from the same writer, after an append whose
outcome was unknown, from passing as a retry: JetStream silently drops a new message
whose id it has seen). nats-py does not retry a publish
that meets no responders (a stream leader election) or times out: :meth:`append` does,
with the same headers, until ``retry_for`` seconds have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Iterator

import nats
import nats.errors
import nats.js.errors
import numpy as np
from nats.js import api

from derivex.cluster.log import LogBatch, LogError, WrongLastSequence, check_frame
from derivex.cluster.loop import LoopThread
from derivex.core.records import COMMAND_DTYPE

__all__ = ["FIRST_SEQ_HEADER", "JetStreamLog", "stream_name", "stream_subject"]

FIRST_SEQ_HEADER = "Dx-First-Seq"
WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErrF
NO_SUITABLE_PEERS = 10005  # JSClusterNoPeersErrF
# what a publish meets while the stream has no leader or the connection is re-routed
TRANSIENT = (
    nats.js.errors.NoStreamResponseError,
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    asyncio.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
)


def transient(error: BaseException) -> bool:
    """Worth retrying with the same request: no responders or a timeout (a stream or meta
    leader election, a reconnect), JetStream unavailable for a moment, or 10005 "no
    suitable peers for placement" (a loaded peer missed a heartbeat and counts as offline
    for a moment)."""
    if isinstance(error, TRANSIENT):
        return True
    if isinstance(error, nats.js.errors.ServiceUnavailableError):
        return True
    # (getattr: nats-py's KeyWrongLastSequenceError is an APIError without ``err_code``)
    return getattr(error, "err_code", None) == NO_SUITABLE_PEERS


def stream_name(domain: str) -> str:
    """``btc_usdc`` -> ``DX_BTC_USDC``."""
    return "DX_" + domain.upper()


def stream_subject(domain: str) -> str:
    """``btc_usdc`` -> ``dx.btc_usdc.cmd``."""
    return f"dx.{domain.lower()}.cmd"


def decode_frame(data: bytes, first_seq: int, position: int) -> LogBatch:
    """A message payload as a frame of *writable* records (one copy of the payload);
    raises LogError when the records do not start at the header's seq or do not fill
    whole records.

    Why writable: numba types a read-only array as a distinct type, so a follower fed
    read-only frames (``np.frombuffer`` over ``bytes``) runs its own specialisation of
    the engine kernel. After any change to ``core/`` that specialisation is compiled by
    the first follower that needs it, which takes minutes on a loaded machine: a standby
    that cannot apply a frame for minutes cannot take over (the intermittent failure of
    ``test_a_paused_old_leader_cannot_append``). The copy costs O(frame bytes)."""
    if len(data) == 0 or len(data) % COMMAND_DTYPE.itemsize:
        raise LogError(f"stream seq {position}: payload of {len(data)} bytes is not records")
    commands = np.frombuffer(bytearray(data), dtype=COMMAND_DTYPE)
    if int(commands["seq"][0]) != first_seq:
        raise LogError(f"stream seq {position}: header says seq {first_seq}, records disagree")
    return LogBatch(first_seq, commands, position)


class JetStreamLog:
    """A domain's stream as a command log. ``urls``: the cluster's client URLs (the client
    reconnects among them). ``writer``: this writer's id in ``Nats-Msg-Id``. The stream
    is created if missing (``replicas``, file storage). Methods block the caller; the
    nats client runs on a private loop thread. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        urls: list[str],
        domain: str,
        *,
        writer: str = "0",
        replicas: int = 3,
        timeout: float = 2.0,
        retry_for: float = 20.0,
        setup_for: float = 30.0,
    ) -> None:
        self.domain = domain.lower()
        self.stream = stream_name(domain)
        self.subject = stream_subject(domain)
        self.writer = writer
        self.timeout = timeout
        self.retry_for = retry_for
        self.setup_for = max(setup_for, retry_for)
        self.retries = 0  # transient publish failures retried (a metric for tests)
        self._last_seq = 0
        self._stream_last = 0
        self.loop = LoopThread(self.stream)
        try:
            # setting up waits out a cluster still electing its leaders for ``setup_for``
            # seconds whatever ``retry_for`` (the budget of each append) is
            budget = self.setup_for
            self.loop.call(self._connect(urls, replicas, budget), timeout=budget + 10)
            self._stream_last, self._last_seq = self.loop.call(self._tail(budget), budget + 5)
        except BaseException:
            if hasattr(self, "nc"):
                with contextlib.suppress(Exception):
                    self.loop.call(self.nc.close(), 5.0)
            self.loop.close()
            raise

    async def _connect(self, urls: list[str], replicas: int, budget: float) -> None:
        self.nc = await nats.connect(
            servers=urls,
            connect_timeout=self.timeout,
            reconnect_time_wait=0.1,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
        )
        self.js = self.nc.jetstream(timeout=self.timeout)
        config = api.StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            num_replicas=replicas,
            storage=api.StorageType.FILE,
            duplicate_window=120.0,
            allow_direct=True,
        )
        # a fresh cluster may still be electing its meta leader
        await self.retrying(lambda: self.js.add_stream(config), budget)

    # ---- the tail ----

    @property
    def last_seq(self) -> int:
        """The last command seq as of this handle's last append or refresh."""
        return self._last_seq

    @property
    def stream_last(self) -> int:
        """The stream seq of the frame holding ``last_seq`` (0: empty)."""
        return self._stream_last

    def refresh(self) -> int:
        """Ask the stream for its last frame; update and return ``last_seq``. Cost: two
        round trips (stream info, one direct get)."""
        self._stream_last, self._last_seq = self.loop.call(self._tail(), self.retry_for + 5)
        return self._last_seq

    async def _tail(self, budget: float | None = None) -> tuple[int, int]:
        info = await self.retrying(lambda: self.js.stream_info(self.stream), budget)
        last = info.state.last_seq
        if last == 0 or info.state.messages == 0:
            return 0, 0
        frame = await self._frame(last, budget)
        return last, frame.last_seq

    async def _frame(self, position: int, budget: float | None = None) -> LogBatch:
        message = await self.retrying(lambda: self.js.get_msg(self.stream, seq=position), budget)
        headers = message.headers or {}
        if FIRST_SEQ_HEADER not in headers:
            raise LogError(f"stream seq {position} has no {FIRST_SEQ_HEADER} header")
        return decode_frame(message.data or b"", int(headers[FIRST_SEQ_HEADER]), position)

    async def retrying(self, operation, budget: float | None = None):  # type: ignore[no-untyped-def]
        """Await ``operation()`` until it does not fail transiently (:func:`transient`)
        or ``budget`` seconds (default ``retry_for``) have passed."""
        deadline = time.monotonic() + (self.retry_for if budget is None else budget)
        while True:
            try:
                return await operation()
            except Exception as error:
                if not transient(error) or time.monotonic() > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(0.1)

    # ---- writing ----

    def append(self, commands: np.ndarray, expected_last_seq: int) -> int:
        """Publish ``commands`` as one frame after ``expected_last_seq``; return its last
        seq once the PubAck came (quorum-durable). Retries transient failures with the
        same ids for up to ``retry_for`` seconds. Raises WrongLastSequence (another writer
        appended: stop at once), LogError when the retries run out, ValueError/TypeError
        for a malformed frame. Cost: one round trip + the quorum's fsync."""
        first, last = check_frame(commands, expected_last_seq)
        return self.loop.call(
            self._append(commands.tobytes(), first, last, expected_last_seq),
            timeout=self.retry_for + 10,
        )

    async def _append(self, payload: bytes, first: int, last: int, expected: int) -> int:
        if expected != self._last_seq:
            self._stream_last, self._last_seq = await self._tail()
            if expected != self._last_seq:
                if await self._holds(payload, first):
                    return last  # a retry of a frame already in the stream
                raise WrongLastSequence(expected, self._last_seq)
        msg_id = f"{self.domain}:{self.writer}:{first}:{zlib.crc32(payload):08x}"
        headers = {
            api.Header.MSG_ID: msg_id,
            api.Header.EXPECTED_LAST_SEQUENCE: str(self._stream_last),
            FIRST_SEQ_HEADER: str(first),
        }
        position = self._stream_last + 1
        deadline = time.monotonic() + self.retry_for
        ack: api.PubAck | None = None
        while True:
            try:
                ack = await self.js.publish(
                    self.subject, payload, timeout=self.timeout, headers=dict(headers)
                )
                break
            except Exception as error:
                if transient(error):
                    if time.monotonic() > deadline:
                        raise LogError(f"no PubAck within {self.retry_for} s") from error
                    self.retries += 1
                    await asyncio.sleep(0.05)
                    continue
                if not isinstance(error, nats.js.errors.APIError):
                    raise
                if error.err_code != WRONG_LAST_SEQUENCE:
                    raise LogError(f"publish refused: {error}") from error
                # a retry of ours that landed before may be refused by the fence rather
                # than deduplicated: the frame at our position tells which
                if await self._message_id(position) == msg_id:
                    break
                stream_last, last_seq = await self._tail()
                raise WrongLastSequence(
                    expected, last_seq, f" (stream seq {stream_last})"
                ) from error
        if ack is not None and ack.seq != position:
            raise LogError(f"frame stored at stream seq {ack.seq}, expected {position}")
        self._stream_last, self._last_seq = position, last
        return last

    async def _message_id(self, position: int) -> str | None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            message = await self.retrying(lambda: self.js.get_msg(self.stream, seq=position))
            return (message.headers or {}).get(api.Header.MSG_ID)
        return None

    async def _holds(self, payload: bytes, first: int) -> bool:
        """The stream holds exactly ``payload`` as the frame starting at ``first``."""
        position = await self._locate(first)
        if position is None:
            return False
        frame = await self._frame(position)
        return frame.first_seq == first and frame.commands.tobytes() == payload

    # ---- reading ----

    async def _locate(self, command_seq: int) -> int | None:
        """Stream seq of the frame holding ``command_seq`` (None: not in the stream)."""
        info = await self.retrying(lambda: self.js.stream_info(self.stream))
        low, high = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0:
            return None
        while low <= high:
            middle = (low + high) // 2
            frame = await self._frame(middle)
            if command_seq < frame.first_seq:
                high = middle - 1
            elif command_seq > frame.last_seq:
                low = middle + 1
            else:
                return middle
        return None

    def read(self, from_seq: int = 1) -> Iterator[LogBatch]:
        """Frames from the one holding ``from_seq`` (trimmed to start there) to the last
        frame in the stream when called. Cost: a binary search, then one ordered-consumer
        message per frame. Raises LogError on a frame that breaks the sequence."""
        end = self.refresh()
        if from_seq > end:
            return
        start = self.loop.call(self._locate(from_seq), self.retry_for + 5)
        if start is None:
            raise LogError(f"command seq {from_seq} is not in stream {self.stream}")
        yield from self.follow(start, until=self._stream_last, skip_to=from_seq)

    def follow(
        self, start: int, *, until: int | None = None, skip_to: int = 0, idle: float = 1.0
    ) -> Iterator[LogBatch]:
        """Frames from stream seq ``start`` on, through an ordered consumer (it resets by
        itself on a gap). Stops after stream seq ``until`` if given, else when no frame
        came for ``idle`` seconds (a follower calls it again). Records before command seq
        ``skip_to`` are trimmed off. Raises LogError when the frames do not continue each
        other, or when ``until`` is not reached and no frame came for ``retry_for``
        seconds (a reader must not take a stalled stream for its end)."""
        # subscribed first, outside the idle timer: creating the consumer can take longer
        # than ``idle`` on a loaded machine, and a timer around it would cancel every
        # attempt (a follower that never gets a frame)
        subscription = self.loop.call(self._subscribe(start), self.retry_for + 5)
        expected_seq: int | None = None
        wait = idle if until is None else self.retry_for
        try:
            while True:
                frame = self.loop.call(self._next(subscription, wait), wait + self.retry_for)
                if frame is None:
                    if until is not None:
                        raise LogError(
                            f"{self.stream}: no frame for {wait} s before stream seq {until}"
                        )
                    return
                if expected_seq is not None and frame.first_seq != expected_seq:
                    raise LogError(
                        f"stream seq {frame.position} starts at seq {frame.first_seq}, "
                        f"expected {expected_seq}"
                    )
                expected_seq = frame.last_seq + 1
                if frame.last_seq >= skip_to:
                    if frame.first_seq < skip_to:
                        skip = skip_to - frame.first_seq
                        frame = LogBatch(skip_to, frame.commands[skip:], frame.position)
                    yield frame
                if until is not None and frame.position is not None and frame.position >= until:
                    return
        finally:
            with contextlib.suppress(Exception):
                self.loop.call(subscription.unsubscribe(), 5.0)

    async def _subscribe(self, start: int):  # type: ignore[no-untyped-def]
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
        )
        return await self.retrying(
            lambda: self.js.subscribe(
                self.subject, stream=self.stream, ordered_consumer=True, config=config
            )
        )

    async def _next(self, subscription, wait: float) -> LogBatch | None:  # type: ignore[no-untyped-def]
        """The next frame, or None after ``wait`` seconds without one (a wait on the
        subscription's queue: cancelling it loses no message)."""
        try:
            message = await subscription.next_msg(timeout=wait)
        except (nats.errors.TimeoutError, TimeoutError):
            return None
        headers = message.headers or {}
        position = message.metadata.sequence.stream
        return decode_frame(message.data, int(headers[FIRST_SEQ_HEADER]), position)

    def close(self) -> None:
        """Drain the connection and stop the loop thread."""
        with contextlib.suppress(Exception):
            self.loop.call(self.nc.close(), 5.0)
        self.loop.close()

    def __enter__(self) -> JetStreamLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
