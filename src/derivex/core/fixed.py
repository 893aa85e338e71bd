"""Checked fixed-point arithmetic on int64 (prices in ticks, quantities in lots, money in
atomic units). Nothing here wraps: callers test the ``ok`` result and reject.
All operations are O(1) and work identically compiled and as plain Python.
"""

from __future__ import annotations

from derivex.core.jit import kernel

INT64_MAX = (1 << 63) - 1
VALUE_LIMIT = 1 << 62  # bound for any trade value, entry value or order notional


@kernel
def mul_fits(a, b, limit):
    """True if ``a * b <= limit`` for ``a, b >= 0`` (computed without overflow)."""
    if a == 0 or b == 0:
        return True
    return a <= limit // b


@kernel
def mul_div_floor(a, b, c):
    """floor(a * b / c) for ``a >= 0``, ``0 <= b < 2**31``, ``0 < c < 2**31`` without
    overflow (the result must fit in int64)."""
    q = a // c
    r = a - q * c
    return q * b + (r * b) // c


@kernel
def mul_div_ceil(a, b, c):
    """ceil(a * b / c) under the same bounds as ``mul_div_floor``."""
    q = a // c
    r = a - q * c
    return q * b + (r * b + c - 1) // c


@kernel
def fee_for(value, rate_ppm):
    """Fee on a trade value: a charge rounds up, a rebate rounds toward zero
    (|rate_ppm| <= 100_000, value <= 2**62)."""
    if rate_ppm >= 0:
        return mul_div_ceil(value, rate_ppm, 1_000_000)
    return -mul_div_floor(value, -rate_ppm, 1_000_000)
