"""Snapshots taken on a replica (never the leader), replicas bootstrapped from them, and
the stream trimmed below the oldest snapshot kept.

A snapshot is the journal's snapshot file (``journal.snapshot``: the whole engine state
at a command seq, written atomically, checksummed, with its state root) plus a sidecar
``cluster-<seq:020d>.json`` naming the domain and the **stream seq** of the last frame
applied, written (atomically) after the snapshot file: a snapshot without its sidecar is
ignored. Files in a directory per domain; the object store is the next step
(docs/cluster.md).

>>> path = take_snapshot(replica, Path("snapshots"))           # doctest: +SKIP
>>> replica = bootstrap(log, Path("snapshots"), every=16)       # doctest: +SKIP
>>> trim(log, Path("snapshots"), keep=2)                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.log import LogError
from derivex.cluster.node import Follower
from derivex.journal import full_root
from derivex.journal.snapshot import (
    list_snapshots,
    load_snapshot,
    restore_engine,
    snapshot_path,
    write_snapshot,
)

__all__ = ["bootstrap", "snapshots", "take_snapshot", "trim"]


def _sidecar(directory: Path, seq: int) -> Path:
    return directory / f"cluster-{seq:020d}.json"


def take_snapshot(follower: Follower, directory: Path) -> Path:
    """Snapshot ``follower``'s engine between two frames (call it between polls), tagged
    with its stream seq and state root. Refused (ValueError) on a diverged replica.
    Cost: one pass over the state (O(capacity)), a full root, two fsyncs."""
    if follower.diverged is not None:
        raise ValueError(f"no snapshot of a diverged replica: {follower.diverged}")
    engine, seq = follower.sequencer.engine, follower.sequencer.seq
    root = full_root(engine.state)
    path = write_snapshot(directory, engine.state, engine.config, seq, root=root)
    sidecar = {
        "domain": follower.log.domain,
        "position": follower.position,
        "seq": seq,
        "root": root.hex(),
        "node": follower.node,
    }
    temporary = _sidecar(directory, seq).with_suffix(".tmp")
    with open(temporary, "w") as handle:
        handle.write(json.dumps(sidecar))
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(_sidecar(directory, seq))
    return path


def snapshots(directory: Path, domain: str) -> list[dict]:
    """The complete snapshots of ``domain`` in ``directory`` (snapshot file and sidecar),
    oldest first, each the sidecar's fields plus ``path``."""
    found = []
    for seq, path in list_snapshots(directory):
        sidecar = _sidecar(directory, seq)
        if sidecar.exists():
            entry = json.loads(sidecar.read_text())
            if entry.get("domain") == domain:
                found.append({**entry, "path": str(path)})
    return found


def bootstrap(
    log: JetStreamLog, directory: Path, *, every: int = 16, node: str = "replica"
) -> Follower:
    """A replica started from the newest snapshot of ``log``'s domain in ``directory``
    (a fresh one at stream seq 0 when there is none): the file's checksums are verified,
    the state root recomputed and compared with the one recorded, and the follower goes
    on from the snapshot's stream seq + 1. Raises LogError on a root that does not match
    (``SequenceGap`` later if the stream does not continue the snapshot)."""
    found = snapshots(directory, log.domain)
    if not found:
        return Follower(log, every=every, node=node)
    newest = found[-1]
    engine = restore_engine(load_snapshot(newest["path"]))
    if full_root(engine.state).hex() != newest["root"]:
        raise LogError(f"{newest['path']}: state root differs from the one recorded")
    return Follower(
        log, engine, seq=newest["seq"], position=newest["position"], every=every, node=node
    )


def trim(log: JetStreamLog, directory: Path, *, keep: int = 2) -> int:
    """Keep the newest ``keep`` snapshots of the domain, delete the older ones, and purge
    the stream below the oldest kept snapshot's stream seq + 1 (so a replica can still
    bootstrap from any kept snapshot). Returns the stream's new first seq (0: nothing
    trimmed). Cost: one purge request."""
    if keep < 1:
        raise ValueError("keep at least one snapshot")
    found = snapshots(directory, log.domain)
    if len(found) < keep:
        return 0
    oldest_kept = found[-keep]
    first = int(oldest_kept["position"]) + 1
    log.loop.call(
        log.retrying(lambda: log.js.purge_stream(log.stream, seq=first)), log.retry_for + 5
    )
    for entry in found[:-keep]:
        Path(entry["path"]).unlink(missing_ok=True)
        _sidecar(directory, int(entry["seq"])).unlink(missing_ok=True)
    assert snapshot_path(directory, int(oldest_kept["seq"])).exists()
    return first
