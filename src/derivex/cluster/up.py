"""``derivex cluster up``: a whole cluster-mode venue on one machine, for trying it out.

A 3-node NATS cluster on loopback (``LocalCluster``: file storage, ``sync_interval:
always``) and, per domain, two ``derivex serve --cluster`` nodes over one data directory
(``<directory>/<domain>``): the first started as the leader, the second as the standby.
A node that exits (killed, or fenced: exit code 3) is started again as a standby, so
killing the leader shows a takeover and the old leader rejoining. The nodes' banners (the
URL and the demo key, printed by whichever node leads) are passed through to our stdout,
prefixed with the node's name. Stops on SIGINT/SIGTERM or after ``lifetime_s``: the nodes
first (SIGTERM), then the servers.

Each domain is a venue of its own (its own stream, lease, engine, URL). The keys are the
venue's: one ``keys.json`` (a demo key of the account every domain creates first) is
written into every domain's data directory and the router's, so a key acts on the same
account in every domain. The router (``python -m derivex.cluster.router``, one API over
all domains, following each domain's leader) always runs and prints its URL; with two or
more domains the transfer relay (``python -m derivex.cluster.relay``) runs too, the
domains numbered in the order given. Both sign the inbox requests with ``inbox.key``
(written into each domain's data directory too). Each is started again if it exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from derivex.cluster.inbox import INBOX_KEY_FILE, new_inbox_key
from derivex.cluster.servers import LocalCluster

__all__ = ["RELAY", "ROUTER", "LocalVenue", "share_secrets"]

RELAY = "relay"  # the transfer relay's node name (a domain's nodes are <domain>-<n>)
ROUTER = "router"  # the router's node name


class LocalVenue:
    """The NATS cluster and the serve nodes of ``domains`` under ``directory``; ``echo``
    receives every line the nodes print (prefixed). Not thread-safe; ``run`` blocks."""

    def __init__(
        self,
        directory: Path,
        domains: list[str],
        *,
        lifetime_s: float = 3600.0,
        echo: Callable[[str], None] = print,
        lease_ttl_s: int = 2,
    ) -> None:
        if not domains:
            raise ValueError("at least one domain")
        self.directory = Path(directory)
        self.domains = domains
        self.lifetime_s = lifetime_s
        self.echo = echo
        self.lease_ttl_s = lease_ttl_s
        self.cluster = LocalCluster(
            self.directory / "nats", nodes=3, lifetime_s=int(lifetime_s) + 60
        )
        self.nodes: dict[str, subprocess.Popen[str]] = {}
        self.restarts = 0

    def node_command(self, domain: str, name: str, role: str) -> list[str]:
        return [
            sys.executable, "-m", "derivex.cli", "serve",
            "--cluster", ",".join(self.cluster.urls), "--domain", domain, "--role", role,
            "--node", name, "--data-dir", str(self.directory / domain), "--port", "0",
            "--lease-ttl", str(self.lease_ttl_s), "--log-format", "console",
        ]  # fmt: skip

    def relay_command(self) -> list[str]:
        domains = ",".join(f"{domain}={ident}" for ident, domain in enumerate(self.domains))
        return [
            sys.executable, "-m", "derivex.cluster.relay",
            "--urls", ",".join(self.cluster.urls), "--domains", domains,
            "--lifetime", str(self.lifetime_s + 60),
            "--inbox-key", str(self.directory / INBOX_KEY_FILE),
        ]  # fmt: skip

    def router_command(self) -> list[str]:
        return [
            sys.executable, "-m", "derivex.cluster.router",
            "--urls", ",".join(self.cluster.urls), "--domains", ",".join(self.domains),
            "--directory", str(self.directory / ROUTER), "--lifetime", str(self.lifetime_s + 60),
        ]  # fmt: skip

    def start_node(self, domain: str, name: str, role: str) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        if name in (RELAY, ROUTER):
            command = self.relay_command() if name == RELAY else self.router_command()
        else:
            command = self.node_command(domain, name, role)
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        log.close()
        self.nodes[name] = process
        assert process.stdout is not None
        threading.Thread(target=self._forward, args=(name, process.stdout), daemon=True).start()

    def _forward(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self.echo(f"[{name}] {line.rstrip()}")

    def start(self) -> None:
        """Start the servers, then the leader and the standby of every domain."""
        self.directory.mkdir(parents=True, exist_ok=True)
        share_secrets(self.directory, self.domains)
        self.cluster.start()
        self.cluster.check_durability()
        self.echo("nats cluster: " + ",".join(self.cluster.urls))
        for domain in self.domains:
            self.start_node(domain, f"{domain}-1", "leader")
            self.start_node(domain, f"{domain}-2", "standby")
        self.start_node("", ROUTER, "")
        if len(self.domains) > 1:
            self.start_node("", RELAY, "")

    def supervise(self) -> None:
        """Start again, as a standby, every node that exited. Cost: a poll per node."""
        for name, process in list(self.nodes.items()):
            code = process.poll()
            if code is not None:
                self.echo(f"[{name}] exited with code {code}: starting it again")
                self.restarts += 1
                self.start_node(name.rsplit("-", 1)[0], name, "standby")

    def run(self, stopping: Callable[[], bool]) -> None:
        """Start, supervise until ``stopping()`` or the lifetime, then stop."""
        deadline = time.monotonic() + self.lifetime_s
        try:
            self.start()
            while not stopping() and time.monotonic() < deadline:
                self.supervise()
                time.sleep(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM every node (SIGKILL after 20 s), then stop the servers."""
        for process in self.nodes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.nodes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.cluster.stop()


def share_secrets(directory: Path, domains: list[str]) -> None:
    """Write the venue's ``keys.json`` (made once, in ``directory/router``: a demo key of
    the first account a new domain creates) and ``inbox.key`` (made once, in
    ``directory``) into every domain's data directory that has none yet. Cost: one
    engine's allocation the first time (the first account id), a few small files."""
    from derivex.gateway.keys import KEYS_FILE, KeyStore

    router = directory / ROUTER
    router.mkdir(parents=True, exist_ok=True)
    first = directory / domains[0] / KEYS_FILE
    if not (router / KEYS_FILE).exists() and first.exists():
        # a venue from before the router: its first domain's keys are the venue's (the
        # other domains' own keys then differ: copy these over them by hand)
        (router / KEYS_FILE).write_bytes(first.read_bytes())
        (router / KEYS_FILE).chmod(0o600)
    if not (router / KEYS_FILE).exists():
        from derivex.core import query
        from derivex.core.engine import Engine

        first_account = query.account_count(Engine().state)  # ids below are the system's
        KeyStore(router).create(first_account, ("read", "trade"), name="demo")
    if not (directory / INBOX_KEY_FILE).exists():
        new_inbox_key(directory / INBOX_KEY_FILE)
    for domain in domains:
        data = directory / domain
        data.mkdir(parents=True, exist_ok=True)
        for source, name in ((router, KEYS_FILE), (directory, INBOX_KEY_FILE)):
            if not (data / name).exists():
                (data / name).write_bytes((source / name).read_bytes())
                (data / name).chmod(0o600)
