"""Array plumbing shared by the vectorised public functions (internal)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def broadcast_flat(*args: ArrayLike) -> tuple[tuple[int, ...], list[NDArray[np.float64]]]:
    """Broadcast ``args`` (numpy rules) and return the common shape together
    with C-contiguous 1-D float64 copies/views suitable for numba kernels.

    Raises ``ValueError`` when the shapes do not broadcast.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in args]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    flat = [np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1) for a in arrays]
    return shape, flat


def call_flag_to_theta(is_call: ArrayLike) -> NDArray[np.float64]:
    """Map call/put flags to ``theta = +1.0`` (call) / ``-1.0`` (put).

    Accepts bools (or 0/1 integers) and the strings ``"c"``/``"call"`` and
    ``"p"``/``"put"`` (case-insensitive).  Anything else raises ``ValueError``.
    """
    arr = np.asarray(is_call)
    if arr.dtype.kind in "US":
        low = np.char.lower(arr.astype(str))
        calls = np.isin(low, ("c", "call"))
        puts = np.isin(low, ("p", "put"))
        if not np.all(calls | puts):
            raise ValueError("option type strings must be 'c'/'call' or 'p'/'put'")
        return np.where(calls, 1.0, -1.0)
    if arr.dtype.kind == "b":
        return np.where(arr, 1.0, -1.0)
    if arr.dtype.kind in "iuf":
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("numeric is_call flags must be 0 or 1")
        return np.where(arr == 1, 1.0, -1.0)
    raise ValueError(f"unsupported is_call dtype {arr.dtype}")


def shaped(values: NDArray[Any], shape: tuple[int, ...]) -> Any:
    """Reshape a flat result; 0-d results come back as numpy scalars."""
    return values.reshape(shape)[()]
