"""``derivex serve --workers N``: the Deribit gateway as a front end of the multi-process
runtime (``derivex.runtime``).

Each gateway worker process runs the same aiohttp server as the embedded venue, all on one
port (``SO_REUSEPORT``: the kernel spreads connections over the workers). What differs is
the ``Exchange`` under its ``Venue``:

- **reads** go to the worker's replica (``WorkerContext.replica``): an exact copy of the
  engine state, fed from the bus and checked frame by frame. Every query method (books,
  open orders, positions, account summaries, marks, index) answers locally;
- **commands** (orders, edits, cancels, index and risk inputs) go through the worker's
  command ring to the sequencer (:meth:`RemoteExchange.submit`). The worker waits until
  its replica has applied the frames holding them and the journal has made them durable,
  and then walks their events exactly as the embedded venue walks ``Exchange.submit``'s;
- every batch the worker's own submit does not answer (other workers', late ones of its
  own) is queued in its ``Venue`` and walked in seq order with the worker's own commands
  (``Venue.defer_frame`` / ``walk_deferred``; every millisecond too), so order records,
  trades, books, labels (``derivex.gateway.labels``) and subscriptions
  follow the whole venue exactly as the one-process venue's do.

Worker 0 also runs the market inputs (simulated index feed and pricing service) and, with
``--demo``, the agents: they submit through its ring like any client. The supervisor
prepares the data directory first with the embedded ``open_venue`` (a new venue is listed,
funded and given its demo key; an existing one is recovered), closes it, and starts the
runtime on its journal: the engine resumes it and every replica catches up from it.

Consistency: a client is answered after its command is durable and applied by its own
worker's replica, so a connection reads its own writes. The worker's loop does not wait for
the disk: ``submit`` returns once the replica has applied the commands, and the gateway's
``DurabilityGate`` holds every reply and notification until the journal's ``durable_seq``
(shared memory, watched by a thread: ``SharedDurability``) covers what the replica had
applied when it was written; the loop meanwhile reads and places the next orders (one
round trip to the engine per tick instead of a round trip plus a flush). Another worker
may apply the same frame up to ~1 ms later (its poll interval): two connections on two
workers can briefly see different states, as on any venue with several gateways. A
submission not sequenced within ``submit_timeout_s`` is answered 13888 (outcome unknown;
see ``RemoteExchange``), and so is a reply held while nothing becomes durable for
``submit_timeout_s`` (a stalled journal writer: ``DurabilityGate.timeout_s``). Tokens are
signed with a per-run key every worker holds; ``/metrics`` merges every worker's series
(``derivex.gateway.shared_metrics``); the banner waits for every worker to serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core.records import EVENT_DTYPE
from derivex.gateway import cancel_on_disconnect
from derivex.gateway.auth_limits import AuthLimits
from derivex.gateway.catalog import Catalog
from derivex.gateway.durability import SharedDurability
from derivex.gateway.history_replay import venue_from_journal
from derivex.gateway.keys import KeyStore
from derivex.gateway.labels import SharedLabels
from derivex.gateway.limits import Limits, worker_busy_share
from derivex.gateway.server import Gateway, tune_interpreter
from derivex.gateway.shared_metrics import PUBLISH_INTERVAL_S, WorkerMetrics
from derivex.gateway.spent_tokens import SpentTokens
from derivex.gateway.telemetry import configure_logging, logger
from derivex.gateway.trace import TRACE
from derivex.gateway.venue import OutcomeUnknown, Venue
from derivex.ipc import RingTimeout
from derivex.runtime.control import WK_SERVING
from derivex.runtime.replica import AppliedFrame, ReplicaExchange

__all__ = ["RemoteExchange", "deribit_front_end"]

POLL_INTERVAL_S = 0.001
#: the most time one loop callback spends walking other workers' batches (``pump``)
WALK_BUDGET_S = 0.001
SUBMIT_TIMEOUT_S = 10.0


class RemoteExchange(ReplicaExchange):
    """The replica's read-only ``Exchange`` with a ``submit`` that goes through the
    runtime: push the commands on the worker's ring, apply bus frames until this
    instance's own frames covering them are applied, wait for the journal, and return
    their events (stamped ``seq``/``ts_ns`` are written back into ``commands``, as
    ``Exchange.submit`` does). Blocking: the worker's event loop waits for the round trip
    (the gateway submits a whole loop tick of orders at once).

    Every other batch met on the way goes to ``on_foreign(commands, events, ts_ns,
    first_position)`` (the front end queues it in its ``Venue``, which walks it in seq
    order with this submission's: ``Venue.defer_frame``): batches of other workers
    (``first_position`` None) and late batches of this instance's own earlier submissions
    whose outcome was unknown (``first_position``: the position of their first record in
    this instance's stream). Own records are matched to submissions by that position
    (records pushed so far vs records met in own frames), never by arrival, so a late
    batch can never answer a later request.

    Raises ``OutcomeUnknown`` (its ``first_position`` and ``count``) when the commands
    are not sequenced and durable within ``timeout_s`` (engine or journal stalled, or
    the runtime stopping): what arrives of them later goes to ``on_foreign`` with their
    positions."""

    def __init__(self, ctx: Any, timeout_s: float = SUBMIT_TIMEOUT_S) -> None:
        super().__init__(ctx.replica.engine)
        self.ctx = ctx
        self.timeout_s = timeout_s
        self.on_foreign: Callable[[np.ndarray, np.ndarray, int, int | None], None] = (
            lambda commands, events, ts_ns, first_position: None
        )
        self.round_trips = 0
        self.outcomes_unknown = 0
        #: the journal's durable_seq as the gateway's ``DurabilityGate`` watches it: with a
        #: gate (``durable_results`` False) ``submit`` returns once its commands are applied
        #: and the gate holds what reports them until they are durable, while the loop goes
        #: on; without one, ``submit`` waits for the disk itself
        self.durability = SharedDurability(
            lambda: ctx.durable_seq,
            lambda: ctx.replica.applied_seq,
            bell=getattr(ctx, "durable_bell", None),
        )
        self.durable_results = True
        self._pushed = 0  # records this instance pushed on its ring
        self._sequenced = 0  # of them, met in its own frames (always a prefix)

    def submit(self, commands: np.ndarray) -> np.ndarray:
        ctx, replica = self.ctx, self.ctx.replica
        if len(commands) == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        start, need = self._pushed, len(commands)
        try:
            ctx.submit(commands, timeout=self.timeout_s)
        except RingTimeout as timeout:
            self._pushed += timeout.count
            self.outcomes_unknown += 1
            raise OutcomeUnknown(str(timeout), start, timeout.count) from None
        self._pushed += need
        mine: list[tuple[int, np.ndarray, np.ndarray, int]] = []  # offset, stamped, events, ts
        done = 0
        idle = ctx.frames_idle()  # blocks until the engine has published frames
        deadline = time.monotonic() + self.timeout_s
        while done < need:
            applied = replica.poll()
            for frame in applied:
                if frame.own:
                    done += self._own(frame, start, mine)
                else:
                    self.on_foreign(frame.commands, frame.events, frame.ts_ns, None)
            if applied:
                idle.reset()
                continue
            ctx.discard_responses()  # answers come from the replica; keep the ring free
            if ctx.stopping or time.monotonic() > deadline:
                raise self._abandon(mine, start, need, "not sequenced")
            idle()
        last = max(int(stamped["seq"][-1]) for _, stamped, _, _ in mine)
        # with a gate (``durable_results`` False) the replies wait there instead, and the
        # gate wakes the durability watcher when it holds them
        while self.durable_results and ctx.durable_seq < last:  # the journal's fsync policy
            if time.monotonic() > deadline:
                raise self._abandon(mine, start, need, "sequenced, not durable")
            replica.pump()  # the engine may wait for this worker's bus slot meanwhile
            idle()
        for offset, stamped, _, _ in mine:
            commands[offset : offset + len(stamped)] = stamped
        self.round_trips += 1
        if len(mine) == 1:
            return mine[0][2]
        return np.concatenate([events for _, _, events, _ in mine])

    def _own(
        self,
        frame: AppliedFrame,
        start: int,
        mine: list[tuple[int, np.ndarray, np.ndarray, int]] | None,
    ) -> int:
        """Split an own frame by submission position: records before ``start`` belong to
        earlier submissions (late: to ``on_foreign`` with their position), the rest to
        the current one (into ``mine``). Returns the records of the current one."""
        first, count = self._sequenced, len(frame.commands)
        self._sequenced += count
        late = min(max(start - first, 0), count) if mine is not None else count
        cut = 0
        if late:
            cut = int(
                np.searchsorted(frame.events["seq"], frame.commands["seq"][late - 1], side="right")
            )
            self.on_foreign(frame.commands[:late], frame.events[:cut], frame.ts_ns, first)
        if late == count or mine is None:
            return 0
        mine.append((first + late - start, frame.commands[late:], frame.events[cut:], frame.ts_ns))
        return count - late

    def _abandon(
        self, mine: list[tuple[int, np.ndarray, np.ndarray, int]], start: int, need: int, what: str
    ) -> OutcomeUnknown:
        """The current submission's outcome is unknown: what arrived of it goes to
        ``on_foreign`` with its positions, as what arrives later will."""
        for offset, stamped, events, ts_ns in mine:
            self.on_foreign(stamped, events, ts_ns, start + offset)
        self.outcomes_unknown += 1
        return OutcomeUnknown(f"{need} commands {what} within {self.timeout_s} s", start, need)

    def pump(self) -> int:
        """Apply what the bus holds: frames of others, and late frames of own submissions
        whose outcome was unknown (none of a current one: ``submit`` waits for it), all to
        ``on_foreign``. Returns the frames applied."""
        applied = self.ctx.replica.poll()
        for frame in applied:
            if frame.own:
                self._own(frame, self._pushed, None)
            else:
                self.on_foreign(frame.commands, frame.events, frame.ts_ns, None)
        self.ctx.discard_responses()
        return len(applied)


def _with_busy_share(limits: Limits, workers: int) -> Limits:
    """``limits`` with an automatic ``busy_share`` (0) resolved for ``workers`` workers on
    this machine (``worker_busy_share``); an explicit one as it is."""
    if limits.busy_share > 0:
        return limits
    return dataclasses.replace(limits, busy_share=worker_busy_share(workers))


def deribit_front_end(
    ctx: Any,
    data_dir: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    demo: bool = True,
    seed: int = 7,
    log_level: int = 20,
    json_logs: bool = True,
    auth_backoff: str = "",
    token_key: str = "",
    submit_timeout_s: float = SUBMIT_TIMEOUT_S,
    metrics_dir: str = "",
    limits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runtime front end (``RuntimeConfig.front_end = "derivex.gateway.worker:
    deribit_front_end"``): serve the Deribit API of the venue in ``data_dir`` on
    ``host:port`` (shared by all workers) until the runtime stops, within ``limits``
    (``Limits`` fields; each worker applies them to its own connections). ``auth_backoff``:
    ``AuthLimits.parse``'s text ("": the defaults); ``token_key`` (hex): the run's key for
    bearer tokens every worker accepts; ``metrics_dir``: where the workers share their
    metrics (``derivex.gateway.shared_metrics``)."""
    configure_logging(level=log_level, json=json_logs)
    if ctx.replica is None:
        raise RuntimeError("the Deribit front end needs replicas (RuntimeConfig.replicas)")
    auth_limits = AuthLimits.parse(auth_backoff) if auth_backoff else None
    return asyncio.run(
        _serve(
            ctx,
            Path(data_dir),
            host,
            port,
            demo,
            bytes.fromhex(token_key) or None,
            submit_timeout_s,
            Path(metrics_dir or data_dir),
            auth_limits,
            Limits(**(limits or {})),
        )
    )


async def _serve(
    ctx: Any,
    data: Path,
    host: str,
    port: int,
    demo: bool,
    token_key: bytes | None,
    submit_timeout_s: float,
    metrics_dir: Path,
    auth_limits: AuthLimits | None,
    limits: Limits,
) -> dict[str, Any]:
    from derivex.gateway import serve as serving

    log = logger().bind(worker=ctx.index, generation=ctx.generation)
    exchange = RemoteExchange(ctx, submit_timeout_s)
    catalog = Catalog.load(data / "instruments.json")
    labels = SharedLabels(data / "labels", f"worker.{ctx.index}.{ctx.generation}")
    venue = _venue_of_the_run(ctx, catalog, labels, log)
    if venue is None:  # the trades, orders and history of the runs before (the journal)
        venue = venue_from_journal(exchange, catalog, ctx.replica.journal_dir, labels=labels)
    if venue is None:  # records of the open orders only (with their labels)
        venue = Venue(exchange, catalog, labels=labels)
    venue.exchange = exchange
    # an account's cancel-on-disconnect holds for its connections on every worker
    cancel_on_disconnect.share(venue, data / "cancel_on_disconnect")
    # every batch not answered by our own submit is walked in seq order with ours
    exchange.on_foreign = venue.defer_frame
    metrics = WorkerMetrics(ctx.index, metrics_dir)
    spent = SpentTokens(data / "tokens", f"worker.{ctx.index}.{ctx.generation}")
    keys = KeyStore(data)
    if ctx.index == 0:  # the market inputs and the agents run once, in worker 0
        state = serving.ServeState.load(data / "serve.json")
        demo_key = next((k for k in keys.list_keys() if k.name == "demo"), None)
        opened = serving.Opened(venue, keys, state, demo_key, [])  # type: ignore[arg-type]
        gateway = serving.build(
            opened,
            demo=demo,
            metrics=metrics,
            token_key=token_key,
            spent_tokens=spent,
            auth_limits=auth_limits,
            limits=limits,
        )
    else:
        gateway = Gateway(
            venue,
            keys,
            metrics=metrics,
            token_key=token_key,
            spent_tokens=spent,
            auth_limits=auth_limits,
            limits=limits,
        )

    if TRACE is not None:  # (diagnostics: the engine round trips and the walks of others' batches)
        exchange.submit = TRACE.timed("submit", exchange.submit)  # type: ignore[method-assign]
        venue.walk_deferred = TRACE.timed("walk_deferred", venue.walk_deferred)  # type: ignore[method-assign]

    walking = False

    def walk() -> None:
        # the other workers' batches, a bounded slice at a time: what is left is walked
        # in the loop's next iterations, so a cancel read meanwhile never waits for the
        # walk of a big foreign batch (own submissions walk all before theirs first)
        nonlocal walking
        venue.walk_deferred(budget_s=WALK_BUDGET_S)
        walking = bool(venue.deferred)
        if walking:
            asyncio.get_running_loop().call_soon(walk)

    def pump() -> None:
        exchange.pump()
        if not walking:
            walk()
        if gateway.gate is not None:  # what became durable while the loop was busy
            gateway.gate.release_due()

    gateway.add_periodic(POLL_INTERVAL_S, pump)

    async def name_worker(request: Any, response: Any) -> None:
        # which worker answered (the kernel picks one per connection): for operators
        # and the tests that check every worker answers alike
        response.headers["X-Derivex-Worker"] = f"{ctx.index}.{ctx.generation}"

    gateway.app.on_response_prepare.append(name_worker)
    gateway.add_periodic(PUBLISH_INTERVAL_S, metrics.publish)
    await gateway.start(host, port, reuse_port=True)
    tune_interpreter()
    metrics.publish()
    ctx.mark_serving()
    log.info(
        "gateway worker serving",
        url=gateway.url,
        pid=os.getpid(),
        replica_seq=ctx.replica.applied_seq,
        durability_gate=gateway.gate is not None,
    )
    while not ctx.stopping:
        await asyncio.sleep(0.05)
    log.info("gateway worker stopping")
    with contextlib.suppress(Exception):
        await gateway.stop()
    exchange.durability.stop()
    return {
        "round_trips": exchange.round_trips,
        "orders_open": len(venue.orders),
        "outcomes_unknown": exchange.outcomes_unknown,
        "url": gateway.url,
    }


def _venue_of_the_run(ctx: Any, catalog: Catalog, labels: SharedLabels, log: Any) -> Venue | None:
    """For a restarted worker (generation > 0): a ``Venue`` that walked every batch of
    this run, as its predecessor and the other workers did (closed orders, trades and
    their numbering included): the run's start snapshot replayed with the journal up to
    the replica's seq through a scratch engine, checked against the replica's state
    hash. None for a first instance (its replica starts at the run's start), or when the
    latest snapshot is not the run's start or the states differ. Cost: one more replay
    of the run's journal (the bus is read meanwhile, so the engine never waits)."""
    from derivex.journal import JournalReader, list_snapshots, load_snapshot, restore_engine

    replica = ctx.replica
    directory = replica.journal_dir
    snapshots = list_snapshots(directory)
    if ctx.generation == 0 or not snapshots or snapshots[-1][0] != ctx.start_seq:
        return None
    started = time.monotonic()
    engine = restore_engine(load_snapshot(snapshots[-1][1]))
    venue = Venue(ReplicaExchange(engine), catalog, labels=labels)
    seq, target = ctx.start_seq, replica.applied_seq
    if seq < target:
        for batch in JournalReader(directory, seq + 1):
            events = engine.process_into(batch.commands)
            venue.apply_frame(batch.commands, events.copy(), int(batch.commands["ts_ns"][0]))
            seq = batch.last_seq
            replica.pump()  # keep our bus slot moving
            if seq >= target:
                break
    if seq != target or engine.state_hash() != replica.state_hash():
        log.warning("run not replayed into the venue", seq=seq, replica_seq=target)
        return None
    log.info(
        "venue replayed from the run's start",
        seq=seq,
        seconds=round(time.monotonic() - started, 3),
        orders_open=len(venue.orders),
        orders_closed=len(venue.closed),
    )
    return venue


def run_workers(
    data_dir: Path | str,
    *,
    workers: int,
    host: str = "127.0.0.1",
    port: int = 8080,
    demo: bool = True,
    fsync: str = "group",
    log_level: int = 20,
    json_logs: bool = True,
    seconds: float | None = None,
    announce: Any = None,
    auth_backoff: str = "",
    submit_timeout_s: float = SUBMIT_TIMEOUT_S,
    start_timeout_s: float = 600.0,
    limits: Limits | None = None,
    worker_nice: int = 0,
) -> Any:
    """The supervisor of ``derivex serve --workers N``: prepare ``data_dir`` with the
    embedded ``open_venue`` (create or recover; a snapshot so that the engine and every
    replica start from it), close it, and run the runtime on its journal with ``workers``
    Deribit gateway workers on ``host:port`` until SIGINT/SIGTERM (or ``seconds``).
    ``announce(url, opened)`` is called once every worker serves (its port accepts), from
    a thread (not at all if the runtime fails first or ``start_timeout_s`` passes).
    ``submit_timeout_s``: how long a worker waits for its commands to be sequenced and
    durable before answering that their outcome is unknown (13888); ``worker_nice``:
    ``RuntimeConfig.worker_nice``. Returns the runtime's report."""
    from derivex.gateway import serve as serving
    from derivex.runtime import RuntimeConfig
    from derivex.runtime import serve as run_runtime

    data = Path(data_dir)
    opened = serving.open_venue(data, fsync=fsync, demo=demo)
    exchange = opened.venue.exchange
    serving.take_snapshot(exchange)
    assert exchange.journal is not None
    exchange.journal.close()
    if port == 0:
        port = _free_port(host)
    metrics_dir = data / "metrics"
    for stale in [
        *metrics_dir.glob("worker.*"),
        *(data / "labels").glob("*.labels"),
        *(data / "tokens").glob("*.spent"),
    ]:
        stale.unlink(missing_ok=True)  # a previous run's workers (its tokens die with it)
    config = RuntimeConfig(
        name=f"derivex-{port}",
        workers=workers,
        engine=exchange.engine.config,
        journal_dir=str(data / "journal"),
        fsync=fsync,
        replicas=True,
        worker_nice=worker_nice,
        front_end="derivex.gateway.worker:deribit_front_end",
        front_end_options={
            "data_dir": str(data),
            "host": host,
            "port": port,
            "demo": demo,
            "auth_backoff": auth_backoff,
            "seed": opened.state.seed,
            "log_level": log_level,
            "json_logs": json_logs,
            "token_key": secrets.token_hex(32),
            "submit_timeout_s": submit_timeout_s,
            "metrics_dir": str(metrics_dir),
            "limits": dataclasses.asdict(_with_busy_share(limits or Limits(), workers)),
        },
    )
    url = f"http://{host}:{port}"

    def ready(runtime: Any) -> None:
        if announce is None:
            return

        def wait_then_announce() -> None:
            deadline = time.monotonic() + start_timeout_s
            while runtime.report.failure is None and time.monotonic() < deadline:
                ctl = runtime.ctl
                if ctl is None:
                    return
                if all(ctl.worker(w, WK_SERVING) for w in range(workers)):
                    logger().info("runtime serving", url=url, pids=runtime.status().get("pids", {}))
                    announce(url, opened)
                    return
                time.sleep(0.05)

        threading.Thread(target=wait_then_announce, name="derivex-announce", daemon=True).start()

    return run_runtime(config, seconds=seconds, on_ready=ready)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
