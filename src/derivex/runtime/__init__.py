"""Multi-process runtime on one machine: gateway workers, sequencer/engine, journal writer
and market data as separate processes connected by shared-memory rings.

::

    worker 0 ──cmd.0 (SPSC)──┐                        ┌─▶ journal      (bus consumer 0)
    worker 1 ──cmd.1 (SPSC)──┼─▶ engine/sequencer ──bus (broadcast)──▶ market data  (consumer 1)
       ...                   │        │   │           └─▶ replica of worker W (consumer 2 + W)
    worker W ◀─rsp.W (SPSC)──┘◀───────┘   └─▶ book snapshots (seqlock) ◀── any reader
                             responses, released by the worker once durable

- :class:`Runtime` / :func:`serve`: the supervisor (``derivex serve --workers N``);
  :class:`RuntimeConfig` says what runs where.
- Gateway workers host a pluggable *front end* (``"module:function"``, called with a
  :class:`WorkerContext`); built in: :func:`frontends.synthetic`, :func:`frontends.replay`.
- With a journal, each worker keeps a :class:`Replica` of the engine state
  (``ctx.replica``): applied bus frames (:class:`AppliedFrame`) and an ``Exchange`` view for
  queries. A run on a journal that holds commands resumes it.
- ``python -m derivex.runtime --help`` runs one from the command line.

See docs/runtime.md for the record formats, the shutdown order and crash handling.
"""

from derivex.runtime.config import RuntimeConfig
from derivex.runtime.replica import AppliedFrame, Replica, ReplicaDiverged, ReplicaError
from derivex.runtime.supervisor import Runtime, RuntimeReport, serve
from derivex.runtime.worker import Response, WorkerContext

__all__ = [
    "AppliedFrame",
    "Replica",
    "ReplicaDiverged",
    "ReplicaError",
    "Response",
    "Runtime",
    "RuntimeConfig",
    "RuntimeReport",
    "WorkerContext",
    "serve",
]
