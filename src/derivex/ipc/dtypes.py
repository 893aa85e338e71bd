"""Text description of record dtypes for segment headers, and its hash."""

from __future__ import annotations

import ast
import hashlib

import numpy as np

__all__ = ["descr_hash", "dtype_descr", "dtype_from_descr"]


def _spec(dt: np.dtype):
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return (_spec(base), tuple(shape))
    fields = dt.fields
    if dt.names is not None and fields is not None:
        info = [tuple(fields[n]) for n in dt.names]  # (dtype, offset[, title])
        spec = {
            "names": list(dt.names),
            "formats": [_spec(f[0]) for f in info],
            "offsets": [f[1] for f in info],
            "itemsize": dt.itemsize,
            "aligned": bool(dt.isalignedstruct),
        }
        titles = [f[2] if len(f) > 2 else None for f in info]
        if any(t is not None for t in titles):
            spec["titles"] = titles
        return spec
    return dt.str


def _from_spec(spec) -> np.dtype:
    if isinstance(spec, str):
        return np.dtype(spec)
    if isinstance(spec, tuple):
        return np.dtype((_from_spec(spec[0]), spec[1]))
    return np.dtype({**spec, "formats": [_from_spec(f) for f in spec["formats"]]})  # type: ignore[call-overload]


def dtype_descr(dtype: np.dtype) -> str:
    """Canonical text form of a (structured) dtype, stored in the header.

    Field names, titles, formats, offsets, itemsize and alignment are kept
    (also for out-of-order or padded layouts); metadata is not.
    """
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TypeError("record dtypes must not contain Python objects")
    if dtype.itemsize == 0:
        raise TypeError("record dtype has zero size")
    if dtype.subdtype is not None:
        raise TypeError("a record dtype cannot be a bare sub-array; wrap it in a structured dtype")
    text = repr(_spec(dtype))
    try:
        ok = dtype_from_descr(text) == dtype
    except (ValueError, TypeError, SyntaxError):
        ok = False
    if not ok:
        raise TypeError(f"dtype {dtype} cannot be described in a segment header")
    return text


def dtype_from_descr(text: str) -> np.dtype:
    return _from_spec(ast.literal_eval(text))


def descr_hash(text: str, itemsize: int) -> int:
    digest = hashlib.blake2b(f"{itemsize}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)
