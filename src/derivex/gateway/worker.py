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
- frames of *other* workers are applied to the worker's ``Venue`` as they arrive (every
  millisecond and before every command), so order records, trades, books and
  subscriptions follow the whole venue, not only this worker's clients.

Worker 0 also runs the market inputs (simulated index feed and pricing service) and, with
``--demo``, the agents: they submit through its ring like any client. The supervisor
prepares the data directory first with the embedded ``open_venue`` (a new venue is listed,
funded and given its demo key; an existing one is recovered), closes it, and starts the
runtime on its journal: the engine resumes it and every replica catches up from it.

Consistency: a client is answered after its command is durable and applied by its own
worker's replica, so a connection reads its own writes. Another worker may apply the same
frame up to ~1 ms later (its poll interval): two connections on two workers can briefly
see different states, as on any venue with several gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core.records import EVENT_DTYPE
from derivex.gateway.catalog import Catalog
from derivex.gateway.keys import KeyStore
from derivex.gateway.server import Gateway, tune_gc
from derivex.gateway.telemetry import configure_logging, logger
from derivex.gateway.venue import Venue
from derivex.runtime.replica import AppliedFrame, ReplicaExchange
from derivex.runtime.rings import Idle

__all__ = ["RemoteExchange", "deribit_front_end"]

POLL_INTERVAL_S = 0.001
SUBMIT_TIMEOUT_S = 30.0


class RemoteExchange(ReplicaExchange):
    """The replica's read-only ``Exchange`` with a ``submit`` that goes through the
    runtime: push the commands on the worker's ring, apply bus frames until this
    instance's own frames covering them are applied, wait for the journal, and return
    their events (stamped ``seq``/``ts_ns`` are written back into ``commands``, as
    ``Exchange.submit`` does). Frames of others met on the way go to ``on_foreign``.
    Blocking: the worker's event loop waits for the round trip (the gateway submits a
    whole loop tick of orders at once)."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx.replica.engine)
        self.ctx = ctx
        # what to do with frames of others (the front end walks them into its venue)
        self.on_foreign: Callable[[AppliedFrame], None] = lambda frame: None
        self.round_trips = 0

    def submit(self, commands: np.ndarray) -> np.ndarray:
        ctx, replica = self.ctx, self.ctx.replica
        if len(commands) == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        ctx.submit(commands, timeout=SUBMIT_TIMEOUT_S)
        need, done = len(commands), 0
        events: list[np.ndarray] = []
        idle = Idle()
        deadline = time.monotonic() + SUBMIT_TIMEOUT_S
        while done < need:
            applied = replica.poll()
            for frame in applied:
                if frame.own:
                    count = len(frame.commands)
                    commands[done:done + count] = frame.commands
                    events.append(frame.events)
                    done += count
                else:
                    self.on_foreign(frame)
            if applied:
                idle.reset()
                continue
            ctx.discard_responses()  # answers come from the replica; keep the ring free
            if ctx.stopping or time.monotonic() > deadline:
                raise TimeoutError(f"commands not sequenced within {SUBMIT_TIMEOUT_S} s")
            idle()
        last = int(commands[-1]["seq"])
        while ctx.durable_seq < last:  # acknowledged by the journal (its fsync policy)
            if time.monotonic() > deadline:
                raise TimeoutError("commands not durable in time")
            idle()
        self.round_trips += 1
        return events[0] if len(events) == 1 else np.concatenate(events)

    def pump(self) -> int:
        """Apply what the bus holds (frames of others; none of ours can be pending: submit
        waits for them). Returns the frames applied."""
        applied = self.ctx.replica.poll()
        for frame in applied:
            self.on_foreign(frame)
        self.ctx.discard_responses()
        return len(applied)


def deribit_front_end(ctx: Any, data_dir: str, host: str = "127.0.0.1", port: int = 8080,
                      demo: bool = True, seed: int = 7, log_level: int = 20,
                      json_logs: bool = True) -> dict[str, Any]:
    """Runtime front end (``RuntimeConfig.front_end = "derivex.gateway.worker:
    deribit_front_end"``): serve the Deribit API of the venue in ``data_dir`` on
    ``host:port`` (shared by all workers) until the runtime stops."""
    configure_logging(level=log_level, json=json_logs)
    if ctx.replica is None:
        raise RuntimeError("the Deribit front end needs replicas (RuntimeConfig.replicas)")
    return asyncio.run(_serve(ctx, Path(data_dir), host, port, demo, seed))


async def _serve(ctx: Any, data: Path, host: str, port: int, demo: bool,
                 seed: int) -> dict[str, Any]:
    from derivex.gateway import serve as serving

    log = logger().bind(worker=ctx.index, generation=ctx.generation)
    exchange = RemoteExchange(ctx)
    catalog = Catalog.load(data / "instruments.json")
    venue = Venue(exchange, catalog)
    exchange.on_foreign = lambda frame: venue.apply_frame(frame.commands, frame.events)
    keys = KeyStore(data)
    if ctx.index == 0:  # the market inputs and the agents run once, in worker 0
        state = serving.ServeState.load(data / "serve.json")
        demo_key = next((k for k in keys.list_keys() if k.name == "demo"), None)
        opened = serving.Opened(venue, keys, state, demo_key, [])  # type: ignore[arg-type]
        gateway = serving.build(opened, demo=demo)
    else:
        gateway = Gateway(venue, keys)
    gateway.add_periodic(POLL_INTERVAL_S, exchange.pump)
    await gateway.start(host, port, reuse_port=True)
    tune_gc()
    log.info("gateway worker serving", url=gateway.url, pid=os.getpid(),
             replica_seq=ctx.replica.applied_seq)
    while not ctx.stopping:
        await asyncio.sleep(0.05)
    log.info("gateway worker stopping")
    with contextlib.suppress(Exception):
        await gateway.stop()
    return {"round_trips": exchange.round_trips, "orders_open": len(venue.orders),
            "url": gateway.url}


def run_workers(data_dir: Path | str, *, workers: int, host: str = "127.0.0.1",
                port: int = 8080, demo: bool = True, fsync: str = "group",
                log_level: int = 20, json_logs: bool = True, seconds: float | None = None,
                announce: Any = None) -> Any:
    """The supervisor of ``derivex serve --workers N``: prepare ``data_dir`` with the
    embedded ``open_venue`` (create or recover; a snapshot so that the engine and every
    replica start from it), close it, and run the runtime on its journal with ``workers``
    Deribit gateway workers on ``host:port`` until SIGINT/SIGTERM (or ``seconds``).
    ``announce(url, opened)`` is called once the runtime runs. Returns the runtime's
    report."""
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
    config = RuntimeConfig(
        name=f"derivex-{port}", workers=workers, engine=exchange.engine.config,
        journal_dir=str(data / "journal"), fsync=fsync, replicas=True,
        front_end="derivex.gateway.worker:deribit_front_end",
        front_end_options={"data_dir": str(data), "host": host, "port": port, "demo": demo,
                           "seed": opened.state.seed, "log_level": log_level,
                           "json_logs": json_logs})
    url = f"http://{host}:{port}"
    return run_runtime(config, seconds=seconds, on_ready=(
        None if announce is None else lambda runtime: announce(url, opened)))


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
