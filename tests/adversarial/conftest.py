"""The adversarial suite: every test here tries what a hostile or careless client, a damaged
file or a killed process could do to the venue, and asserts that it costs only the one who
did it. Run it alone with ``pytest -m adversarial``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from derivex.gateway import GatewayThread, KeyStore
from tests.gateway.conftest import Server, build_gateway

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.adversarial)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A gateway on loopback with in-memory keys, one per test module (a module may define
    its own ``server``)."""
    keys = KeyStore(None)
    thread = GatewayThread(lambda: build_gateway(keys))
    thread.start()
    yield Server(thread, keys, [])
    thread.stop()
