"""Snapshots: the whole engine state at a seq, written atomically, loaded without copying.

File ``snapshot-<seq:020d>.dxs``::

    0    64-byte preamble (little-endian): magic b"DXSNAP\\0\\1", u32 version, u32 checksum
         algorithm, u64 seq, u64 meta offset, u64 meta bytes, u32 compression, u32 chunk
         bytes, 16-byte checksum of preamble[0:48] + meta
    64   the arrays of ``State`` in field order, each starting 64-byte aligned, raw
         little-endian C-order bytes (or one compressed frame each)
    ...  meta: UTF-8 JSON (config, array table with dtype/shape/offset/sizes, optional state
         root, the checksum of every ``chunk bytes`` chunk of the data region)

Written to a hidden temporary file, flushed, renamed into place, directory flushed: a crash
leaves either no snapshot or a complete one. The data region is laid out exactly like the
engine's packed arena (``state.pack``: sections in field order, 64-byte aligned), so loading
an uncompressed snapshot maps the file copy-on-write and ``restore_engine`` runs the engine
on that mapping: no copy (the OS copies a page privately only when the engine writes it).
Every chunk checksum is verified first; a mismatch raises ``CorruptionError`` naming the
file, the byte offset of the damaged chunk and the array in it.

Compression: ``"zstd"`` (package ``zstandard``) or ``"lz4"`` (package ``lz4``) when
installed; a compressed snapshot is decompressed into fresh arrays on load.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.growth import added_arrays
from derivex.core.state import State
from derivex.core.trigger_query import widen_trigger_rows
from derivex.journal.format import (
    CHECKSUM_NAMES,
    DEFAULT_CHECKSUM,
    CorruptionError,
    IncompatibleSnapshot,
    JournalError,
    checksum,
    fsync_directory,
)

MAGIC = b"DXSNAP\x00\x01"
VERSION = 1
PREAMBLE = struct.Struct("<8sIIQQQII16s")
PREAMBLE_CHECKED = 48
CHUNK_BYTES = 1 << 20
PREFIX, SUFFIX = "snapshot-", ".dxs"
COMPRESSION = {"none": 0, "zstd": 1, "lz4": 2}


def _codec(name: str) -> tuple[Any, Any]:
    """(compress, decompress) functions for a compression name."""
    if name == "zstd":
        import zstandard

        return (zstandard.ZstdCompressor(level=3).compress, zstandard.ZstdDecompressor().decompress)
    if name == "lz4":
        import lz4.frame

        return lz4.frame.compress, lz4.frame.decompress
    raise JournalError(f"unknown compression {name!r}")


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot. Uncompressed, ``arena`` is the mapped data region and ``layout``
    its section table, in the form ``Engine`` keeps its state (``state.pack``); ``state``
    holds views into it."""

    path: Path
    seq: int
    state: State
    config: EngineConfig
    root: bytes | None
    meta: dict[str, Any]
    arena: np.ndarray | None = None
    layout: np.ndarray | None = None


def restore_engine(snapshot: Snapshot) -> Engine:
    """An engine running on the snapshot's state. Uncompressed: the engine adopts the mapped
    file as its arena — nothing is copied; pages are copied privately by the OS only when
    the engine writes them (and the arena is replaced the first time a pool grows).
    Compressed: ``Engine`` packs the decompressed arrays (one copy)."""
    if snapshot.arena is None:
        return Engine(snapshot.config, snapshot.state)
    assert snapshot.layout is not None
    return Engine.from_arena(snapshot.config, snapshot.arena, snapshot.layout, snapshot.state)


def snapshot_path(directory: Path, seq: int) -> Path:
    return directory / f"{PREFIX}{seq:020d}{SUFFIX}"


def list_snapshots(directory: Path | str) -> list[tuple[int, Path]]:
    """``(seq, path)`` of the snapshots in ``directory``, oldest first (temporaries
    excluded)."""
    directory = Path(directory)
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            name = path.name
            if name.startswith(PREFIX) and name.endswith(SUFFIX):
                digits = name[len(PREFIX) : -len(SUFFIX)]
                if digits.isdigit():
                    found.append((int(digits), path))
    return sorted(found)


class _ChunkedWriter:
    """Writes the data region and checksums it in fixed chunks as it goes."""

    def __init__(self, handle: Any, algorithm: int) -> None:
        self.handle, self.algorithm = handle, algorithm
        self.offset = 64
        self.sums: list[str] = []
        self._chunk: list[memoryview] = []
        self._filled = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.handle.write(view)
        self.offset += len(view)
        while len(view):
            take = min(CHUNK_BYTES - self._filled, len(view))
            self._chunk.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == CHUNK_BYTES:
                self.flush()

    def pad(self) -> None:
        if self.offset % 64:
            self.write(bytes(64 - self.offset % 64))

    def flush(self) -> None:
        if self._filled:
            self.sums.append(checksum(self.algorithm, *self._chunk).hex())
            self._chunk, self._filled = [], 0


def write_snapshot(
    directory: Path | str,
    state: State,
    config: EngineConfig,
    seq: int,
    *,
    root: bytes | None = None,
    compression: str = "none",
    algorithm: int | None = None,
) -> Path:
    """Write ``state`` (after the command ``seq``) atomically; return its path. Cost: one
    pass over the state's arrays (O(capacity)), one fsync of the file and one of the
    directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    algorithm = algorithm or DEFAULT_CHECKSUM
    compress = _codec(compression)[0] if compression != "none" else None
    final = snapshot_path(directory, seq)
    temporary = directory / f".{final.name}.tmp-{os.getpid()}"
    arrays = []
    with open(temporary, "wb") as handle:
        handle.write(bytes(64))
        writer = _ChunkedWriter(handle, algorithm)
        for name, array in zip(State._fields, state, strict=True):
            array = np.ascontiguousarray(array)
            data = array.reshape(-1).view(np.uint8).data
            stored = compress(data) if compress is not None else data
            arrays.append(
                {
                    "name": name,
                    "dtype": array.dtype.str,
                    "shape": list(array.shape),
                    "offset": writer.offset,
                    "nbytes": array.nbytes,
                    "stored": len(stored),
                }
            )
            writer.write(stored)
            writer.pad()
        writer.flush()
        meta = json.dumps(
            {
                "format": "derivex-snapshot",
                "version": VERSION,
                "seq": seq,
                "config": config.to_dict(),
                "root": root.hex() if root is not None else None,
                "compression": compression,
                "arrays": arrays,
                "chunk_bytes": CHUNK_BYTES,
                "chunks": writer.sums,
            },
            sort_keys=True,
        ).encode()
        meta_offset = writer.offset
        handle.write(meta)
        head = PREAMBLE.pack(
            MAGIC,
            VERSION,
            algorithm,
            seq,
            meta_offset,
            len(meta),
            COMPRESSION[compression],
            CHUNK_BYTES,
            bytes(16),
        )
        head = head[:PREAMBLE_CHECKED] + checksum(algorithm, head[:PREAMBLE_CHECKED], meta)
        handle.seek(0)
        handle.write(head)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    fsync_directory(directory)
    return final


def _read_meta(path: Path, buffer: mmap.mmap) -> tuple[tuple, dict[str, Any]]:
    if len(buffer) < 64:
        raise CorruptionError(path, 0, "snapshot shorter than its preamble")
    fields = PREAMBLE.unpack_from(buffer, 0)
    magic, version, algorithm, _, meta_offset, meta_bytes, _, _, stored_sum = fields
    if magic != MAGIC or version != VERSION or algorithm not in CHECKSUM_NAMES:
        raise CorruptionError(path, 0, "not a derivex snapshot of a known version")
    if meta_offset + meta_bytes != len(buffer):
        raise CorruptionError(path, 0, "preamble does not match the file length")
    meta_raw = buffer[meta_offset : meta_offset + meta_bytes]
    if checksum(algorithm, buffer[:PREAMBLE_CHECKED], meta_raw) != stored_sum:
        raise CorruptionError(
            path, meta_offset, "checksum mismatch in the snapshot preamble or metadata"
        )
    try:
        return fields, json.loads(meta_raw)
    except ValueError:  # matching checksum over bytes that are not JSON: not ours
        raise CorruptionError(path, meta_offset, "snapshot metadata is not JSON") from None


def load_snapshot(path: Path | str, *, verify: bool = True) -> Snapshot:
    """Load a snapshot. Uncompressed arrays are copy-on-write views of the mapped file.
    Cost: one checksum pass over the file (~12 GB/s with CRC32C) unless ``verify=False``.
    Raises ``CorruptionError`` (file, byte offset, array) on damage."""
    path = Path(path)
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size < PREAMBLE.size:  # (mmap refuses empty files)
            raise CorruptionError(path, 0, "snapshot shorter than its preamble")
        buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    fields, meta = _read_meta(path, buffer)
    algorithm, meta_offset = fields[2], fields[4]
    arrays = meta["arrays"]
    if verify:
        chunk = meta["chunk_bytes"]
        view = memoryview(buffer)
        for index, expected in enumerate(meta["chunks"]):
            start = 64 + index * chunk
            stop = min(start + chunk, meta_offset)
            if checksum(algorithm, view[start:stop]).hex() != expected:
                names = [
                    a["name"]
                    for a in arrays
                    if a["offset"] < stop and a["offset"] + a["stored"] > start
                ]
                raise CorruptionError(
                    path,
                    start,
                    f"checksum mismatch in snapshot bytes "
                    f"[{start}, {stop}) (array "
                    f"{', '.join(names) or 'padding'})",
                )
        view.release()
    names = [entry["name"] for entry in arrays]
    missing = [name for name in State._fields if name not in names]
    extra = [name for name in names if name not in State._fields]
    # arrays added since (transfers, subaccounts, MMP) are empty until first used: a
    # snapshot written before them loads with them as a fresh state has them
    accounts = next((a["shape"][0] for a in arrays if a["name"] == "acc_i4"), 0)
    added = added_arrays(accounts) if missing and not extra else {}
    present = [name for name in State._fields if name not in missing]
    if names != list(State._fields) and (
        extra or names != present or not set(missing) <= set(added)
    ):
        raise IncompatibleSnapshot(
            f"{path}: written with another state layout (missing arrays {missing}, "
            f"unknown arrays {extra})"
        )
    values = {}
    arena = layout = None
    if meta["compression"] == "none":
        # the data region is laid out like Engine's arena: sections in field order, each
        # padded to 64 bytes
        arena = np.frombuffer(buffer, dtype=np.uint8, count=meta_offset - 64, offset=64)
        layout = np.zeros((len(arrays), 3), dtype=np.int64)
        for index, entry in enumerate(arrays):
            begin, shape = entry["offset"] - 64, entry["shape"]
            layout[index] = (begin, shape[0], shape[1] if len(shape) == 2 else 0)
            section = arena[begin : begin + entry["nbytes"]]
            values[entry["name"]] = section.view(np.dtype(entry["dtype"])).reshape(shape)
    else:
        decompress = _codec(meta["compression"])[1]
        for entry in arrays:
            raw = decompress(buffer[entry["offset"] : entry["offset"] + entry["stored"]])
            array = np.frombuffer(raw, dtype=np.dtype(entry["dtype"]))  # read-only
            values[entry["name"]] = array.reshape(entry["shape"])
    try:
        config = EngineConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise IncompatibleSnapshot(f"{path}: recorded config not readable: {error!r}") from None
    if missing:
        values.update({name: added[name] for name in missing})
        arena = layout = None  # the engine packs a fresh arena with them
    if widen_trigger_rows(values):
        arena = layout = None  # older layout: Engine packs the widened arrays afresh
    state = State(**values)
    if state.params.shape != config.params().shape:
        raise IncompatibleSnapshot(f"{path}: written with another parameter vector layout")
    if not np.array_equal(state.params, config.params()):
        raise JournalError(f"{path}: parameter vector does not match the recorded config")
    root = bytes.fromhex(meta["root"]) if meta["root"] else None
    return Snapshot(path, meta["seq"], state, config, root, meta, arena, layout)
