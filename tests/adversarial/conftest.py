"""The adversarial suite: every test here tries what a hostile or careless client, a damaged
file or a killed process could do to the venue, and asserts that it costs only the one who
did it. Run it alone with ``pytest -m adversarial``."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.adversarial)
