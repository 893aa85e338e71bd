"""Named segments: header validation, stale detection, cleanup."""

from __future__ import annotations

import os
import signal
from multiprocessing import resource_tracker
from pathlib import Path

import ipc_workers as w
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.extra import numpy as nps

from derivex import ipc
from derivex.ipc import segment as seg_mod
from derivex.ipc.segment import (
    H_CAPACITY,
    H_DESCR_LEN,
    H_DTYPE_HASH,
    H_MAGIC,
    H_VERSION,
    LayoutError,
    _shm_open,
)

SHM = Path("/dev/shm")


def test_create_attach_roundtrip(shm_name):
    with ipc.create(shm_name, w.REC, 16) as ring:
        assert ring.owner and (SHM / shm_name).exists()
        other = ipc.attach(shm_name)  # dtype comes from the header
        assert not other.owner
        assert other.dtype == w.REC and other.capacity == 16 and other.record_size == 64
        ring.push(w.make_records(0, 5))
        assert w.check(other.pop(10), 0) is None
        other.close()
        assert other.closed
    assert not (SHM / shm_name).exists()  # the owner's with-block unlinked it


def test_counter_and_data_layout(shm_name):
    with ipc.create(shm_name, w.REC, 16) as ring:
        base = ring._seg._mm
        addr = np.frombuffer(base, np.uint8).ctypes.data
        head, tail = ring.ctrl[0:1].ctypes.data, ring.ctrl[16:17].ctypes.data
        assert (head - addr) % 64 == 0 and (tail - addr) % 64 == 0
        assert tail - head >= 64  # separate cache lines
        assert (ring.records.ctypes.data - addr) % 4096 == 0


def test_attach_validation_errors(shm_name, shm_names):
    with pytest.raises(FileNotFoundError):
        ipc.attach(shm_name)
    ring = ipc.create(shm_name, w.REC, 16)
    with pytest.raises(FileExistsError):
        ipc.create(shm_name, w.REC, 16)
    with pytest.raises(LayoutError, match="dtype"):
        ipc.attach(shm_name, np.dtype([("seq", "<i8"), ("x", "<f8", (7,))]))
    with pytest.raises(LayoutError, match="spsc ring, expected broadcast"):
        ipc.BroadcastRing.attach(shm_name)
    h = ring._seg.header

    def tampered(index, value, match):
        old = int(h[index])
        h[index] = value
        try:
            with pytest.raises(LayoutError, match=match):
                ipc.attach(shm_name, timeout=0.05)
        finally:
            h[index] = old

    tampered(H_VERSION, 99, "version 99")
    tampered(H_MAGIC, 0x1234, "bad magic")
    tampered(H_CAPACITY, 24, "power of two")
    tampered(H_DTYPE_HASH, 12345, "hash")
    tampered(H_DESCR_LEN, 10**6, "corrupt dtype")
    ipc.attach(shm_name).close()  # untampered again: attaches fine
    ring.close()

    # a segment that is too small, or never got a header
    small = shm_names()
    _shm_open(small, create=True, size=100).close()
    with pytest.raises(LayoutError, match="too small"):
        ipc.attach(small, timeout=0.05)
    blank = shm_names()
    _shm_open(blank, create=True, size=8192).close()
    with pytest.raises(LayoutError, match="no ring header"):
        ipc.attach(blank, timeout=0.05)


def test_create_argument_validation(shm_name):
    for cap in (0, 1, 3, 100):
        with pytest.raises(ValueError, match="power of two"):
            ipc.create(shm_name, w.REC, cap)
    with pytest.raises(TypeError, match="objects"):
        ipc.create(shm_name, np.dtype([("a", "O")]), 8)
    for bad in ("", "a/b", "x" * 201, "sp ace"):
        with pytest.raises(ValueError, match="invalid segment name"):
            ipc.create(bad, w.REC, 8)
    assert not (SHM / shm_name).exists()  # failed creates leave nothing behind


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dtype=nps.array_dtypes(subtype_strategy=nps.scalar_dtypes(), min_size=1, max_size=6))
def test_dtype_roundtrip_through_header(shm_names, dtype):
    name = shm_names()
    with ipc.create(name, dtype, 4) as ring:
        other = ipc.attach(name)
        assert other.dtype == dtype and other.record_size == dtype.itemsize
        other.close()
        ipc.attach(name, dtype).close()
        ring.close()


def test_aligned_dtype_with_padding(shm_name):
    dt = np.dtype([("flag", "u1"), ("x", "<f8"), ("n", "<i4")], align=True)
    with ipc.create(shm_name, dt, 8) as ring:
        other = ipc.attach(shm_name, dt)
        assert other.dtype.itemsize == dt.itemsize == 24
        assert other.dtype.fields["x"][1] == 8
        rec = np.zeros(1, dt)
        rec["flag"], rec["x"], rec["n"] = 7, 2.5, -3
        ring.push(rec)
        got = other.pop(1)
        assert got["flag"][0] == 7 and got["x"][0] == 2.5 and got["n"][0] == -3
        other.close()


def test_not_registered_with_resource_tracker(shm_name, monkeypatch):
    calls = []
    monkeypatch.setattr(resource_tracker, "register", lambda *a: calls.append(a))
    monkeypatch.setattr(resource_tracker, "unregister", lambda *a: calls.append(a))
    with ipc.create(shm_name, w.REC, 8):
        ipc.attach(shm_name).close()
    assert calls == []


def test_attacher_exit_does_not_unlink(shm_name):
    """A spawned attacher that exits must leave the segment alone (resource_tracker bug)."""
    ring = ipc.create(shm_name, w.REC, 8)
    for i in range(2):  # one after the other: an SPSC ring has a single producer
        rep = w.run([(w.attach_and_exit, (f"a{i}", shm_name), {})])[f"a{i}"]
        assert rep["ok"], rep.get("error")
        assert rep["stale"] is False  # creator (this process) is alive
        assert rep["pid"] != os.getpid()
    assert (SHM / shm_name).exists()
    again = ipc.attach(shm_name)
    got = again.pop(10)
    assert len(got) == 6  # each attacher pushed 3 records
    assert w.check(got[:3], 0) is None and w.check(got[3:], 0) is None
    again.close()
    ring.close()
    assert ring.unlink() is True
    assert not (SHM / shm_name).exists()
    assert ring.unlink() is False


def test_stale_segment_after_creator_crash(shm_name):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=w.creator, args=(q, shm_name, 8), daemon=True)
    p.start()
    try:
        rep = q.get(timeout=15)
        assert rep["pid"] == p.pid != os.getpid()
        assert ipc.is_stale(shm_name) is False
        live = ipc.attach(shm_name)
        assert live.is_stale() is False
        assert ipc.remove_stale(shm_name) is False  # live creator: not removed
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
    assert p.exitcode == -signal.SIGKILL
    assert (SHM / shm_name).exists()  # the crash leaked it ...
    assert live.is_stale() is True  # ... and both handles and names can tell
    assert ipc.is_stale(shm_name) is True
    with pytest.raises(FileExistsError):
        ipc.create(shm_name, w.REC, 8)
    fresh = ipc.create(shm_name, w.REC, 8, replace_stale=True)  # replaces the leftover
    assert fresh.is_stale() is False and live.is_stale() is True  # old mapping still valid
    live.close()
    fresh.close()
    fresh.unlink()
    assert not (SHM / shm_name).exists()


def test_remove_stale_and_pid_reuse_guard(shm_name, monkeypatch):
    ring = ipc.create(shm_name, w.REC, 8)
    h = ring._seg.header
    assert ipc.remove_stale("dxtest_does_not_exist") is False
    start = int(h[seg_mod.H_CREATOR_START])
    assert start > 0
    h[seg_mod.H_CREATOR_START] = start + 1  # same pid, different process start time
    assert ipc.is_stale(shm_name) is True
    h[seg_mod.H_CREATOR_START] = start
    assert ipc.is_stale(shm_name) is False
    h[seg_mod.H_CREATOR_PID] = 2**31 - 7  # no such pid
    assert ipc.remove_stale(shm_name) is True
    assert not (SHM / shm_name).exists()
    ring.close()


def test_close_with_outstanding_views(shm_name):
    with ipc.create(shm_name, w.REC, 8) as ring:
        ring.push(w.make_records(0, 2))
        view = ring.peek(2)
        ring.close()
        ring.close()  # idempotent
        assert ring.closed
        assert w.check(view, 0) is None  # still mapped while the view lives
        with pytest.raises(AttributeError):
            ring.push(w.make_records(0, 1))
