"""SPSC ring semantics in one process (deterministic) plus a model-based check."""

from __future__ import annotations

import threading
import time
from collections import deque

import ipc_workers as w
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derivex import ipc
from derivex.ipc import BACKOFF, SPIN, SPIN_YIELD, RingTimeout


@pytest.fixture
def pair(shm_name):
    prod = ipc.create(shm_name, w.REC, 8)
    cons = ipc.attach(shm_name, w.REC)
    yield prod, cons
    cons.close()
    prod.close()


def test_push_pop_in_order_across_wrap(pair):
    prod, cons = pair
    seq = 0
    for size in (3, 5, 8, 1, 7, 8):  # crosses the 8-slot boundary repeatedly
        assert prod.push(w.make_records(seq, size)) == size
        got = cons.pop(100)
        assert len(got) == size and w.check(got, seq) is None
        seq += size
    assert len(prod) == 0


def test_claim_is_contiguous_and_zero_copy(pair):
    prod, cons = pair
    prod.push(w.make_records(0, 6))
    cons.pop(6)
    view = prod.claim(5)  # head at slot 6: only 2 contiguous slots before the wrap
    assert len(view) == 2 and view.flags.writeable
    assert np.shares_memory(view, prod.records)
    w.fill(view, 6)
    prod.publish(2)
    view = prod.claim(5)
    assert len(view) == 5
    w.fill(view, 8)
    prod.publish(3)  # partial publish: only 3 of the 5 become visible
    peeked = cons.peek(10)
    assert len(peeked) == 2 and not peeked.flags.writeable
    assert np.shares_memory(peeked, cons.records)
    assert w.check(peeked, 6) is None
    cons.release(1)
    peeked = cons.peek(10)
    assert w.check(peeked, 7) is None and len(peeked) == 1
    cons.release(1)
    assert w.check(cons.pop(10), 8) is None
    assert len(prod) == 0


def test_publish_release_bounds(pair):
    prod, cons = pair
    with pytest.raises(ValueError):
        prod.publish(1)  # nothing claimed
    prod.claim(2)
    with pytest.raises(ValueError):
        prod.publish(3)
    prod.publish(2)
    with pytest.raises(ValueError):
        prod.publish(1)  # claim was consumed by the publish
    cons.peek(5)
    with pytest.raises(ValueError):
        cons.release(3)
    with pytest.raises(ValueError):
        cons.release(-1)
    cons.release(2)
    with pytest.raises(TypeError):
        prod.push(np.zeros(2, np.float64))
    with pytest.raises(ValueError, match="timeout"):
        prod.push(w.make_records(0, 1), timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        cons.pop(1, timeout=-1)


def test_full_and_empty(pair):
    prod, cons = pair
    assert len(cons.try_peek(4)) == 0
    assert prod.push(w.make_records(0, 8)) == 8
    assert len(prod.try_claim(1)) == 0
    t0 = time.monotonic()
    with pytest.raises(RingTimeout) as info:
        prod.push(w.make_records(8, 3), timeout=0.1)
    assert info.value.count == 0
    assert 0.1 <= time.monotonic() - t0 < 2.0
    with pytest.raises(RingTimeout):
        prod.claim(1, timeout=0.05)
    cons.pop(2)
    with pytest.raises(RingTimeout) as info:
        prod.push(w.make_records(8, 3), timeout=0.05)
    assert info.value.count == 2  # partial progress is reported
    got = cons.pop(100)
    assert w.check(got, 2) is None and len(got) == 8
    t0 = time.monotonic()
    with pytest.raises(RingTimeout):
        cons.pop(1, timeout=0.1)
    with pytest.raises(RingTimeout):
        cons.peek(1, timeout=0.0)
    assert 0.1 <= time.monotonic() - t0 < 2.0


def test_finish_gives_eof_after_drain(pair):
    prod, cons = pair
    prod.push(w.make_records(0, 3))
    prod.finish()
    assert cons.finished
    assert w.check(cons.pop(2), 0) is None
    assert w.check(cons.peek(5), 2) is None
    cons.release(1)
    assert len(cons.peek(5, timeout=1)) == 0  # EOF, not a timeout
    assert len(cons.pop(5, timeout=1)) == 0
    out = np.empty(4, w.REC)
    assert cons.pop_into(out, timeout=1) == 0


def test_pop_into_and_scalar_dtype(shm_name):
    with ipc.create(shm_name, np.float64, 4) as ring:
        ring.push(np.arange(3.0))
        out = np.zeros(8)
        assert ring.pop_into(out) == 3
        assert list(out[:3]) == [0.0, 1.0, 2.0]
        with pytest.raises(TypeError):
            ring.pop_into(np.zeros(8, np.float32))


@pytest.mark.parametrize("strategy", [SPIN, SPIN_YIELD, BACKOFF, "backoff"])
def test_blocking_across_threads(shm_name, strategy):
    """Blocking peek/claim wake up when another thread (GIL released) makes progress."""
    n = 5000
    prod = ipc.create(shm_name, w.REC, 16, wait=strategy)
    cons = ipc.attach(shm_name, wait=strategy)
    errors = []

    def produce():
        try:
            for i in range(0, n, 50):
                prod.push(w.make_records(i, 50), timeout=5)
            prod.finish()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=produce)
    t.start()
    seq = 0
    while True:
        got = cons.pop(7, timeout=5)
        if len(got) == 0:
            break
        assert w.check(got, seq) is None
        seq += len(got)
    t.join(5)
    assert not errors and seq == n
    cons.close()
    prod.close()


def test_blocking_peek_spans_python_slices(shm_name):
    """timeout=None waits in 100 ms njit slices; data arriving after 0.35 s is seen."""
    prod = ipc.create(shm_name, w.REC, 4)
    cons = ipc.attach(shm_name)
    timer = threading.Timer(0.35, lambda: prod.push(w.make_records(0, 1)))
    t0 = time.monotonic()
    timer.start()
    got = cons.peek(1)
    assert time.monotonic() - t0 >= 0.3
    assert w.check(got, 0) is None
    timer.join()
    cons.close()
    prod.close()


ops = st.lists(
    st.tuples(
        st.sampled_from(["push", "pop", "claim", "peek"]), st.integers(0, 20), st.integers(0, 20)
    ),
    max_size=60,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cap_log=st.integers(1, 4), ops=ops)
def test_model_based(shm_names, cap_log, ops):
    """Random interleavings of all operations match a deque model."""
    cap = 1 << cap_log
    name = shm_names()
    prod = ipc.create(name, w.REC, cap)
    cons = ipc.attach(name)
    model: deque[int] = deque()
    next_seq = 0
    for op, a, b in ops:
        if op == "push" and len(model) + a <= cap:
            assert prod.push(w.make_records(next_seq, a), timeout=0) == a
            model.extend(range(next_seq, next_seq + a))
            next_seq += a
        elif op == "claim":
            view = prod.try_claim(a)
            slot = next_seq % cap
            assert len(view) == min(a, cap - len(model), cap - slot)
            k = min(b, len(view))
            w.fill(view[:k], next_seq)
            prod.publish(k)
            model.extend(range(next_seq, next_seq + k))
            next_seq += k
        elif op == "peek":
            view = cons.try_peek(a)
            slot = model[0] % cap if model else 0
            assert len(view) == min(a, len(model), cap - slot)
            k = min(b, len(view))
            if len(view):
                assert w.check(view, model[0]) is None
            cons.release(k)
            for _ in range(k):
                model.popleft()
        elif op == "pop" and model and a:
            got = cons.pop(a, timeout=0)
            assert len(got) == min(a, len(model))
            assert w.check(got, model[0]) is None
            for _ in range(len(got)):
                model.popleft()
        assert len(prod) == len(model)
    cons.close()
    prod.close()


@pytest.mark.parametrize(
    "dtype",
    [
        [("a", "<i8"), ("t", "<M8[ns]")],
        [("u", "<U3"), ("b", "?")],
        [("c", "<c16"), ("n", [("x", "<i2"), ("y", "<f4", (2,))])],
        {"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [4, 0], "itemsize": 12},
        [("v", "V8"), ("i", "<i4")],  # numba cannot type this: uint8 fallback path
        [("x", ">f8")],  # big-endian: fallback path as well
        "<f8",
    ],
)
def test_push_pop_bytes_roundtrip_for_dtypes(shm_name, dtype):
    dtype = np.dtype(dtype)
    data = np.frombuffer(np.random.default_rng(7).bytes(dtype.itemsize * 11), dtype)
    with ipc.create(shm_name, dtype, 8) as prod:
        cons = ipc.attach(shm_name)  # dtype rebuilt from the header: equal, not identical
        # compare raw bytes chunk by chunk (np.concatenate may drop padding bytes
        # or normalise non-native byte order)
        for chunk in (data[:5], data[5:6], data[6:]):
            assert prod.push(chunk) == len(chunk)
            assert cons.pop(8).tobytes() == chunk.tobytes()
        out = np.empty(3, cons.dtype)
        prod.push(data[:2])
        assert cons.pop_into(out) == 2 and out[:2].tobytes() == data[:2].tobytes()
        cons.close()
