"""The transfer relay: carries cross-domain transfers from the source domain's log to the
destination's leader, and refusals back as refunds. Stateless, so restartable anywhere.

It follows every domain's stream with a :class:`~derivex.cluster.domains.DomainReplay`
(the same kernel as the leaders: it sees the *committed* events of each frame). For each
ordered pair A -> B:

- every ``TRANSFER_SENT`` (A, to B, number n) that B's replayed state has not processed
  (``query.transfer_processed``) is sent to B's leader inbox as ``TRANSFER_IN(account,
  amount, domain=A, transfer_id=n)``;
- every ``TRANSFER_REFUSED`` in B (from A, transfer n, refusal number k) whose refund A
  has not processed (``query.refund_processed`` of k) is sent to A's inbox as
  ``TRANSFER_REFUND(transfer_id=k, refund_of=n)``; so is every transfer A sent to a domain
  id that is not another domain of the venue (unknown, or A itself), with k = n.

What to send is derived from the logs alone, so a relay killed at any point and started
again (or two relays at once) neither loses nor doubles a transfer: a transfer not yet in
B's log is sent again, and one sent twice is refused by B's processed-transfer set
(DUPLICATE_TRANSFER, changing nothing). It sends in number order, at most ``batch``
numbers from the lowest unprocessed one (well inside the core's window of 62), and sends a
number again only after ``resend_s`` without seeing it processed.

Run it as ``python -m derivex.cluster.relay --urls URLS --domains a=0,b=1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

import nats.errors

from derivex.cluster.domains import DomainReplay, parse_domains
from derivex.cluster.inbox import SIGNATURE_HEADER, inbox_subject, load_inbox_key, sign_request
from derivex.cluster.jetstream import JetStreamLog
from derivex.cluster.log import LogError
from derivex.core import query
from derivex.core.records import CommandKind, EventKind, command_array

__all__ = ["Relay", "main"]

_log = logging.getLogger("derivex.cluster.relay")


class Relay:
    """Relays transfers between ``domains`` (name -> id) on the NATS cluster at ``urls``.
    Call :meth:`step` in a loop; :meth:`close` at the end. Not thread-safe."""

    def __init__(
        self,
        urls: list[str],
        domains: dict[str, int],
        *,
        batch: int = 16,
        resend_s: float = 2.0,
        request_timeout: float = 2.0,
        retry_for: float = 10.0,
        inbox_key: bytes | None = None,
    ) -> None:
        self.ids = dict(domains)
        self.inbox_key = inbox_key  # signs every inbox request (``cluster.inbox``)
        self.batch = batch
        self.resend_s = resend_s
        self.request_timeout = request_timeout
        self.logs: dict[str, JetStreamLog] = {}
        try:
            for name in domains:
                self.logs[name] = JetStreamLog(urls, name, writer="relay", retry_for=retry_for)
        except BaseException:
            self.close()
            raise
        self.replays = {name: DomainReplay() for name in domains}
        self.positions = dict.fromkeys(domains, 0)
        self._sent_at: dict[tuple[str, int, int, int], float] = {}
        self.delivered = 0  # records the destination leaders acknowledged
        self.errors = 0

    def catch_up(self, name: str) -> int:
        """Apply ``name``'s frames up to its stream's end as of now; returns how many."""
        log = self.logs[name]
        log.refresh()
        end = log.stream_last
        applied = 0
        if end > self.positions[name]:
            for frame in log.follow(self.positions[name] + 1, until=end):
                self.replays[name].apply(frame.commands)
                assert frame.position is not None
                self.positions[name] = frame.position
                applied += 1
        return applied

    def pending(self) -> dict[str, list[tuple[int, int, int, int, int, int]]]:
        """Per destination domain, the commands due there, as ``(kind, account, amount,
        peer id, number, refund_of)`` in number order per peer (``refund_of``: the
        transfer a refund returns; 0 for a TRANSFER_IN)."""
        due: dict[str, list[tuple[int, int, int, int, int, int]]] = {name: [] for name in self.ids}
        routable = set(self.ids.values())
        for source, src_id in self.ids.items():
            sent = self.replays[source].transfers[EventKind.TRANSFER_SENT]
            state = self.replays[source].engine.state
            # sent to no other domain of the venue (an unknown id, or itself): refunded
            unroutable = sorted(
                (peer, number)
                for (peer, number) in sent
                if (peer not in routable or peer == src_id)
                and not query.refund_processed(state, peer, number)
            )
            for peer, number in unroutable[: self.batch]:
                account, amount, *_ = sent[(peer, number)]
                due[source].append(
                    (CommandKind.TRANSFER_REFUND, account, amount, peer, number, number)
                )
            for destination, dst_id in self.ids.items():
                if destination == source:
                    continue
                dst_state = self.replays[destination].engine.state
                numbers = sorted(
                    number
                    for (peer, number) in sent
                    if peer == dst_id and not query.transfer_processed(dst_state, src_id, number)
                )
                for number in numbers[: self.batch]:
                    if number >= numbers[0] + query.WINDOW // 2:
                        break
                    account, amount, *_ = sent[(dst_id, number)]
                    due[destination].append(
                        (CommandKind.TRANSFER_IN, account, amount, src_id, number, 0)
                    )
                # refusals in ``destination`` of what ``source`` sent: refunds to source
                refused = self.replays[destination].transfers[EventKind.TRANSFER_REFUSED]
                src_state = self.replays[source].engine.state
                # keyed by the refusal number k (dense), which the event carries
                refunds = sorted(
                    (value[3], number, value[0], value[1])
                    for (peer, number), value in refused.items()
                    if peer == src_id and not query.refund_processed(src_state, dst_id, value[3])
                )
                for k, number, account, amount in refunds[: self.batch]:
                    if k >= refunds[0][0] + query.WINDOW // 2:
                        break
                    due[source].append(
                        (CommandKind.TRANSFER_REFUND, account, amount, dst_id, k, number)
                    )
        return due

    def step(self) -> int:
        """Catch up with every stream, then send what is due (and not sent in the last
        ``resend_s``). Returns the records acknowledged by the destinations. Errors of one
        domain (its leader away, its stream electing) are counted and skipped."""
        for name in self.ids:
            try:
                self.catch_up(name)
            except LogError as error:
                self.errors += 1
                _log.warning("relay: %s not caught up: %s", name, error)
        acknowledged = 0
        now = time.monotonic()
        for destination, commands in self.pending().items():
            fresh = [
                command
                for command in commands
                if now - self._sent_at.get((destination, command[0], command[3], command[4]), -1e9)
                >= self.resend_s
            ]
            if not fresh:
                continue
            records = command_array(len(fresh))
            for row, (kind, account, amount, peer, number, original) in enumerate(fresh):
                records["kind"][row] = kind
                records["account"][row] = account
                records["amount_units"][row] = amount
                records["domain"][row] = peer
                records["transfer_id"][row] = number
                records["refund_of"][row] = original
            for kind, _, _, peer, number, _ in fresh:
                self._sent_at[(destination, kind, peer, number)] = now
            if self._request(destination, records.tobytes()):
                acknowledged += len(fresh)
        self.delivered += acknowledged
        return acknowledged

    def _request(self, destination: str, payload: bytes) -> bool:
        log = self.logs[destination]
        headers = None
        if self.inbox_key is not None:
            headers = {SIGNATURE_HEADER: sign_request(self.inbox_key, destination, payload)}
        try:
            reply = log.loop.call(
                log.nc.request(
                    inbox_subject(destination),
                    payload,
                    timeout=self.request_timeout,
                    headers=headers,
                ),
                self.request_timeout + 5,
            )
        except (nats.errors.Error, TimeoutError) as error:
            self.errors += 1  # no leader right now (failover): sent again later
            _log.info("relay: %s inbox: %r", destination, error)
            return False
        answer = reply.data.decode(errors="replace")
        if not answer.startswith("ok"):
            self.errors += 1
            _log.warning("relay: %s inbox refused: %s", destination, answer)
            return False
        return True

    def close(self) -> None:
        for log in self.logs.values():
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivex.cluster.relay")
    parser.add_argument("--urls", required=True, help="comma-separated nats:// URLs")
    parser.add_argument("--domains", required=True, help="NAME=ID,NAME=ID")
    parser.add_argument("--status", type=Path, help="JSON written on stop")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between steps")
    parser.add_argument("--lifetime", type=float, default=300.0)
    parser.add_argument("--inbox-key", type=Path, help="the leaders' inbox key file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stopping: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    relay = Relay(
        args.urls.split(","), parse_domains(args.domains), inbox_key=load_inbox_key(args.inbox_key)
    )
    _log.info("relay: started for %s", relay.ids)  # tests wait for this line
    deadline = time.monotonic() + args.lifetime
    try:
        while not stopping and time.monotonic() < deadline:
            relay.step()
            time.sleep(args.interval)
    finally:
        if args.status is not None:
            args.status.write_text(
                json.dumps(
                    {
                        "delivered": relay.delivered,
                        "errors": relay.errors,
                        "positions": relay.positions,
                    }
                )
            )
        relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
