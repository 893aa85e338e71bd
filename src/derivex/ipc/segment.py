"""Named POSIX shared-memory segments with a validated ring header.

Layout (all offsets page aligned, integers little-endian int64)::

    [0, 4096)            header: fixed fields (words below) + dtype descr text at byte 256
    [4096, data_offset)  control area: sequence counters, one per 128-byte block
    [data_offset, ...)   capacity * record_size bytes of record slots

Control words are spaced ``LINE_WORDS`` (16 words = 128 bytes) apart: every
counter has its own 64-byte cache line, and the padding to 128 bytes also
keeps the adjacent-line prefetcher of Intel CPUs from coupling two counters.

The creator writes every header field first and publishes ``magic`` last with
a release store; attachers load ``magic`` with acquire before trusting any
other field.  Attach validates magic, version, ring kind, record size,
capacity (power of two), the dtype descr hash, and (optionally) an expected
dtype.  The creator's pid and process start time are recorded so that a
segment left behind by a crashed creator is detectable (:meth:`is_stale`).

Segments are mapped with the same primitive as
:mod:`multiprocessing.shared_memory` (``_posixshmem.shm_open`` + ``mmap``) but
are **never registered with multiprocessing's resource_tracker**: on Python
< 3.13 ``SharedMemory(name)`` registers *attachers* too, and the tracker then
unlinks the segment when any attaching process exits (and when several
attachers share one tracker, their unregister calls race).  Lifetime is
explicit instead: the owner calls :meth:`Segment.unlink` (or uses the ring as
a context manager), and crash leftovers are found with :func:`is_stale` and
removed with :func:`remove_stale`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import time

import numpy as np

from .atomics import atomic_load, atomic_store
from .dtypes import descr_hash, dtype_descr, dtype_from_descr

try:  # the C module behind multiprocessing.shared_memory on POSIX
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

__all__ = [
    "IpcError",
    "LayoutError",
    "RingTimeout",
    "Segment",
    "is_stale",
    "remove_stale",
]

MAGIC = int.from_bytes(b"DRVXRNG1", "little")
VERSION = 1
KIND_SPSC = 1
KIND_BROADCAST = 2
KIND_NAMES = {KIND_SPSC: "spsc", KIND_BROADCAST: "broadcast"}

PAGE = 4096
HEADER_SIZE = PAGE
DESCR_OFFSET = 256
LINE_WORDS = 16  # 128 bytes between control words

# header word indices
H_MAGIC, H_VERSION, H_KIND, H_RECORD_SIZE, H_CAPACITY, H_DTYPE_HASH = range(6)
H_CREATOR_PID, H_CREATOR_START, H_N_CONSUMERS, H_POLICY, H_GRACE_NS = range(6, 11)
H_CTRL_OFFSET, H_DATA_OFFSET, H_TOTAL_SIZE, H_DESCR_LEN = range(11, 15)

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


class IpcError(Exception):
    """Base class of derivex.ipc errors."""


class LayoutError(IpcError, ValueError):
    """A segment's header does not match what the attacher expects."""


class RingTimeout(IpcError, TimeoutError):
    """A blocking ring operation did not complete within its timeout.

    ``count`` is the number of records a partially completed push got in.
    """

    count: int = 0


def _round_up(n: int, to: int = PAGE) -> int:
    return (n + to - 1) // to * to


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid segment name {name!r}: use 1-200 of [A-Za-z0-9_.-]")
    return name


def process_start_time(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def pid_alive(pid: int, start_time: int = 0) -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, started at ``start_time``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return True  # no procfs: trust kill(0)
    if fields[0] in (b"Z", b"X"):
        return False
    return not start_time or int(fields[19]) == start_time


def _shm_open(name: str, create: bool, size: int = 0) -> mmap.mmap:
    if _posixshmem is None:  # pragma: no cover
        raise OSError("POSIX shared memory is not available on this platform")
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = _posixshmem.shm_open("/" + name, flags, mode=0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        else:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise LayoutError(f"segment {name!r} is too small ({size} bytes) to be a ring")
        return mmap.mmap(fd, size)
    except BaseException:
        if create:
            _posixshmem.shm_unlink("/" + name)
        raise
    finally:
        os.close(fd)


def unlink_name(name: str, missing_ok: bool = True) -> bool:
    """Unlink the named segment; returns False if it did not exist."""
    try:
        _posixshmem.shm_unlink("/" + check_name(name))
    except FileNotFoundError:
        if not missing_ok:
            raise
        return False
    return True


class Segment:
    """A mapped ring segment: ``header`` / ``ctrl`` (int64) and ``raw`` (uint8) views."""

    def __init__(self, name: str, mm: mmap.mmap, owner: bool) -> None:
        self.name = name
        self.owner = owner
        self._mm = mm
        self.header = np.frombuffer(mm, np.int64, HEADER_SIZE // 8)
        self.closed = False

    # ------------------------------------------------------------------ create
    @classmethod
    def create(
        cls,
        name: str,
        kind: int,
        dtype: np.dtype,
        capacity: int,
        n_ctrl_lines: int,
        n_consumers: int = 0,
        policy: int = 0,
        grace_ns: int = 0,
    ) -> Segment:
        check_name(name)
        dtype = np.dtype(dtype)
        descr = dtype_descr(dtype)
        raw_descr = descr.encode()
        if len(raw_descr) > HEADER_SIZE - DESCR_OFFSET:
            raise ValueError("dtype description too long for the segment header")
        capacity = int(capacity)
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")
        ctrl_offset = HEADER_SIZE
        data_offset = ctrl_offset + _round_up(n_ctrl_lines * LINE_WORDS * 8)
        total = data_offset + _round_up(capacity * dtype.itemsize)
        mm = _shm_open(name, create=True, size=total)
        seg = cls(name, mm, owner=True)
        h = seg.header
        h[H_CREATOR_PID] = os.getpid()
        h[H_CREATOR_START] = process_start_time(os.getpid())
        h[H_VERSION] = VERSION
        h[H_KIND] = kind
        h[H_RECORD_SIZE] = dtype.itemsize
        h[H_CAPACITY] = capacity
        h[H_DTYPE_HASH] = descr_hash(descr, dtype.itemsize)
        h[H_N_CONSUMERS] = n_consumers
        h[H_POLICY] = policy
        h[H_GRACE_NS] = grace_ns
        h[H_CTRL_OFFSET] = ctrl_offset
        h[H_DATA_OFFSET] = data_offset
        h[H_TOTAL_SIZE] = total
        h[H_DESCR_LEN] = len(raw_descr)
        mm[DESCR_OFFSET : DESCR_OFFSET + len(raw_descr)] = raw_descr
        seg._map_views(dtype)
        seg.raw[:] = 0  # pre-fault every data page now rather than on the first lap
        atomic_store(h, H_MAGIC, MAGIC)  # publish: everything above happens-before
        return seg

    # ------------------------------------------------------------------ attach
    @classmethod
    def attach(
        cls,
        name: str,
        kind: int,
        dtype: np.dtype | None = None,
        timeout: float = 1.0,
    ) -> Segment:
        """Map an existing segment and validate its header.

        Waits up to ``timeout`` seconds for a concurrent creator to finish
        initialising it.  Raises FileNotFoundError if it does not exist and
        :class:`LayoutError` if it is not a compatible ring.
        """
        check_name(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                mm = _shm_open(name, create=False)
                seg = cls(name, mm, owner=False)
                if atomic_load(seg.header, H_MAGIC) != 0:
                    break
                seg.close()
                err: Exception = LayoutError(f"segment {name!r} has no ring header")
            except LayoutError as exc:  # created but not yet sized
                err = exc
            if time.monotonic() >= deadline:
                raise err
            time.sleep(0.001)
        try:
            seg._validate(kind, dtype)
        except BaseException:
            seg.close()
            raise
        seg._map_views(None if dtype is None else np.dtype(dtype))
        return seg

    def _validate(self, kind: int, dtype: np.dtype | None) -> None:
        h = self.header
        if int(h[H_MAGIC]) != MAGIC:
            raise LayoutError(f"segment {self.name!r}: bad magic {int(h[H_MAGIC]):#x}")
        if int(h[H_VERSION]) != VERSION:
            raise LayoutError(
                f"segment {self.name!r}: layout version {int(h[H_VERSION])}, expected {VERSION}"
            )
        if int(h[H_KIND]) != kind:
            got = KIND_NAMES.get(int(h[H_KIND]), str(int(h[H_KIND])))
            raise LayoutError(f"segment {self.name!r} is a {got} ring, expected {KIND_NAMES[kind]}")
        cap = int(h[H_CAPACITY])
        if cap < 2 or cap & (cap - 1):
            raise LayoutError(f"segment {self.name!r}: capacity {cap} is not a power of two")
        n = int(h[H_DESCR_LEN])
        if not 0 < n <= HEADER_SIZE - DESCR_OFFSET:
            raise LayoutError(f"segment {self.name!r}: corrupt dtype description")
        descr = bytes(self._mm[DESCR_OFFSET : DESCR_OFFSET + n]).decode(errors="replace")
        size = int(h[H_RECORD_SIZE])
        if descr_hash(descr, size) != int(h[H_DTYPE_HASH]):
            raise LayoutError(f"segment {self.name!r}: dtype hash does not match its description")
        try:
            stored = dtype_from_descr(descr)
        except (ValueError, TypeError, SyntaxError) as exc:
            raise LayoutError(f"segment {self.name!r}: unreadable dtype {descr!r}") from exc
        if stored.itemsize != size:
            raise LayoutError(
                f"segment {self.name!r}: record size {size} != dtype itemsize {stored.itemsize}"
            )
        if dtype is not None:
            want = np.dtype(dtype)
            want_descr = dtype_descr(want)
            if descr_hash(want_descr, want.itemsize) != int(h[H_DTYPE_HASH]):
                raise LayoutError(
                    f"segment {self.name!r} holds records of dtype {stored}, "
                    f"not {want} (descr hash mismatch)"
                )
        if int(h[H_TOTAL_SIZE]) > len(self._mm) or int(h[H_DATA_OFFSET]) + cap * size > len(
            self._mm
        ):
            raise LayoutError(f"segment {self.name!r}: mapping smaller than its header claims")

    def _map_views(self, dtype: np.dtype | None) -> None:
        h = self.header
        cap = int(h[H_CAPACITY])
        self.capacity = cap
        self.record_size = int(h[H_RECORD_SIZE])
        if dtype is None:
            n = int(h[H_DESCR_LEN])
            dtype = dtype_from_descr(bytes(self._mm[DESCR_OFFSET : DESCR_OFFSET + n]).decode())
        self.dtype = dtype
        ctrl_off, data_off = int(h[H_CTRL_OFFSET]), int(h[H_DATA_OFFSET])
        self.ctrl = np.frombuffer(self._mm, np.int64, (data_off - ctrl_off) // 8, ctrl_off)
        self.raw = np.frombuffer(self._mm, np.uint8, cap * self.record_size, data_off)
        self.records = np.frombuffer(self._mm, self.dtype, cap, data_off)

    # --------------------------------------------------------------- lifetime
    @property
    def creator_pid(self) -> int:
        return int(self.header[H_CREATOR_PID])

    def is_stale(self) -> bool:
        """True if the process that created the segment no longer exists."""
        return not pid_alive(self.creator_pid, int(self.header[H_CREATOR_START]))

    def close(self) -> None:
        """Unmap this process's view (idempotent).

        If the caller still holds numpy views obtained from the ring, the
        mapping stays alive until the last of them is garbage collected.
        """
        if self.closed:
            return
        self.closed = True
        for attr in ("header", "ctrl", "raw", "records"):
            self.__dict__.pop(attr, None)
        mm = self.__dict__.pop("_mm")
        # with numpy views still exported the mmap stays until they are freed
        with contextlib.suppress(BufferError):
            mm.close()

    def unlink(self, missing_ok: bool = True) -> bool:
        """Remove the name from the system; existing mappings stay valid."""
        return unlink_name(self.name, missing_ok=missing_ok)


def _read_header(name: str) -> np.ndarray:
    mm = _shm_open(check_name(name), create=False)
    try:
        return np.frombuffer(mm, np.int64, HEADER_SIZE // 8).copy()
    finally:
        mm.close()


def is_stale(name: str) -> bool:
    """True if segment ``name`` exists but its creator process is gone.

    A segment whose creator died before publishing the header counts as
    stale too.  Raises FileNotFoundError if it does not exist.
    """
    try:
        h = _read_header(name)
    except LayoutError:
        return True  # too small to hold a header
    if int(h[H_MAGIC]) != MAGIC and int(h[H_CREATOR_PID]) == 0:
        return True  # never initialised
    return not pid_alive(int(h[H_CREATOR_PID]), int(h[H_CREATOR_START]))


def remove_stale(name: str) -> bool:
    """Unlink ``name`` if it is stale; returns True if it was removed."""
    try:
        if not is_stale(name):
            return False
    except FileNotFoundError:
        return False
    return unlink_name(name)
