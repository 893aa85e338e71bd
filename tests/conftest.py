"""Shared fixtures: a manual clock and a small venue."""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path

import pytest

from derivex.core.config import EngineConfig
from derivex.exchange import Exchange
from tests import scheduling

START_NS = 1_798_761_600_000_000_000


class ManualClock:
    """The sequencer's clock under test control: advances only when told to."""

    def __init__(self, start_ns: int = START_NS) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, milliseconds: int) -> None:
        self.now_ns += milliseconds * 1_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def venue(clock: ManualClock):
    """Exchange with a BTC perpetual (tick 50, maker -1bp, taker 5bp), a BTC call (tick 5,
    lot step 10, maker 2bp, taker 3bp) and three funded accounts."""
    ex = Exchange(EngineConfig(risk_checks=False), clock=clock)
    perp = ex.add_perpetual("BTC", tick_size_ticks=50, maker_fee_ppm=-100, taker_fee_ppm=500)
    call = ex.add_option(
        "BTC",
        START_NS + 8 * 3_600_000_000_000,
        10_000_000,
        "call",
        tick_size_ticks=5,
        min_trade_lots=10,
        maker_fee_ppm=200,
        taker_fee_ppm=300,
    )
    accounts = [ex.create_account() for _ in range(3)]
    for account in accounts:
        ex.deposit(account, 10**12)
    return ex, perp, call, accounts


# ---- test tiers ---------------------------------------------------------------------------
# ``integration``: the test starts a process or a server (most of the suite's time);
# ``property``: a hypothesis test. Marked here, from what each test and its fixtures do, so
# that a new test is placed in its tier without a decorator. Quick inner loop:
# ``pytest -m "not integration"``; CI runs everything (scripts/test.sh).

#: what starting a process or a server looks like in a test, a fixture or a test helper
_STARTERS = re.compile(
    r"subprocess\.|Popen\(|\.Process\(|get_context\(|sys\.executable|GatewayThread\(|Served\("
    r"|\bRuntime\(|\bserve_process\(|\bstart_gateway\(|\bLocalCluster\("
)
#: modules whose tests start processes through helpers the scan above does not see
_INTEGRATION_MODULES = frozenset(
    {
        "tests/adversarial/test_load_limits.py",
        "tests/adversarial/test_load_overload.py",
        "tests/adversarial/test_workers_consistency.py",
        "tests/gateway/test_serve_workers.py",
        "tests/ipc/test_ipc_multiprocess.py",
        "tests/journal/test_crash.py",
        "tests/runtime/test_runtime.py",
    }
)
_ROOT = Path(__file__).resolve().parents[1]
_TESTS = _ROOT / "tests"


def _in_tests(obj: object) -> bool:
    path = getattr(inspect.getmodule(obj), "__file__", None)
    return path is not None and _TESTS in Path(path).resolve().parents


def _helpers(function: object) -> list[object]:
    """Functions and classes of the test tree that ``function`` names (directly, or as an
    attribute of a test helper module it names)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return []
    scope = getattr(function, "__globals__", {})
    found = []
    for name in code.co_names:
        obj = scope.get(name)
        if inspect.ismodule(obj) and _in_tests(obj):
            found += [getattr(obj, other) for other in code.co_names if hasattr(obj, other)]
        elif obj is not None and (inspect.isfunction(obj) or inspect.isclass(obj)):
            found.append(obj)
    return [obj for obj in found if obj is not function and _in_tests(obj)]


@functools.cache
def _starts_something(function: object, depth: int = 3) -> bool:
    """Whether ``function`` (a test, fixture or helper) or a test helper it calls, up to
    ``depth`` calls deep, starts a process or a server (by its source text)."""
    try:
        source = inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    if _STARTERS.search(source) is not None:
        return True
    inner = inspect.unwrap(function) if callable(function) else function
    return depth > 0 and any(_starts_something(h, depth - 1) for h in _helpers(inner))


def _is_integration(item: pytest.Item) -> bool:
    module = Path(str(item.fspath)).resolve().relative_to(_ROOT).as_posix()
    if module in _INTEGRATION_MODULES:
        return True
    function = getattr(item, "function", None)
    if function is not None and _starts_something(function):
        return True
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    return any(_starts_something(d.func) for defs in definitions for d in defs)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_integration(item):
            item.add_marker(pytest.mark.integration)
        if getattr(getattr(item, "function", None), "is_hypothesis_test", False):
            item.add_marker(pytest.mark.property)
    # the longest modules first (tests/scheduling.py): xdist hands them out in this order
    scheduling.longest_first(items, scheduling.load_weights())


def pytest_configure(config: pytest.Config) -> None:
    recorder = scheduling.recorder(config)
    if recorder is not None:
        config.pluginmanager.register(recorder, "derivex-durations")
