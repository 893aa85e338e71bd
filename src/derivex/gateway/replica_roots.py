"""Replica agreement for the operator page in cluster mode (``derivex serve --cluster``):
the leader's gateway listens to the state roots every node of its domain publishes on
``dx.<domain>.roots`` (``cluster.node``: the leader's every K stream seqs, each follower's,
standbys and replicas alike, at the same stream seqs) and reports, per follower, whether
its latest root the leader also reported is the leader's root at that stream seq.

Outside cluster mode (no ``Leader`` behind the venue) the agreement is ``None`` ("n/a").
The subscription starts with the first call (the first operator who looks) and keeps the
latest ``KEPT`` leader roots and follower reports. Cost: a dictionary update per report
(on the NATS client's thread), O(followers x KEPT) per summary.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from typing import Any

KEPT = 256  # leader roots, and reports per follower, kept

_WATCHES: weakref.WeakKeyDictionary[Any, ReplicaRoots] = weakref.WeakKeyDictionary()


class ReplicaRoots:
    """The roots reported on a domain's subject (see the module docstring)."""

    def __init__(self, log: Any) -> None:
        from derivex.cluster.node import roots_subject  # (the cluster extra: nats-py)

        self._lock = threading.Lock()
        self._leader: OrderedDict[int, tuple[int, str]] = OrderedDict()  # position -> seq, root
        self._followers: dict[str, deque[tuple[int, str]]] = {}  # node -> (position, root)
        self._subscription = log.loop.call(
            log.nc.subscribe(roots_subject(log.domain), cb=self._on_root), 5.0
        )

    async def _on_root(self, message: Any) -> None:
        from derivex.cluster.node import RootReport

        try:
            report = RootReport.decode(message.data)
        except (ValueError, TypeError):  # not a root report: nothing to compare
            return
        with self._lock:
            if report.leader:
                self._leader[report.position] = (report.seq, report.root)
                while len(self._leader) > KEPT:
                    self._leader.popitem(last=False)
            else:
                kept = self._followers.setdefault(report.node, deque(maxlen=KEPT))
                kept.append((report.position, report.root))

    def summary(self) -> dict[str, Any]:
        """``replicas`` (followers that reported), ``agree`` (every one's latest compared
        root equals the leader's; None before any comparison), and per follower its
        ``node``, the ``position`` (stream seq) and ``seq`` compared and ``agree``."""
        nodes = []
        with self._lock:
            for node, reports in sorted(self._followers.items()):
                for position, root in reversed(reports):
                    leader = self._leader.get(position)
                    if leader is not None:
                        seq, leader_root = leader
                        nodes.append(
                            {
                                "node": node,
                                "position": position,
                                "seq": seq,
                                "agree": root == leader_root,
                            }
                        )
                        break
        return {
            "replicas": len(nodes),
            "agree": all(n["agree"] for n in nodes) if nodes else None,
            "nodes": nodes,
        }


def agreement(venue: Any) -> dict[str, Any] | None:
    """The venue's replica agreement (``ReplicaRoots.summary``), or None outside cluster
    mode. The first call subscribes (one round trip to the NATS server)."""
    leader = getattr(venue.exchange, "leader", None)
    log = getattr(leader, "log", None)
    if log is None:
        return None
    watch = _WATCHES.get(venue)
    if watch is None:
        watch = _WATCHES[venue] = ReplicaRoots(log)
    return watch.summary()
