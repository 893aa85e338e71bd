"""Atomic intrinsics and wait strategies."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from numba import njit

from derivex.ipc import BACKOFF, SPIN, SPIN_YIELD, WaitStrategy
from derivex.ipc.atomics import (
    atomic_cas,
    atomic_load,
    atomic_store,
    compare_exchange,
    cpu_relax,
    fence_acquire,
    fence_release,
    fence_seq_cst,
    load_acquire,
    monotonic_ns,
    sched_yield,
    sleep_ns,
    store_release,
)
from derivex.ipc.wait import resolve, wait_step


def test_python_level_load_store_cas():
    a = np.zeros(4, np.int64)
    atomic_store(a, 2, 41)
    assert a[2] == 41
    assert atomic_load(a, 2) == 41
    assert atomic_cas(a, 2, 40, 7) == 41  # failed CAS returns the current value
    assert a[2] == 41
    assert atomic_cas(a, 2, 41, 7) == 41
    assert a[2] == 7
    u = np.zeros(2, np.uint64)
    atomic_store(u, 1, 2**64 - 1)
    assert atomic_load(u, 1) == 2**64 - 1


def test_python_level_validation():
    a = np.zeros(4, np.int64)
    with pytest.raises(IndexError):
        atomic_load(a, 4)
    with pytest.raises(TypeError):
        atomic_load(np.zeros(4, np.int32), 0)
    with pytest.raises(TypeError):
        atomic_load(np.zeros((2, 2), np.int64), 0)
    misaligned = np.zeros(5, np.int64).view(np.uint8)[4:36].view(np.int64)
    with pytest.raises(ValueError, match="aligned"):
        atomic_store(misaligned, 0, 1)
    ro = np.zeros(2, np.int64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        atomic_store(ro, 0, 1)


def test_llvm_ir_uses_acquire_release_and_fences():
    # not cached, so numba keeps the IR for inspection
    @njit
    def f(a):
        store_release(a, 0, load_acquire(a, 1) + 1)
        fence_acquire()
        fence_release()
        fence_seq_cst()
        cpu_relax()
        return compare_exchange(a, 2, 0, 5)

    a = np.zeros(3, np.int64)
    assert f(a) == 0 and a[0] == 1 and a[2] == 5
    ir = f.inspect_llvm(f.signatures[0])
    assert "load atomic i64" in ir and "acquire, align 8" in ir
    assert "store atomic i64" in ir and "release, align 8" in ir
    assert "cmpxchg" in ir and "acq_rel acquire" in ir
    for ordering in ("fence acquire", "fence release", "fence seq_cst"):
        assert ordering in ir


@njit(nogil=True)
def _spin_until(flag, target):
    n = 0
    while load_acquire(flag, 0) != target:
        n += 1
    return n


def test_spin_loop_is_not_hoisted():
    """A nogil spin on load_acquire must observe a store from another thread."""
    flag = np.zeros(1, np.int64)
    _spin_until(flag, 0)  # compile first
    out = []
    t = threading.Thread(target=lambda: out.append(_spin_until(flag, 1)))
    t.start()
    time.sleep(0.05)
    atomic_store(flag, 0, 1)
    t.join(5)
    assert not t.is_alive(), "spin loop never saw the release store"
    assert out and out[0] > 0


@njit
def _clock_and_sleep(ns):
    t0 = monotonic_ns()
    sleep_ns(ns)
    sleep_ns(-5)  # non-positive: no-op
    return t0, monotonic_ns(), sched_yield()


def test_clock_sleep_yield():
    _clock_and_sleep(0)  # compile first
    before = time.monotonic_ns()
    t0, t1, rc = _clock_and_sleep(20_000_000)
    after = time.monotonic_ns()
    assert before <= t0 <= t1 <= after  # same clock as time.monotonic_ns
    assert t1 - t0 >= 20_000_000
    assert rc == 0


def test_wait_strategy_validation_and_presets():
    assert resolve(None) is SPIN_YIELD
    assert resolve("spin") is SPIN and resolve("backoff") is BACKOFF
    with pytest.raises(ValueError):
        resolve("nope")
    with pytest.raises(ValueError):
        WaitStrategy(spins=-1)
    with pytest.raises(ValueError):
        WaitStrategy(min_sleep_ns=10, max_sleep_ns=5)
    p = SPIN_YIELD.params()
    assert p.dtype == np.int64 and list(p) == [1000, 100, 10_000, 1_000_000]
    assert not p.flags.writeable


@njit
def _wait_until_deadline(params, deadline):
    i = 0
    while wait_step(params, i, deadline):
        i += 1
    return i


@pytest.mark.parametrize("strategy", [SPIN, SPIN_YIELD, BACKOFF])
def test_wait_step_honours_deadline(strategy):
    _wait_until_deadline(strategy.params(), 0)  # compile outside the timed region
    t0 = time.monotonic_ns()
    iters = _wait_until_deadline(strategy.params(), t0 + 30_000_000)
    elapsed = time.monotonic_ns() - t0
    assert 30_000_000 <= elapsed < 500_000_000
    assert iters > 0


def test_backoff_sleeps_grow_exponentially():
    # 1 us doubling to 1 ms: 20 steps sleep >= 1+2+...+512 us + 10 * 1 ms ~ 11 ms
    params = WaitStrategy(spins=0, yields=0, min_sleep_ns=1_000, max_sleep_ns=1_000_000).params()
    t0 = time.monotonic_ns()
    for i in range(20):
        wait_step(params, i, -1)
    assert time.monotonic_ns() - t0 >= 11_000_000
