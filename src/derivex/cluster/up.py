"""``derivex cluster up``: a whole cluster-mode venue on one machine, for trying it out.

A 3-node NATS cluster on loopback (``LocalCluster``: file storage, ``sync_interval:
always``) and, per domain, two ``derivex serve --cluster`` nodes over one data directory
(``<directory>/<domain>``): the first started as the leader, the second as the standby.
A node that exits (killed, or fenced: exit code 3) is started again as a standby, so
killing the leader shows a takeover and the old leader rejoining. The nodes' banners (the
URL and the demo key, printed by whichever node leads) are passed through to our stdout,
prefixed with the node's name. Stops on SIGINT/SIGTERM or after ``lifetime_s``: the nodes
first (SIGTERM), then the servers.

Each domain is a venue of its own (its own stream, lease, engine, URL); routing one
gateway's instruments to several domains is not built (docs/cluster.md). With two or more
domains, the transfer relay (``python -m derivex.cluster.relay``) runs too, the domains
numbered in the order given, and is started again if it exits.
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

from derivex.cluster.servers import LocalCluster

__all__ = ["RELAY", "LocalVenue"]

RELAY = "relay"  # the transfer relay's node name (a domain's nodes are <domain>-<n>)


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
        ]  # fmt: skip

    def start_node(self, domain: str, name: str, role: str) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        command = self.relay_command() if name == RELAY else self.node_command(domain, name, role)
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
        self.cluster.start()
        self.cluster.check_durability()
        self.echo("nats cluster: " + ",".join(self.cluster.urls))
        for domain in self.domains:
            self.start_node(domain, f"{domain}-1", "leader")
            self.start_node(domain, f"{domain}-2", "standby")
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
