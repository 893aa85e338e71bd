"""The order the suite's test modules start in: the longest first.

``scripts/test.sh`` runs the suite on pytest-xdist with ``--dist loadfile`` (one module per
worker process) and ``--no-loadscope-reorder``, so the workers take the modules in
collection order. xdist's own order (most tests first) put the slowest modules, which hold
one to three tests that each start servers, at the end, where one of them kept a worker
busy for a minute while the other had nothing left. Starting the longest first (the LPT
rule) leaves short modules for the end, and the workers finish close together.

The weights are the seconds each module took in a recorded whole-suite run,
``tests/durations.json``; a module it does not list (new since) weighs what its tests
would at the listed median per test, integration tests counted ten times. Record again
with ``DERIVEX_RECORD_DURATIONS=tests/durations.json`` set for a whole-suite run (the
controller sums each module's setup, call and teardown times and writes the file at the
end). Cost: one sort of the collected items; no test's outcome depends on the order.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parent / "durations.json"
RECORD_ENV = "DERIVEX_RECORD_DURATIONS"


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def load_weights(path: Path = DURATIONS) -> dict[str, float]:
    """Recorded seconds per module (``{}`` if the file is missing or unreadable)."""
    try:
        weights = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in weights.items()} if isinstance(weights, dict) else {}


def longest_first(items: list[pytest.Item], weights: dict[str, float]) -> None:
    """Reorder ``items`` in place: whole modules, heaviest first; the items of a module
    keep their order (module-scoped fixtures are set up once)."""
    tests: dict[str, int] = defaultdict(int)
    integration: dict[str, int] = defaultdict(int)
    for item in items:
        module = module_of(item.nodeid)
        tests[module] += 1
        integration[module] += item.get_closest_marker("integration") is not None
    known = [weights[m] / tests[m] for m in tests if m in weights and tests[m]]
    per_test = statistics.median(known) if known else 1.0

    def weight(module: str) -> float:
        if module in weights:
            return weights[module]
        return per_test * (tests[module] + 9 * integration[module])

    first_seen = {m: n for n, m in enumerate(dict.fromkeys(module_of(i.nodeid) for i in items))}
    # a stable sort: the items of a module keep their order
    items.sort(
        key=lambda item: (-weight(module_of(item.nodeid)), first_seen[module_of(item.nodeid)])
    )


class DurationRecorder:
    """Sums each module's reported setup, call and teardown seconds (on the xdist
    controller these are the workers' reports) and writes them, rounded, at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[module_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes
            return
        ordered = dict(sorted(self.seconds.items(), key=lambda kv: (-kv[1], kv[0])))
        text = json.dumps({k: round(v, 1) for k, v in ordered.items()}, indent=1)
        self.path.write_text(text + "\n")


def recorder(config: pytest.Config) -> DurationRecorder | None:
    """The recorder if ``DERIVEX_RECORD_DURATIONS`` names a file, else None."""
    wanted = os.environ.get(RECORD_ENV)
    if not wanted or hasattr(config, "workerinput"):
        return None
    return DurationRecorder(Path(wanted))
