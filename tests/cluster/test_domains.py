"""Two domains as file journals (no NATS): transfers between them by hand, as the relay
makes them; the audit and the root of roots from the logs alone, as a function and as
``derivex cluster roots``; a tampered log changes the root of roots and a transfer
processed twice is caught by the audit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from derivex.cli import app
from derivex.cluster.domains import (
    JournalLog,
    audit,
    parse_domains,
    replay,
    root_of_roots,
    venue_root,
)
from derivex.cluster.inbox import check_request
from derivex.core.records import CommandKind, EventKind, command_array
from derivex.exchange import Exchange
from derivex.journal import Journal, full_root

K = CommandKind
IDS = {"alpha": 0, "beta": 1}


def _transfer(
    kind: int, account: int, domain: int, amount: int, number: int = 0, refund_of: int = 0
) -> np.ndarray:
    records = command_array(1)
    records["kind"] = kind
    records["account"] = account
    records["domain"] = domain
    records["amount_units"] = amount
    records["transfer_id"] = number
    records["refund_of"] = refund_of
    return records


def _relay(events: np.ndarray, source_id: int, destination: Exchange) -> np.ndarray:
    """What the relay does for one source's TRANSFER_SENT events."""
    out = []
    for event in events[events["kind"] == EventKind.TRANSFER_SENT]:
        out.append(
            destination.submit(
                _transfer(
                    K.TRANSFER_IN,
                    int(event["account"]),
                    source_id,
                    -int(event["cash_units"]),
                    int(event["order_id"]),
                )
            )
        )
    return np.concatenate(out) if out else events[:0]


def _venue(tmp_path: Path) -> tuple[dict[str, Path], dict[str, Exchange]]:
    directories = {name: tmp_path / name for name in IDS}
    venues = {
        name: Exchange(journal=Journal(directory, fsync="none"))
        for name, directory in directories.items()
    }
    alpha, beta = venues["alpha"], venues["beta"]
    for venue in venues.values():
        for _ in range(2):
            venue.deposit(venue.create_account(), 1_000)  # accounts 3 and 4
    alpha.deposit(alpha.create_account(), 500)  # account 5: alpha only
    # alpha -> beta: 300 from account 3 (credited), 200 from 5 (refused in beta, refunded)
    sent = alpha.submit(_transfer(K.TRANSFER_OUT, 3, 1, 300))
    sent = np.concatenate([sent, alpha.submit(_transfer(K.TRANSFER_OUT, 5, 1, 200))])
    received = _relay(sent, 0, beta)
    again = _relay(sent, 0, beta)  # a restarted relay sends both again: refused, no change
    assert set(again["reason"][again["kind"] == EventKind.REJECTED]) == {156}
    refused = received[received["kind"] == EventKind.TRANSFER_REFUSED]
    assert len(refused) == 1
    refusal, number = int(refused["price_ticks"][0]), int(refused["order_id"][0])
    assert (refusal, number) == (1, 2)  # the first refusal, of alpha's second transfer
    alpha.submit(_transfer(K.TRANSFER_REFUND, 5, 1, 200, refusal, number))
    # beta -> alpha: 50 from account 4, not yet relayed: in flight
    beta.submit(_transfer(K.TRANSFER_OUT, 4, 0, 50))
    for venue in venues.values():
        venue.journal.close()  # type: ignore[union-attr]
    return directories, venues


def test_audit_and_root_of_roots_from_the_logs(tmp_path: Path) -> None:
    directories, venues = _venue(tmp_path)
    logs = {name: JournalLog(directory) for name, directory in directories.items()}
    replays = {name: replay(log) for name, log in logs.items()}
    result = audit(replays, IDS)
    assert result.ok, result.problems
    assert result.in_flight == {("alpha", "beta"): 0, ("beta", "alpha"): 50}
    assert not result.settled
    assert result.balances + 50 == result.deposits_minus_withdrawals == 4_500
    # the root of roots at the logs' ends equals the one over the live engines' roots
    frames = {name: rep.frames for name, rep in replays.items()}
    live = {name: (frames[name], full_root(venues[name].engine.state)) for name in IDS}
    computed, entries = venue_root(logs, frames)
    assert entries == live and computed == root_of_roots(live)
    # at an earlier stream seq of one domain the root of roots differs
    earlier, _ = venue_root(logs, {**frames, "alpha": frames["alpha"] - 1})
    assert earlier != computed
    assert root_of_roots({}) != root_of_roots({"alpha": live["alpha"]})

    runner = CliRunner()
    specs = [f"{name}={directory}" for name, directory in directories.items()]
    output = runner.invoke(
        app, ["cluster", "roots", *specs, "--ids", "alpha=0,beta=1", "--account", "4"]
    )
    assert output.exit_code == 0, output.output
    # account 4: 1000 in alpha; in beta 1000 less the 50 sent to alpha, still in flight
    assert "account 4 in alpha: balance 1000, in flight 0, refund due 0" in output.output
    assert "account 4 in beta: balance 950, in flight 50, refund due 0" in output.output
    assert f"root of roots {computed.hex()}" in output.output
    assert "transfers and conservation hold" in output.output
    bad = runner.invoke(app, ["cluster", "roots", "alpha", "--ids", "alpha=0"])
    assert bad.exit_code == 2 and "give --urls" in bad.output


def test_a_transfer_credited_twice_breaks_the_audit(tmp_path: Path) -> None:
    directories, _ = _venue(tmp_path)
    replays = {name: replay(JournalLog(directory)) for name, directory in directories.items()}
    # a destination whose log credits a transfer alpha never sent (number 9)
    replays["beta"].apply(_transfer(K.TRANSFER_IN, 3, 0, 10, 9))
    result = audit(replays, IDS)
    assert any("processed transfer 9 from alpha" in problem for problem in result.problems)
    assert any("global conservation" in problem for problem in result.problems)


def test_bad_domain_maps_and_inbox_requests_are_refused_clearly() -> None:
    assert parse_domains("a=0, b=15") == {"a": 0, "b": 15}
    for bad in ("a", "a=x", "a=16", "a=0,b=0", "a=0,a=1"):
        with pytest.raises(ValueError):
            parse_domains(bad)
    transfer = _transfer(K.TRANSFER_IN, 3, 0, 10, 1)
    assert isinstance(check_request(transfer.tobytes(), 4), np.ndarray)
    assert "whole 64-byte" in str(check_request(b"x" * 65, 4))
    assert "more than 4" in str(check_request(transfer.tobytes() * 5, 4))
    order = command_array(1)
    order["kind"] = K.PLACE_ORDER
    assert "only TRANSFER_IN" in str(check_request(order.tobytes(), 4))


def test_a_transfer_to_no_domain_of_the_venue_is_refunded(tmp_path: Path) -> None:
    """A transfer to an unknown domain id (or to its own domain) stays in escrow until the
    relay refunds it; the audit counts it as pending until then."""
    from derivex.cluster.relay import Relay

    directories, _ = _venue(tmp_path)
    replays = {name: replay(JournalLog(directory)) for name, directory in directories.items()}
    alpha = replays["alpha"]
    alpha.apply(_transfer(K.TRANSFER_OUT, 4, 7, 20))  # no domain 7
    alpha.apply(_transfer(K.TRANSFER_OUT, 4, 0, 30))  # alpha itself
    result = audit(replays, IDS)
    assert result.ok, result.problems
    assert result.refunds_pending[("alpha", "alpha")] == 50
    relay = Relay.__new__(Relay)  # the relay's decision alone, without NATS
    relay.ids, relay.replays, relay.batch = IDS, replays, 16
    due = relay.pending()["alpha"]
    refunds = [row for row in due if row[0] == K.TRANSFER_REFUND]
    assert set(refunds) == {
        (K.TRANSFER_REFUND, 4, 30, 0, 1, 1),
        (K.TRANSFER_REFUND, 4, 20, 7, 1, 1),
    }
    assert (K.TRANSFER_IN, 4, 50, 1, 1, 0) in due  # beta's transfer in flight, due to alpha
    assert relay.pending()["beta"] == []  # what alpha sent beta is all processed
    for kind, account, amount, peer, number, original in refunds:
        alpha.apply(_transfer(kind, account, peer, amount, number, original))
    result = audit(replays, IDS)
    assert result.ok and result.refunds_pending[("alpha", "alpha")] == 0
    assert not [row for row in relay.pending()["alpha"] if row[0] == K.TRANSFER_REFUND]
