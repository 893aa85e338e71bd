"""``derivex serve --cluster URLS --domain NAME --role leader|standby|replica``: the
gateway on a domain's JetStream log.

Every role first follows the stream (``Follower``: the same kernel over the frames, the
state root every K frames compared with the leader's). Then:

- **leader** and **standby** take the lease as soon as it is free (a leader at start; a
  standby once the serving leader's lease ran out: it died, or paused past the TTL; a
  standby lets two TTLs pass before it first tries, so a leader started beside it
  leads), catch up, append the fence frame (``Follower.take_over``) and serve the
  Deribit API on a ``ClusterExchange``: the one ``Sequencer`` of the ``Leader``, whose
  before-hook is the fenced publish, so a batch reaches the engine, and a client its
  reply, only after the frame's PubAck (quorum-fsynced, R3, ``sync_interval: always``).
  The lease is renewed every third of its TTL on the gateway's loop. A fenced leader
  (another writer appended, or its lease ran out) answers every further command with
  the retryable error 10040 ``not_leader`` and stops serving (exit code 3): its clients
  reconnect to the new leader.
- **replica** never leads: it follows until stopped and exits with code 2 when its root
  differs from the leader's (taken out of service, logged loudly). With the venue's files
  in its data directory it also serves queries from the stream's state
  (``cluster.read_replica``: answered while the leader cannot write; commands get 10040
  ``not_leader``).

The data directory holds what the stream does not (``gateway.serve``): the catalogue, the
keys, the demo accounts. The first leader of an empty stream creates the venue and
writes them; a standby or a restarted leader reads them, so every node of a domain needs
a copy (one directory on one machine, as ``derivex cluster up`` runs it). A stream that
holds a venue with a data directory that does not is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from derivex.cluster.endpoints import Endpoint
from derivex.cluster.endpoints import publish as publish_endpoint
from derivex.cluster.inbox import INBOX_KEY_FILE, Inbox, load_inbox_key
from derivex.cluster.jetstream import TRANSIENT, JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.log import Fenced, LogError
from derivex.cluster.node import Follower, Leader, warm_kernels
from derivex.cluster.pipeline import WriteOutage
from derivex.cluster.read_replica import VenueRecords, serve_read_replica
from derivex.cluster.shared_keys import follow_from, stop_from
from derivex.core import query
from derivex.exchange import Exchange
from derivex.gateway.durability import SharedDurability
from derivex.gateway.errors import OUTCOME_UNKNOWN, RETRY, RpcError
from derivex.journal import full_root
from derivex.sequencer import Sequencer

__all__ = ["ROLES", "ClusterExchange", "ClusterOptions", "serve_cluster", "stand_by"]

ROLES = ("leader", "standby", "replica")
_log = logging.getLogger("derivex.cluster.serve")

#: exit codes of a cluster node (``derivex serve --cluster``)
EXIT_STOPPED, EXIT_DIVERGED, EXIT_FENCED = 0, 2, 3


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how a node joins its domain. ``ttl_s``: the lease TTL (whole seconds);
    ``every``: K, a root every K frames; ``retry_for``: how long an append rides out a
    stream leader election before the leader stops (the replies wait that long);
    ``outage_s``: how long the oldest frame waits for its PubAck before new risk is
    refused (``cluster.pipeline``)."""

    urls: list[str]
    domain: str
    role: str
    node: str
    ttl_s: int = 2
    every: int = 16
    retry_for: float = 10.0
    outage_s: float = 0.5

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if not self.urls:
            raise ValueError("--cluster needs at least one nats:// URL")
        if self.every < 1 or self.ttl_s < 1:
            raise ValueError("the root interval and the lease TTL are at least 1")


class ClusterExchange(Exchange):
    """An ``Exchange`` whose sequencer is a ``Leader``'s: ``submit`` returns after the
    frame's PubAck. A leader that can no longer write answers with errors a client can
    act on, never 11094: ``RpcError`` 10040 (``not_leader``: nothing was published,
    retry on the new leader) or 13888 (``outcome_unknown``: the frame may or may not be
    in the stream; query the order)."""

    def __init__(self, leader: Leader, clock: Callable[[], int] | None = None) -> None:
        super().__init__(leader.sequencer.engine.config, clock=clock)
        self.leader = leader
        self.sequencer = leader.sequencer
        #: set by :meth:`pipeline`: the gateway's ``DurabilityGate`` watches it and holds
        #: replies until the stream has acknowledged what they report
        self.durability: SharedDurability | None = None
        self.timeout_s = leader.log.retry_for

    def pipeline(self, outage_s: float = 0.5) -> None:
        """Publish behind the engine from now on (``cluster.pipeline``): ``submit``
        returns once applied, and a gateway started afterwards installs its gate on
        ``durability`` (``durable_results`` False); without a gate, ``submit`` still waits
        for the PubAck itself."""
        pipe = self.leader.pipeline(outage_s)
        self.durability = SharedDurability(
            lambda: pipe.acked_seq, lambda: self.sequencer.seq, bell=pipe.bell
        )

    def submit(self, commands: np.ndarray) -> np.ndarray:
        try:
            events = super().submit(commands)
            pipe = self.leader.pipelined
            if _FAULT_LABEL_KEY and (commands["label"] == _FAULT_LABEL_KEY).any():
                _exit_after_ack(pipe, int(commands["seq"][-1]), self.timeout_s)
            if pipe is not None and self.durable_results:
                pipe.wait(int(commands["seq"][-1]), self.timeout_s + 5)
            return events
        except WriteOutage as error:
            raise RpcError(RETRY, "write_outage", {"reason": "write_outage"}) from error
        except Fenced as error:
            raise RpcError(RETRY, "not_leader", {"reason": "not_leader"}) from error
        except LogError as error:
            raise RpcError(OUTCOME_UNKNOWN, "timed_out", {"reason": "outcome_unknown"}) from error

    def stop_pipeline(self) -> None:
        """Stop the durability watcher and the pipeline's writer."""
        if self.durability is not None:
            self.durability.stop()
        self.leader.close()


#: fault injection for the tests (``tests/cluster/test_router.py``): a leader that
#: sequences an order labelled ``$DERIVEX_FAULT_EXIT_AFTER_ACK`` dies once the order's frame
#: has its PubAck, before anyone is answered: the "lost reply" a client resolves by label
_FAULT_LABEL = os.environ.get("DERIVEX_FAULT_EXIT_AFTER_ACK", "")
_FAULT_LABEL_KEY = (
    int.from_bytes(hashlib.blake2b(_FAULT_LABEL.encode(), digest_size=8).digest(), "little") or 1
    if _FAULT_LABEL
    else 0
)  # as ``SharedLabels.key``


def _exit_after_ack(pipe: Any, seq: int, timeout_s: float) -> None:
    if pipe is not None:
        pipe.wait(seq, timeout_s)
    _log.error("fault injection: exiting after the PubAck of seq %d, before replying", seq)
    os._exit(137)


def stand_by(
    follower: Follower,
    lease: Lease,
    *,
    stopping: Callable[[], bool],
    poll_s: float = 0.5,
    grace_s: float = 0.0,
) -> Leader | None:
    """Follow the stream until the lease is ours and the fence frame is in: the new
    ``Leader`` (None if ``stopping()`` first, or the follower diverged). The lease is not
    tried in the first ``grace_s`` seconds (a standby started beside its leader lets the
    leader lead). A takeover that loses the lease on the way (a catch-up longer than the
    TTL) has published nothing: the follower stands by again; so does one that meets a
    log error (a NATS server lost mid-takeover: its fence frame, if it lands later, is
    applied like any other frame), after giving the lease up."""
    holder_seen: str | None = None
    not_before = time.monotonic() + grace_s
    while not stopping() and follower.diverged is None:
        try:
            if time.monotonic() >= not_before and lease.try_acquire():
                return follower.take_over(lease)
            holder = lease.peek()
            if (holder and holder[0]) != holder_seen:  # a line per new holder
                _log.info("lease of %s held by %s", follower.log.domain, holder)
                holder_seen = holder and holder[0]
            follower.poll(idle=poll_s, limit_s=2.0)  # SIGTERM is looked at between polls
        except (LogError, *TRANSIENT) as error:
            _log.warning("standing by after: %r", error)
            lease.release()
            time.sleep(poll_s)
    return None


def _open(data_dir: Path, exchange: ClusterExchange, demo: bool, records: VenueRecords) -> Any:
    """The venue over ``exchange``: created when the stream and ``data_dir`` are both new
    (every command through the leader, hence the stream), else loaded from ``data_dir``
    with the records ``records`` built from the stream."""
    from derivex.gateway import serve as serving
    from derivex.gateway.catalog import Catalog
    from derivex.gateway.datadir import DataDirectoryError
    from derivex.gateway.keys import KeyStore
    from derivex.gateway.labels import SharedLabels
    from derivex.gateway.listing import default_specs, list_all
    from derivex.gateway.venue import Venue

    catalog_path, state_path = data_dir / "instruments.json", data_dir / "serve.json"
    state = exchange.engine.state
    if not state_path.exists():
        if query.instrument_count(state):  # a venue lists its instruments first
            raise DataDirectoryError(
                f"the stream holds a venue but {data_dir} has no serve.json: copy "
                "instruments.json, serve.json and keys.json from the leader's data directory"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        catalog = list_all(exchange, default_specs(time.time_ns() // 1_000_000))
        catalog.save(catalog_path)
        account = exchange.create_account()
        exchange.deposit(account, serving.DEMO_DEPOSIT_UNITS)
        serve_state = serving.ServeState(time.time_ns() // 1_000_000, account)
        if demo:
            serve_state.maker_accounts = [exchange.create_account() for _ in range(2)]
            serve_state.noise_account = exchange.create_account()
            for agent in (*serve_state.maker_accounts, serve_state.noise_account):
                exchange.deposit(agent, serving.AGENT_DEPOSIT_UNITS)
        report = ["new venue"]
    else:
        catalog = Catalog.load(catalog_path)
        serve_state = serving.ServeState.load(state_path)
        report = [f"leading from seq {exchange.sequencer.seq}"]
    keys = KeyStore(data_dir)
    demo_key = next((k for k in keys.list_keys() if k.name == "demo"), None)
    if demo_key is not None and demo_key.account != serve_state.demo_account:
        # a venue-wide keys.json (``cluster up`` writes one per domain) names the account
        # every domain creates first: the same id in each
        raise DataDirectoryError(
            f"keys.json's demo key names account {demo_key.account}, the venue's demo "
            f"account is {serve_state.demo_account}"
        )
    if demo_key is None:
        demo_key = keys.create(serve_state.demo_account, ("read", "trade"), name="demo")
    if not state_path.exists():  # last, as in ``gateway.serve.open_venue``
        serve_state.save(state_path)
    venue = records.venue
    if venue is None:  # a new venue (or one whose records could not be built)
        labels = SharedLabels(data_dir / "labels", f"node.{records.node}")
        venue = Venue(exchange, catalog, labels=labels)
    venue.exchange = exchange
    return serving.Opened(venue, keys, serve_state, demo_key, report)


def serve_cluster(
    options: ClusterOptions,
    data_dir: Path,
    host: str,
    port: int,
    announce: Callable[[Any, Any], None],
    **gateway_options: Any,
) -> int:
    """Run one node until SIGTERM/SIGINT, a fence or a divergence; returns the exit code
    (``EXIT_*``). Blocks. ``announce(gateway, opened)`` is called once serving."""
    stop_requested: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stop_requested.append(number))
    warm_kernels()
    log = JetStreamLog(
        options.urls, options.domain, writer=options.node, retry_for=options.retry_for
    )
    follower: Follower | None = None
    leader: Leader | None = None
    try:
        lease = Lease(log, options.node, ttl_s=options.ttl_s)
        follower = Follower(log, every=options.every, node=options.node)
        _log.info("%s: %s of %s from stream seq 0", options.node, options.role, log.domain)
        if options.role == "replica" and (data_dir / "serve.json").exists():
            return serve_read_replica(
                follower,
                data_dir,
                host,
                port,
                announce,
                lambda: bool(stop_requested),
                **gateway_options,
            )
        if options.role == "replica":  # no venue files: follow and check, serve nothing
            _log.info("%s: no %s/serve.json: following without serving", options.node, data_dir)
            while not stop_requested and follower.diverged is None:
                try:
                    follower.poll(idle=0.5, limit_s=2.0)
                except (LogError, *TRANSIENT) as error:  # a server lost: go on following
                    _log.warning("replica: %r", error)
                    time.sleep(0.5)
            return EXIT_DIVERGED if follower.diverged else EXIT_STOPPED
        # the venue's records follow the stream, so that the history of the leaders
        # before this one is served after a takeover
        records = VenueRecords(data_dir, follower.sequencer.engine, options.node)
        follower.on_applied = records
        grace = 2.0 * options.ttl_s if options.role == "standby" else 0.0
        leader = stand_by(follower, lease, stopping=lambda: bool(stop_requested), grace_s=grace)
        if leader is None:
            return EXIT_DIVERGED if follower.diverged else EXIT_STOPPED
        _log.info("%s: leading %s from seq %d", options.node, log.domain, leader.sequencer.seq)
        exchange = ClusterExchange(leader)
        opened = _open(data_dir, exchange, gateway_options.get("demo", True), records)
        inbox_key = load_inbox_key(data_dir / INBOX_KEY_FILE)
        return asyncio.run(
            _serve(
                opened, leader, host, port, announce, options.outage_s, inbox_key,
                **gateway_options,
            )
        )  # fmt: skip
    finally:
        if leader is not None:
            _report(options.node, "leader", leader.sequencer, log.stream_last)
        elif follower is not None:
            _report(options.node, options.role, follower.sequencer, follower.position)
        log.close()


def _report(node: str, role: str, sequencer: Sequencer, position: int) -> None:
    """The node's last word: where it stopped and its state root there (the chaos test
    compares the nodes' roots with a replay of the stream). Cost: a full root."""
    root = full_root(sequencer.engine.state).hex()
    _log.info(
        "%s: stopped as %s at stream seq %d, seq %d, root %s",
        node, role, position, sequencer.seq, root,
    )  # fmt: skip


async def _serve(
    opened: Any,
    leader: Leader,
    host: str,
    port: int,
    announce: Callable[[Any, Any], None],
    outage_s: float = 0.5,
    inbox_key: bytes | None = None,
    **gateway_options: Any,
) -> int:
    from derivex.gateway import serve as serving

    exchange: ClusterExchange = opened.venue.exchange
    exchange.pipeline(outage_s)  # before ``start``: the gateway installs its gate on it
    gateway = serving.build(opened, **gateway_options)
    stop = asyncio.Event()
    code = EXIT_STOPPED

    def keep_lease() -> None:
        nonlocal code
        leader.keep_lease()
        if leader.fenced is not None and not stop.is_set():
            _log.error("%s: fenced, no longer serving: %s", leader.node, leader.fenced)
            code = EXIT_FENCED
            if gateway.gate is not None:  # held replies: their frames may never land
                gateway.gate.expire()
            stop.set()

    # the venue's keys (cluster/shared_keys.py): followed before the gateway listens
    shared = await follow_from(opened.keys, leader.log, leader.node)
    gateway.add_periodic(max(0.05, leader.lease.ttl_s / 6), keep_lease)
    # the transfer relay's commands (cluster/inbox.py), sequenced like a client's
    inbox = Inbox(leader.log, key=inbox_key)
    gateway.add_periodic(0.1, lambda: inbox.drain(opened.venue.exchange.submit, leader.pipelined))
    await gateway.start(host, port)
    announce(gateway, opened)
    # where the router (cluster/router.py) finds this domain's leader from now on
    endpoint = Endpoint(gateway.url, leader.node, leader.lease.epoch)
    advertising = asyncio.create_task(_advertise(leader, endpoint))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    pipe = leader.pipelined
    if code == EXIT_STOPPED and pipe is not None:  # a clean stop: what was applied lands
        with contextlib.suppress(Exception):
            await asyncio.to_thread(pipe.wait, pipe.pushed_seq, exchange.timeout_s)
        if gateway.gate is not None:
            gateway.gate.release_now()
        await asyncio.sleep(0.05)  # (the released replies reach their sockets)
    advertising.cancel()
    await stop_from(shared, leader.log)
    await gateway.stop()
    exchange.stop_pipeline()
    inbox.close()
    return code


async def _advertise(leader: Leader, endpoint: Endpoint, budget_s: float = 60.0) -> None:
    """Write ``endpoint`` to ``dx_endpoints`` (``cluster.endpoints``), retried through
    NATS elections for ``budget_s``; logged, never fatal (the router then answers 10040
    for this domain until a leader advertises)."""
    log = leader.log
    deadline = time.monotonic() + budget_s
    while True:
        try:
            await asyncio.to_thread(
                log.loop.call, publish_endpoint(log.js, log.domain, endpoint), 10.0
            )
            _log.info("%s: advertised %s", leader.node, endpoint.url)
            return
        except Exception as error:  # a NATS election: try again
            if time.monotonic() > deadline:
                _log.error("%s: endpoint not advertised: %r", leader.node, error)
                return
            await asyncio.sleep(0.5)
