"""Several risk domains as one venue, checked from their logs alone: replaying a domain's
log, the audit of cross-domain transfers and global conservation, and the root of roots.

A domain has a name (its stream, ``DX_<NAME>``) and a small id (0..15, the ``domain``
field of transfer commands; the mapping is the venue's configuration, e.g.
``btc_usdc=0,eth_usdc=1``).

- :func:`replay` runs one domain's frames through a fresh engine and collects its
  transfer events; a replica or a relay does the same incrementally (:class:`DomainReplay`).
- :func:`audit` checks, for every ordered pair of domains A -> B, that each transfer A
  sent is processed by B at most once (credited or refused, with the same account and
  amount), that each refund A received answers a refusal in B once, and that
  Σ balances over all domains + in flight + refunds pending = Σ deposits − Σ withdrawals.
  ``settled`` says whether nothing is in flight.
- :func:`root_of_roots` is one SHA-256 Merkle root over ``(domain, stream seq, state
  root)`` sorted by name; :func:`venue_root` computes it by replaying each log to its
  stated stream seq.

Costs: a replay is O(frames) engine calls plus a state root at the end; the audit is
O(transfers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from derivex.cluster.log import CommandLog, LogBatch
from derivex.core import query
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import EventKind
from derivex.journal import JournalReader, full_root
from derivex.journal.verify import leaf_hash, node_hash

__all__ = [
    "Audit",
    "DomainReplay",
    "JournalLog",
    "account_view",
    "audit",
    "parse_domains",
    "replay",
    "root_of_roots",
    "venue_root",
]

_TRANSFER_EVENTS = (
    EventKind.TRANSFER_SENT,
    EventKind.TRANSFER_RECEIVED,
    EventKind.TRANSFER_REFUSED,
    EventKind.TRANSFER_REFUNDED,
)
ROOTS_PREFIX = b"derivex-root-of-roots-v1"


def parse_domains(text: str) -> dict[str, int]:
    """``"btc_usdc=0,eth_usdc=1"`` -> ``{"btc_usdc": 0, "eth_usdc": 1}``. Raises
    ValueError on a malformed entry, a repeated name or id, or an id outside 0..15."""
    domains: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = entry.partition("=")
        if not sep or not name or not number.isdigit():
            raise ValueError(f"domain {entry!r}: expected NAME=ID")
        ident = int(number)
        if not 0 <= ident < query.MAX_DOMAINS or ident in domains.values() or name in domains:
            raise ValueError(f"domain {entry!r}: id out of range or repeated")
        domains[name] = ident
    return domains


@dataclass
class DomainReplay:
    """A domain's engine fed its frames in order, with the transfer events seen:
    ``transfers[kind]`` maps ``(peer, number)`` to ``(account, amount, reason, refusal
    number)`` and
    ``duplicates`` counts a (peer, number) seen twice for one kind (never, if the core's
    dedupe holds)."""

    engine: Engine = field(default_factory=Engine)
    frames: int = 0
    transfers: dict[int, dict[tuple[int, int], tuple[int, int, int, int]]] = field(
        default_factory=lambda: {int(kind): {} for kind in _TRANSFER_EVENTS}
    )
    duplicates: int = 0

    def apply(self, commands: np.ndarray) -> np.ndarray:
        """One frame (copied: read views would make numba compile a read-only variant);
        returns its events. Cost: one engine call."""
        events = self.engine.process(np.array(commands, copy=True))
        self.frames += 1
        mask = np.isin(events["kind"], _TRANSFER_EVENTS)
        for event in events[mask]:
            table = self.transfers[int(event["kind"])]
            key = (int(event["instrument"]), int(event["order_id"]))
            if key in table:
                self.duplicates += 1
            table[key] = (
                int(event["account"]),
                abs(int(event["cash_units"])),
                int(event["reason"]),
                int(event["price_ticks"]),
            )
        return events

    def root(self) -> bytes:
        return full_root(self.engine.state)


class JournalLog:
    """A file journal read as a domain's log (read only, no lock taken: it may belong to a
    running venue): one journal batch per frame, frames numbered from 1."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def read(self, from_seq: int = 1) -> Iterator[LogBatch]:
        for position, batch in enumerate(JournalReader(self.directory, from_seq), start=1):
            yield LogBatch(batch.first_seq, batch.commands, position)


def replay(
    log: CommandLog | JournalLog, *, frames: int | None = None, config: EngineConfig | None = None
) -> DomainReplay:
    """Replay ``log`` from its first frame through a fresh engine, up to frame (stream
    seq) ``frames`` if given. Raises ValueError if the log has fewer frames than that."""
    result = DomainReplay(Engine(config) if config is not None else Engine())
    for batch in log.read(1):
        if frames is not None and result.frames >= frames:
            break
        result.apply(batch.commands)
    if frames is not None and result.frames != frames:
        raise ValueError(f"the log has {result.frames} frames, not {frames}")
    return result


@dataclass(frozen=True)
class Audit:
    """What :func:`audit` found: problems (empty when every check held), the units in
    flight and refunds pending per ordered pair, and the global money totals."""

    problems: list[str]
    in_flight: dict[tuple[str, str], int]
    refunds_pending: dict[tuple[str, str], int]
    balances: int
    deposits_minus_withdrawals: int

    @property
    def settled(self) -> bool:
        return not any(self.in_flight.values()) and not any(self.refunds_pending.values())

    @property
    def ok(self) -> bool:
        return not self.problems


def _of(rep: DomainReplay, kind: int, peer: int) -> dict[int, tuple[int, int]]:
    """``{number: (account, amount)}`` of ``rep``'s events of ``kind`` with ``peer``."""
    return {n: value[:2] for (p, n), value in rep.transfers[kind].items() if p == peer}


def _money(name: str, rep: DomainReplay, problems: list[str]) -> tuple[int, int]:
    """``(Σ balances, deposits − withdrawals)`` of one domain; its invariants checked."""
    state = rep.engine.state
    try:
        rep.engine.check_invariants()
    except AssertionError as error:
        problems.append(f"{name}: {error}")
    if rep.duplicates:
        problems.append(f"{name}: {rep.duplicates} transfer events repeated a number")
    balances = sum(
        query.balance_units(state, account) for account in range(query.account_count(state))
    )
    counters = dict(
        zip(query.GLOBAL_COUNTER_NAMES, query.global_counters(state).tolist(), strict=True)
    )
    return balances, counters["total_deposits_units"] - counters["total_withdrawals_units"]


def _pair(
    names: tuple[str, str], reps: tuple[DomainReplay, DomainReplay], ids: tuple[int, int]
) -> tuple[int, int, list[str]]:
    """``(in flight, refunds pending, problems)`` of transfers from ``names[0]`` to
    ``names[1]``."""
    (source, destination), (rep, other), (src_id, dst_id) = names, reps, ids
    sent = _of(rep, EventKind.TRANSFER_SENT, dst_id)
    refused = _of(other, EventKind.TRANSFER_REFUSED, src_id)
    done = {**_of(other, EventKind.TRANSFER_RECEIVED, src_id), **refused}
    refunded = _of(rep, EventKind.TRANSFER_REFUNDED, dst_id)
    problems = [
        f"{destination} processed transfer {n} from {source} as {value}, sent as {sent.get(n)}"
        for n, value in done.items()
        if sent.get(n) != value
    ] + [
        f"{source} was refunded transfer {n} to {destination} as {value}, refused as "
        f"{refused.get(n)}"
        for n, value in refunded.items()
        if refused.get(n) != value
    ]
    in_flight = sum(amount for n, (_, amount) in sent.items() if n not in done)
    pending = sum(amount for n, (_, amount) in refused.items() if n not in refunded)
    return in_flight, pending, problems


def _unroutable(source: str, rep: DomainReplay, ids: dict[str, int]) -> tuple[int, list[str]]:
    """Transfers ``source`` sent to no other domain of the venue (an unknown id, or
    itself): the relay refunds them. Returns (units not refunded yet, problems)."""
    routable = {ident for name, ident in ids.items() if name != source}
    refunded = rep.transfers[EventKind.TRANSFER_REFUNDED]
    pending, problems = 0, []
    for (peer, n), (account, amount, *_) in rep.transfers[EventKind.TRANSFER_SENT].items():
        if peer in routable:
            continue
        if (peer, n) not in refunded:
            pending += amount
        elif refunded[(peer, n)][:2] != (account, amount):
            problems.append(f"{source}: the refund of transfer {n} to domain {peer} differs")
    return pending, problems


def audit(replays: dict[str, DomainReplay], ids: dict[str, int]) -> Audit:
    """Check transfers and conservation across ``replays`` (by domain name; ``ids`` maps
    names to domain ids). See the module docstring."""
    problems: list[str] = []
    in_flight: dict[tuple[str, str], int] = {}
    pending: dict[tuple[str, str], int] = {}
    balances = total = 0
    for name, rep in replays.items():
        held, net = _money(name, rep, problems)
        balances += held
        total += net
        pending[(name, name)], found = _unroutable(name, rep, ids)
        problems += found
    for source, rep in replays.items():
        for destination, other in replays.items():
            if source != destination:
                flight, waiting, found = _pair(
                    (source, destination), (rep, other), (ids[source], ids[destination])
                )
                in_flight[(source, destination)] = flight
                pending[(source, destination)] = waiting
                problems += found
    # money is in an account, in flight (the source's escrow), or refused and not yet
    # refunded (still the source's escrow): nothing else
    held = balances + sum(in_flight.values()) + sum(pending.values())
    if held != total:
        problems.append(
            f"global conservation: balances {balances} + in flight {sum(in_flight.values())}"
            f" + refunds pending {sum(pending.values())} != deposits - withdrawals {total}"
        )
    return Audit(problems, in_flight, pending, balances, total)


def account_view(
    replays: dict[str, DomainReplay], ids: dict[str, int], account: int
) -> dict[str, dict[str, int]]:
    """One account across the venue: per domain its balance (0 where it has no account),
    and what it has in flight out of that domain (sent, neither processed by the
    destination nor refunded) and refused there waiting for the refund. O(transfers)."""
    view: dict[str, dict[str, int]] = {}
    for name, rep in replays.items():
        state = rep.engine.state
        exists = query.account_exists(state, account)
        in_flight = refund_due = 0
        for destination, other in replays.items():
            if destination == name:
                continue
            src_id, dst_id = ids[name], ids[destination]
            sent = _of(rep, EventKind.TRANSFER_SENT, dst_id)
            refused = _of(other, EventKind.TRANSFER_REFUSED, src_id)
            done = {**_of(other, EventKind.TRANSFER_RECEIVED, src_id), **refused}
            refunded = _of(rep, EventKind.TRANSFER_REFUNDED, dst_id)
            in_flight += sum(
                a for n, (acct, a) in sent.items() if acct == account and n not in done
            )
            refund_due += sum(
                a for n, (acct, a) in refused.items() if acct == account and n not in refunded
            )
        view[name] = {
            "balance_units": query.balance_units(state, account) if exists else 0,
            "in_flight_units": in_flight,
            "refund_due_units": refund_due,
        }
    return view


def root_of_roots(entries: dict[str, tuple[int, bytes]]) -> bytes:
    """The Merkle root over ``{domain: (stream seq, state root)}``: leaves
    ``leaf_hash(name length, name, seq, root)`` sorted by name, paired up the tree
    (an odd node is paired with the empty hash), then SHA-256 of the prefix, the leaf
    count and the top. Cost: O(domains)."""
    level = [
        leaf_hash(_u(len(name.encode()), 2) + name.encode() + _u(seq, 8) + root)
        for name, (seq, root) in sorted(entries.items())
    ]
    while len(level) > 1:
        if len(level) % 2:
            level.append(bytes(32))
        level = [node_hash(level[k], level[k + 1]) for k in range(0, len(level), 2)]
    top = level[0] if level else bytes(32)
    return hashlib.sha256(ROOTS_PREFIX + _u(len(entries), 8) + top).digest()


def _u(value: int, size: int) -> bytes:
    """Little-endian unsigned integer (the root's encoding, not a record)."""
    return value.to_bytes(size, "little")


def venue_root(
    logs: dict[str, CommandLog] | dict[str, JournalLog], frames: dict[str, int]
) -> tuple[bytes, dict[str, tuple[int, bytes]]]:
    """Replay each domain's log to its stream seq in ``frames`` and return the root of
    roots with the per-domain ``(stream seq, root)``. Raises ValueError for a log shorter
    than asked."""
    entries = {
        name: (frames[name], replay(log, frames=frames[name]).root()) for name, log in logs.items()
    }
    return root_of_roots(entries), entries
