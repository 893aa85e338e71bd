"""``python -m derivex.cluster``: one node of a domain, driving a steady synthetic flow
when it leads. The failover tests run two of these and kill, pause and resume them; a
later ``derivex serve --cluster`` replaces the synthetic flow with the gateway.

A node follows the stream as a standby; whenever the lease is free it takes over
(``Follower.take_over``) and then sequences one small batch every ``1/rate`` seconds:
creating accounts, then deposits to them. After each batch's PubAck it appends a line to
``--acks`` (``first_seq last_seq stream_seq sha256-of-the-records``, flushed): the
commands it acknowledged. It stops on SIGTERM or after ``--lifetime`` seconds, writing
``--status`` (JSON: role, seq, stream seq, state root, why it stopped); a fenced leader
stops at once with exit code 3.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np

from derivex.cluster.inbox import Inbox
from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.lease import Lease
from derivex.cluster.log import Fenced
from derivex.cluster.node import Follower, Leader, LeaseLost, warm_kernels
from derivex.core.records import CommandKind, command_array
from derivex.journal import full_root

ACCOUNTS = 8
_log = logging.getLogger("derivex.cluster.process")


def synthetic_batch(next_seq: int, size: int) -> np.ndarray:
    """``size`` commands for seqs ``next_seq`` on: the first ``ACCOUNTS`` create
    accounts, the rest deposit ``seq`` units into account ``seq % ACCOUNTS``."""
    commands = command_array(size)
    seqs = np.arange(next_seq, next_seq + size)
    commands["kind"] = np.where(seqs <= ACCOUNTS, CommandKind.CREATE_ACCOUNT, CommandKind.DEPOSIT)
    deposits = seqs > ACCOUNTS
    commands["account"][deposits] = seqs[deposits] % ACCOUNTS
    commands["amount_units"][deposits] = seqs[deposits]
    return commands


def transfer_batch(
    next_seq: int, size: int, accounts: int, peers: list[int], every: int
) -> np.ndarray:
    """The synthetic flow with transfers (``--peers``): the first ``accounts`` commands
    create accounts, the rest deposit into account ``3 + seq % accounts``, and every
    ``every``-th batch ends with a TRANSFER_OUT of ``1 + seq % 997`` units from one of
    them to a peer domain (round robin)."""
    commands = command_array(size)
    seqs = np.arange(next_seq, next_seq + size)
    commands["kind"] = np.where(seqs <= accounts, CommandKind.CREATE_ACCOUNT, CommandKind.DEPOSIT)
    deposits = seqs > accounts
    commands["account"][deposits] = 3 + seqs[deposits] % accounts
    commands["amount_units"][deposits] = seqs[deposits]
    last = int(seqs[-1])
    if peers and last > accounts and (last // size) % every == 0:
        commands["kind"][-1] = CommandKind.TRANSFER_OUT
        commands["account"][-1] = 3 + (last // size) % accounts
        commands["domain"][-1] = peers[(last // size // every) % len(peers)]
        commands["amount_units"][-1] = 1 + last % 997
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivex.cluster")
    parser.add_argument("--urls", required=True, help="comma-separated nats:// URLs")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--node", default="node")
    parser.add_argument("--acks", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--ttl", type=int, default=2, help="lease TTL, whole seconds")
    parser.add_argument("--rate", type=float, default=50.0, help="batches per second")
    parser.add_argument("--batch", type=int, default=4, help="commands per batch")
    parser.add_argument("--every", type=int, default=8, help="K: a root every K frames")
    parser.add_argument("--lifetime", type=float, default=60.0)
    parser.add_argument(
        "--peers", default="", help="domain ids to send transfers to (comma-separated)"
    )
    parser.add_argument("--accounts", type=int, default=ACCOUNTS, help="with --peers")
    parser.add_argument("--transfer-every", type=int, default=5, help="with --peers")
    parser.add_argument(
        "--pause-file",
        type=Path,
        help="while this file exists a leader sequences only its inbox (tests: quiesce)",
    )
    parser.add_argument(
        "--ignore-lease",
        action="store_true",
        help="tests only: lead on after the lease is lost, so only the stream's fence stops us",
    )
    args = parser.parse_args(argv)
    # `kill -USR1` prints every thread's stack to the log: a stuck node says where
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stopping: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    warm_kernels()
    deadline = time.monotonic() + args.lifetime
    log = JetStreamLog(args.urls.split(","), args.domain, writer=args.node, retry_for=10.0)
    lease = Lease(log, args.node, ttl_s=args.ttl)
    follower = Follower(log, every=args.every, node=args.node)
    leader: Leader | None = None
    inbox: Inbox | None = None  # while leading: the relay's TRANSFER_IN / TRANSFER_REFUND
    peers = [int(peer) for peer in args.peers.split(",") if peer]
    standing_by = False
    holder_seen: str | None = None
    reason, code = "lifetime", 0
    with open(args.acks, "a", buffering=1) as acks:
        try:
            while not stopping and time.monotonic() < deadline:
                if leader is None:
                    if lease.try_acquire():
                        _log.info(
                            "%s: lease acquired (epoch %d) at stream seq %d",
                            args.node, lease.epoch, follower.position,
                        )  # fmt: skip
                        try:
                            leader = follower.take_over(lease, check_lease=not args.ignore_lease)
                        except LeaseLost as error:
                            # nothing was published (the catch-up outlasted the TTL, or a
                            # slow renew): the follower is intact, so stand by again
                            _log.warning("%s: takeover abandoned: %s", args.node, error)
                            continue
                        _log.info("%s: leading from seq %d", args.node, leader.sequencer.seq)
                        inbox = Inbox(log)
                    else:
                        holder = lease.peek()
                        if (holder and holder[0]) != holder_seen:  # a line per new holder
                            _log.info("%s: lease held by %s", args.node, holder)
                            holder_seen = holder and holder[0]
                        if not standing_by:  # tests wait for this line (kernels warm)
                            _log.info(
                                "%s: standby from stream seq %d", args.node, follower.position
                            )
                            standing_by = True
                        follower.poll(idle=min(0.5, args.ttl / 4))
                        if follower.diverged:
                            reason, code = follower.diverged, 2
                            break
                    continue
                leader.keep_lease()
                if inbox is not None:
                    inbox.drain(leader.sequence)
                if args.pause_file is not None and args.pause_file.exists():
                    time.sleep(1.0 / args.rate)
                    continue
                if peers:
                    batch = transfer_batch(
                        leader.sequencer.seq + 1,
                        args.batch,
                        args.accounts,
                        peers,
                        args.transfer_every,
                    )
                else:
                    batch = synthetic_batch(leader.sequencer.seq + 1, args.batch)
                leader.sequence(batch)  # returns after the PubAck
                digest = hashlib.sha256(batch.tobytes()).hexdigest()
                acks.write(f"{batch['seq'][0]} {batch['seq'][-1]} {leader.position} {digest}\n")
                time.sleep(1.0 / args.rate)
        except Fenced as error:
            reason, code = f"fenced: {error}", 3
        if stopping:
            reason = stopping[0]
    sequencer = leader.sequencer if leader is not None else follower.sequencer
    status = {
        "node": args.node,
        "role": "leader" if leader is not None else "follower",
        "seq": sequencer.seq,
        "position": log.stream_last if leader is not None else follower.position,
        "root": full_root(sequencer.engine.state).hex(),
        "epoch": lease.epoch,
        "reason": reason,
    }
    args.status.write_text(json.dumps(status))
    log.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
