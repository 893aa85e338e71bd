"""``prove``: an inclusion proof of one account in the state root, from a live exchange,
an engine, a recovered journal or a bare state. ``verify_proof`` (in ``verify``) checks it
without any of those."""

from __future__ import annotations

from typing import Any

from derivex.core import query
from derivex.core.engine import Engine
from derivex.core.state import State
from derivex.journal.recovery import Recovered
from derivex.journal.roots import StateRoots


def prove(source: Any, account: int, *, seq: int | None = None) -> dict[str, Any]:
    """JSON-serialisable proof that ``account``'s leaf (balance, positions, open orders) is
    in the current state root of ``source``: an ``Exchange``, ``Engine``, ``Recovered`` or
    ``State``. ``seq`` defaults to the last sequenced command: the journal's for a
    journaled exchange, else the engine's processed-record count (equal for a log that
    starts at seq 1). Cost: incremental for a journaled exchange (its journal tracks dirty
    leaves from the events), else a full root build (~2 µs per account). Raises KeyError
    for an unknown account."""
    tracker = None
    if isinstance(source, Recovered):
        state, seq = source.engine.state, seq if seq is not None else source.seq
    elif isinstance(source, Engine):
        state = source.state
    elif isinstance(source, State):
        state = source
    elif hasattr(source, "engine") and hasattr(source, "journal"):  # an Exchange
        state = source.engine.state
        if source.journal is not None:
            tracker = source.journal.roots
            seq = seq if seq is not None else source.journal.last_seq
    else:
        raise TypeError(f"cannot prove from {type(source).__name__}")
    if seq is None:
        seq = query.commands_processed(state)
    return (tracker or StateRoots()).prove(state, account, seq)
