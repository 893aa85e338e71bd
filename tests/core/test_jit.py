"""Compile settings (``core/jit.py``): a kernel called from other kernels with literal, enum,
int32 and int64 arguments compiles one specialisation, and computes what each call would
have computed with its own."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import numpy as np

from derivex.core import jit


def kernel(function: Callable[..., Any]) -> Any:
    """``jit.kernel`` without the disk cache: a kernel loaded from it would not type its
    callees, and the signatures this test counts are those typing compiles."""
    return jit._compile(function, forceinline=True, cache=False)


class Colour(enum.IntEnum):
    RED = 1
    BLUE = 2


@kernel
def _scaled(out, x, flag):
    if flag:
        out[0] += x
    return x * 3


@kernel
def _pick(pair, k):
    return pair[k]  # a heterogeneous tuple indexed by a literal: typed only as a literal


@kernel
def _caller(out, small):
    total = _scaled(out, 0, False)
    total += _scaled(out, Colour.BLUE, True)
    total += _scaled(out, small, True)
    total += _scaled(out, np.int64(-5), True)
    total += np.int64(_pick((7, 2.5), 0))
    return total


def test_one_specialisation_for_literal_enum_and_narrow_integer_arguments() -> None:
    out = np.zeros(1, np.int64)
    assert _caller(out, np.int32(-4)) == 0 + 6 - 12 - 15 + 7
    assert out[0] == 2 - 4 - 5
    assert [str(t) for t in _scaled.signatures[0][1:]] == ["int64", "bool"]
    assert len(_scaled.signatures) == 1
    assert len(_pick.signatures) == 1  # compiled as called: the widened form does not type


@kernel
def _from_python(x):
    return x + 1


def test_calls_from_python_dispatch_as_before() -> None:
    assert _from_python(np.int32(2)) == 3
    assert _from_python(np.int64(2)) == 3
    assert len(_from_python.signatures) == 2
