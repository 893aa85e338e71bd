"""Child-process workers for the multi-process ring tests (spawn-safe, module level).

Every record carries its sequence number plus fields derived from it, so a
consumer can tell a missing, duplicated, reordered or torn record.  Producers
and consumers pause at seeded random points.  Each worker reports one dict
through a queue: ``{"tag", "ok", "count", "error", ...}``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
import traceback

import numpy as np
from numba import njit

from derivex.ipc import BroadcastConsumer, BroadcastRing, ConsumerDropped, SpscRing
from derivex.ipc.atomics import sleep_ns
from derivex.ipc.broadcast import DROPPED_RC, bcast_claim, bcast_peek, bcast_publish, bcast_release
from derivex.ipc.ring import spsc_claim, spsc_peek, spsc_publish, spsc_release

REC = np.dtype([("seq", "<i8"), ("a", "<i8", (6,)), ("chk", "<i8")])
assert REC.itemsize == 64
MUL = 1_000_003
XOR = 0x5DEECE66D
OP_TIMEOUT = 10.0  # seconds; no single ring operation in the tests needs this long


def make_records(start: int, n: int) -> np.ndarray:
    out = np.empty(n, REC)
    fill(out, start)
    return out


def fill(view: np.ndarray, start: int) -> None:
    seq = np.arange(start, start + len(view), dtype=np.int64)
    view["seq"] = seq
    view["a"] = seq[:, None] * MUL + np.arange(6)
    view["chk"] = seq ^ XOR


def check(recs: np.ndarray, start: int) -> str | None:
    """None if ``recs`` are exactly the records start, start+1, ...; else a description."""
    seq = np.arange(start, start + len(recs), dtype=np.int64)
    bad = (recs["seq"] != seq) | (recs["chk"] != (seq ^ XOR))
    bad |= (recs["a"] != seq[:, None] * MUL + np.arange(6)).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        return f"record #{start + i}: got {recs[i]}"
    return None


def schedule(seed: int, batch_max: int, pause_p: float, max_pause_ns: int, size: int = 4096):
    """Seeded batch sizes and pauses (ns) used cyclically by a worker."""
    rng = np.random.default_rng(seed)
    batches = rng.integers(1, batch_max + 1, size=size).astype(np.int64)
    pauses = np.where(rng.random(size) < pause_p, rng.integers(1, max_pause_ns + 1, size), 0)
    return batches, pauses.astype(np.int64)


# ------------------------------------------------------------------ njit loops
@njit(cache=True, nogil=True)
def _fill_words(words, slot, k, seq):
    for r in range(k):
        s = seq + r
        words[slot + r, 0] = s
        for j in range(6):
            words[slot + r, 1 + j] = s * MUL + j
        words[slot + r, 7] = s ^ XOR


@njit(cache=True, nogil=True)
def _check_words(words, slot, k, seq):
    for r in range(k):
        s = seq + r
        if words[slot + r, 0] != s or words[slot + r, 7] != (s ^ XOR):
            return False
        for j in range(6):
            if words[slot + r, 1 + j] != s * MUL + j:
                return False
    return True


@njit(cache=True, nogil=True)
def njit_produce(bcast, ctrl, local, words, n, batches, pauses, wparams, deadline):
    seq = 0
    j = 0
    while seq < n:
        want = min(batches[j % batches.shape[0]], n - seq)
        if bcast:
            slot, k = bcast_claim(ctrl, local, want, wparams, deadline)
        else:
            slot, k = spsc_claim(ctrl, local, want, wparams, deadline)
        if k <= 0:
            return seq
        _fill_words(words, slot, k, seq)
        if bcast:
            bcast_publish(ctrl, local, k)
        else:
            spsc_publish(ctrl, local, k)
        seq += k
        sleep_ns(pauses[j % pauses.shape[0]])
        j += 1
    return seq


@njit(cache=True, nogil=True)
def njit_consume(bcast, ctrl, local, words, batches, pauses, wparams, deadline):
    """Returns (records verified, status): 0 EOF, 1 corrupt, 2 timeout, 3 dropped."""
    seq = 0
    j = 0
    while True:
        want = batches[j % batches.shape[0]]
        if bcast:
            slot, k = bcast_peek(ctrl, local, want, wparams, deadline)
        else:
            slot, k = spsc_peek(ctrl, local, want, wparams, deadline)
        if k == -1:
            return seq, 0
        if k == 0:
            return seq, 2
        if k == DROPPED_RC:
            return seq, 3
        if not _check_words(words, slot, k, seq):
            if bcast and bcast_release(ctrl, local, 0) == DROPPED_RC:
                return seq, 3  # overwritten because we were dropped: not corruption
            return seq, 1
        if bcast:
            if bcast_release(ctrl, local, k) == DROPPED_RC:
                return seq, 3
        else:
            spsc_release(ctrl, local, k)
        seq += k
        sleep_ns(pauses[j % pauses.shape[0]])
        j += 1


def _words(ring) -> np.ndarray:
    return ring.raw.view(np.int64).reshape(ring.capacity, 8)


def _deadline() -> int:
    return time.monotonic_ns() + int(OP_TIMEOUT * 1e9) * 2


# ------------------------------------------------------------- process bodies
def _report(q, tag, body) -> None:
    try:
        res = body()
        res.setdefault("ok", True)
    except BaseException as exc:  # report everything, including test failures
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
    res["tag"] = tag
    res["pid"] = os.getpid()
    q.put(res)


def producer(q, tag, kind, name, n, seed, mode, batch_max=64, pause_p=0.05, pause_ns=500_000):
    def body():
        ring = SpscRing.attach(name, REC) if kind == "spsc" else BroadcastRing.attach(name, REC)
        batches, pauses = schedule(seed, batch_max, pause_p, pause_ns)
        seq = j = 0
        if mode == "njit":
            seq = njit_produce(
                kind != "spsc",
                ring.ctrl,
                ring.local,
                _words(ring),
                n,
                batches,
                pauses,
                ring.wait.params(),
                _deadline(),
            )
        while seq < n:
            want = int(min(batches[j % len(batches)], n - seq))
            if mode == "push":
                seq += ring.push(make_records(seq, want), timeout=OP_TIMEOUT)
            elif mode == "claim":
                view = ring.claim(want, timeout=OP_TIMEOUT)
                fill(view, seq)
                # sometimes publish only part of the claim; the rest is re-claimed
                k = len(view) if j % 3 else max(1, len(view) // 2)
                ring.publish(k)
                seq += k
            else:
                raise ValueError(mode)
            time.sleep(pauses[j % len(pauses)] / 1e9)
            j += 1
        ring.finish()
        ring.close()
        return {"count": seq}

    _report(q, tag, body)


def consumer(
    q,
    tag,
    kind,
    name,
    seed,
    mode,
    k=0,
    batch_max=64,
    pause_p=0.05,
    pause_ns=500_000,
    stall_event=None,
):
    """Consume until EOF verifying every record.  With ``stall_event`` the consumer
    reads one batch, then stops until the event is set, then tries to read again."""

    def body():
        if kind == "spsc":
            ring = SpscRing.attach(name, REC)
        else:
            ring = BroadcastConsumer.attach(name, k, REC)
        batches, pauses = schedule(seed, batch_max, pause_p, pause_ns)
        seq = j = 0
        if mode == "njit":
            seq, status = njit_consume(
                kind != "spsc",
                ring.ctrl,
                ring.local,
                _words(ring),
                batches,
                pauses,
                ring.wait.params(),
                _deadline(),
            )
            if status == 3:
                return {"count": seq, "dropped": True}
            if status:
                return {
                    "ok": False,
                    "count": seq,
                    "error": {1: "corrupt record", 2: "timeout"}[status] + f" at #{seq}",
                }
            return {"count": seq}
        try:
            while True:
                want = int(batches[j % len(batches)])
                if mode == "pop":
                    recs = ring.pop(want, timeout=OP_TIMEOUT)
                    n = len(recs)
                elif mode == "peek":
                    view = ring.peek(want, timeout=OP_TIMEOUT)
                    n = len(view) if j % 4 else (len(view) + 1) // 2  # partial releases
                    recs = view[:n].copy()  # read the zero-copy view ...
                    ring.release(n)  # ... and only trust it once release succeeded
                else:
                    raise ValueError(mode)
                if len(recs) == 0:
                    break
                err = check(recs, seq)
                if err:
                    return {"ok": False, "count": seq, "error": err}
                seq += n
                if stall_event is not None and not stall_event.is_set():
                    q.put({"tag": tag + ":stalled", "count": seq})
                    if not stall_event.wait(OP_TIMEOUT):
                        raise TimeoutError("stall event never set")
                time.sleep(pauses[j % len(pauses)] / 1e9)
                j += 1
        except ConsumerDropped as exc:
            return {"count": seq, "dropped": True, "message": str(exc)}
        ring.close()
        return {"count": seq}

    _report(q, tag, body)


def wait_for_interrupt(q, tag, name):
    """Block in peek(timeout=None) until SIGINT arrives; report how it ended."""

    def body():
        ring = SpscRing.attach(name, REC)
        q.put({"tag": tag + ":stalled", "pid": os.getpid()})
        t0 = time.monotonic()
        try:
            ring.peek(1)
        except KeyboardInterrupt:
            return {"interrupted": True, "waited": time.monotonic() - t0}
        return {"interrupted": False}

    _report(q, tag, body)


def creator(q, name, capacity):
    """Create a ring, report, then wait to be killed (simulates a crashing owner)."""
    SpscRing.create(name, REC, capacity)
    q.put({"tag": "created", "pid": os.getpid()})
    time.sleep(60)


def attach_and_exit(q, tag, name):
    def body():
        ring = SpscRing.attach(name, REC)
        ring.push(make_records(0, 3), timeout=OP_TIMEOUT)
        stale = ring.is_stale()
        ring.close()
        return {"stale": stale}

    _report(q, tag, body)


# ------------------------------------------------------------------ harness
def run(workers, timeout: float = 90.0, on_report=None) -> dict:
    """Start ``workers`` [(target, args, kwargs)] as spawned processes and collect
    one report per worker within ``timeout`` seconds; stragglers are killed. (A deadline
    for a hung run, never a measurement: spawned interpreters that load numba kernels took
    over 20 s to report on a loaded 2-core machine running the suite on two workers.)

    ``extra(q, reports)`` is called for reports whose tag ends in ":stalled".
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=t, args=(q, *a), kwargs=kw, daemon=True) for t, a, kw in workers]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    reports: dict = {}
    try:
        while len([t for t in reports if not t.endswith(":stalled")]) < len(procs):
            try:
                rep = q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue_mod.Empty:
                codes = [p.exitcode for p in procs]
                raise AssertionError(
                    f"workers did not report within {timeout} s (exit codes {codes}, "
                    f"reports {sorted(reports)})"
                ) from None
            assert rep["tag"] not in reports, f"duplicate report tag {rep['tag']}"
            reports[rep["tag"]] = rep
            if on_report is not None:
                on_report(rep)
    finally:
        for p in procs:
            p.join(max(0.0, min(5.0, deadline - time.monotonic())))
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
    return reports


def events(n: int):
    ctx = mp.get_context("spawn")
    return [ctx.Event() for _ in range(n)]
