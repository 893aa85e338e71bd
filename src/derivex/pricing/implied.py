"""Implied volatility for Black-76 and Black-Scholes-Merton prices.

The solver works on the normalised Black function (see
:mod:`derivex.pricing._lbr`): the quote is reduced to the time value of the
out-of-the-money counterpart (put-call parity, done in price space where
``F - K`` is exact for nearby strikes), normalised by ``sqrt(F K)``, and a
"Let's Be Rational"-type method (rational initial guess per branch +
Householder(3) on a transformed objective, bracketed) returns the total
volatility ``s = vol * sqrt(T)``.  Typically 2 iterations; at most 12,
each with a bisection safeguard, so it never hangs and never raises on
valid input.

Accuracy: the result reproduces the input price to about one ulp, so the
volatility error is about ``eps * price / vega`` -- near 1e-15 relative
wherever the volatility is determined by the price at all (it is not, for
instance, for deep in-the-money quotes whose time value is below the ulp of
the intrinsic value, or where vega underflows).

Outcomes, reported by :class:`IvStatus` (``return_status=True``):

* ``OK`` -- a volatility was found.  A price equal to intrinsic (within
  4 ulp), or an out-of-the-money-equivalent normalised time value that is
  subnormal (< 2.2e-308), gives volatility ``0.0`` (it cannot be resolved
  further in double precision).
* ``BELOW_INTRINSIC`` -- price below the discounted intrinsic value of the
  forward (more than 4 ulp below), including negative prices.
* ``ABOVE_MAXIMUM`` -- price at or above the no-arbitrage upper bound
  (``D F`` for calls, ``D K`` for puts; at ``T = 0`` any time value).
* ``EXPIRED`` -- ``expiry == 0`` and the price equals intrinsic: every
  volatility fits, none is returned.
* ``INVALID_INPUT`` -- non-finite input, ``forward/spot <= 0``,
  ``strike <= 0``, ``expiry < 0`` (or a forward/discount factor that
  overflows).

The volatility is nan for every status except ``OK``.  With
``errors="raise"`` a ``ValueError`` naming the first failing element and
the number of failures is raised instead.

Cost: O(n), roughly 0.3 us per option on one core (see ``bench/pricing_bench.py``).
``parallel=True`` runs the same per-element code over numba's thread pool
(``numba.get_num_threads()`` threads: one per core unless ``NUMBA_NUM_THREADS`` or
``numba.set_num_threads`` says otherwise); elements are independent, so the results are
bit-identical to the serial default.  The default is serial because the exchange
process decides what its cores run; the pool is started on the first parallel call.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike

from ._arrays import broadcast_flat, call_flag_to_theta, shaped
from ._lbr import normalised_implied_vol_otm_call
from ._special import DBL_EPSILON

__all__ = ["IvStatus", "implied_vol_black76", "implied_vol_bs", "normalised_implied_vol"]


class IvStatus(IntEnum):
    """Per-element outcome of the implied volatility solvers."""

    OK = 0
    BELOW_INTRINSIC = 1
    ABOVE_MAXIMUM = 2
    EXPIRED = 3
    INVALID_INPUT = 4


_OK = 0
_BELOW = 1
_ABOVE = 2
_EXPIRED = 3
_INVALID = 4
_TOL_ULPS = 4.0


_jit = numba.njit(cache=True, error_model="numpy")
_jit_parallel = numba.njit(cache=True, error_model="numpy", parallel=True)


@_jit
def _iv_element(model, p, und, k, t, r, q, w):
    """``(vol, status)`` of one quote.  Forward and discount are formed exactly as in
    ``black._price_element`` so that a price produced there inverts without an ulp of
    mismatch."""
    if not (
        math.isfinite(p)
        and math.isfinite(und)
        and math.isfinite(k)
        and math.isfinite(t)
        and math.isfinite(r)
        and math.isfinite(q)
        and und > 0.0
        and k > 0.0
        and t >= 0.0
    ):
        return math.nan, _INVALID
    d = math.exp(-r * t)
    f = und * math.exp((r - q) * t) if model == 1 else und
    if not (d > 0.0 and math.isfinite(f) and f > 0.0 and math.isfinite(d)):
        return math.nan, _INVALID
    u = p / d  # undiscounted price
    intrinsic = max(w * (f - k), 0.0)
    tol = _TOL_ULPS * DBL_EPSILON * max(abs(u), intrinsic)
    time_value = u - intrinsic
    if time_value < -tol:
        return math.nan, _BELOW
    upper = f if w > 0.0 else k
    if u >= upper:
        return math.nan, _ABOVE
    if t == 0.0:
        return math.nan, (_EXPIRED if time_value <= tol else _ABOVE)
    if time_value <= 0.0:
        return 0.0, _OK
    x = -abs(math.log(f / k))
    beta = time_value / (math.sqrt(f) * math.sqrt(k))
    if beta >= math.exp(0.5 * x):
        return math.nan, _ABOVE
    s, _ = normalised_implied_vol_otm_call(beta, x)
    return s / math.sqrt(t), _OK


# The serial and the parallel kernel run the same element function on independent
# elements, so their results are bit-identical; only the scheduling differs.
@_jit
def _iv_kernel(model, price, und, strike, expiry, rate, div, theta, vol_out, status_out):
    for i in range(price.shape[0]):
        vol_out[i], status_out[i] = _iv_element(
            model, price[i], und[i], strike[i], expiry[i], rate[i], div[i], theta[i]
        )


@_jit_parallel
def _iv_kernel_parallel(model, price, und, strike, expiry, rate, div, theta, vol_out, status_out):
    for i in numba.prange(price.shape[0]):
        vol_out[i], status_out[i] = _iv_element(
            model, price[i], und[i], strike[i], expiry[i], rate[i], div[i], theta[i]
        )


@_jit
def _normalised_kernel(beta, x, theta, out):
    for i in range(beta.shape[0]):
        xi = x[i]
        b = beta[i]
        intrinsic = 0.0
        if theta[i] * xi > 0.0:
            intrinsic = abs(2.0 * math.sinh(0.5 * xi))
        tv = b - intrinsic
        if not (math.isfinite(b) and math.isfinite(xi)) or tv < -_TOL_ULPS * DBL_EPSILON * b:
            out[i] = math.nan
        elif tv <= 0.0:
            out[i] = 0.0
        else:
            ax = -abs(xi)
            if tv >= math.exp(0.5 * ax):
                out[i] = math.nan
            else:
                out[i] = normalised_implied_vol_otm_call(tv, ax)[0]


_REASONS = {
    _BELOW: "price below intrinsic value",
    _ABOVE: "price at or above the no-arbitrage upper bound",
    _EXPIRED: "zero time to expiry: volatility undefined",
    _INVALID: "invalid input (non-finite, forward/strike <= 0 or expiry < 0)",
}


def _finish(
    vol: np.ndarray, status: np.ndarray, shape: tuple[int, ...], errors: str, return_status: bool
) -> Any:
    if errors == "raise":
        bad = np.flatnonzero(status != _OK)
        if bad.size:
            first = int(bad[0])
            reason = _REASONS[int(status[first])]
            raise ValueError(
                f"implied volatility undefined for {bad.size} of {status.size} inputs; "
                f"first at flat index {first}: {reason}"
            )
    if return_status:
        return shaped(vol, shape), shaped(status, shape)
    return shaped(vol, shape)


def _check_errors(errors: str) -> None:
    if errors not in ("nan", "raise"):
        raise ValueError("errors must be 'nan' or 'raise'")


def implied_vol_black76(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    *,
    errors: str = "nan",
    return_status: bool = False,
    parallel: bool = False,
) -> Any:
    """Black-76 implied volatility of discounted option prices (vectorised).

    ``price`` is the discounted premium ``exp(-rate*expiry) * Black(...)``;
    other arguments as in :func:`derivex.pricing.black76_price`, all
    broadcasting.  Returns the volatility (decimal, annualised), nan where
    undefined (see the module docstring for the statuses); with
    ``return_status=True`` returns ``(vol, status)`` with an ``int8`` array of
    :class:`IvStatus` codes.  ``errors="raise"`` raises ``ValueError`` if any
    element is not ``OK``.  ``parallel=True`` spreads the elements over numba's
    threads (see the module docstring); the results are bit-identical.  Cost: O(n),
    never iterates more than 12 times per element.
    """
    _check_errors(errors)
    theta = call_flag_to_theta(is_call)
    shape, (p, f, k, t, r, w) = broadcast_flat(price, forward, strike, expiry, rate, theta)
    vol = np.empty_like(p)
    status = np.empty(p.shape, dtype=np.int8)
    kernel = _iv_kernel_parallel if parallel else _iv_kernel
    kernel(0, p, f, k, t, r, np.zeros_like(r), w, vol, status)
    return _finish(vol, status, shape, errors, return_status)


def implied_vol_bs(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike = 0.0,
    dividend: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    *,
    errors: str = "nan",
    return_status: bool = False,
    parallel: bool = False,
) -> Any:
    """Black-Scholes-Merton implied volatility (spot ``S``, rate ``r``, yield ``q``).

    Converted to Black-76 with ``F = S exp((r-q)T)`` and discount
    ``exp(-rT)``; returns/raises (and takes ``parallel``) as :func:`implied_vol_black76`.
    """
    _check_errors(errors)
    theta = call_flag_to_theta(is_call)
    shape, (p, s, k, t, r, q, w) = broadcast_flat(
        price, spot, strike, expiry, rate, dividend, theta
    )
    vol = np.empty_like(p)
    status = np.empty(p.shape, dtype=np.int8)
    kernel = _iv_kernel_parallel if parallel else _iv_kernel
    kernel(1, p, s, k, t, r, q, w, vol, status)
    return _finish(vol, status, shape, errors, return_status)


def normalised_implied_vol(beta: ArrayLike, x: ArrayLike, is_call: ArrayLike = True) -> Any:
    """Total implied volatility ``s = vol*sqrt(T)`` from a normalised price.

    ``beta = undiscounted price / sqrt(F K)``, ``x = ln(F/K)``.  Returns nan
    for ``beta`` below the normalised intrinsic value or at/above its maximum
    ``exp(theta x / 2)``; 0 at intrinsic.  Cost O(n).
    """
    theta = call_flag_to_theta(is_call)
    shape, (b, xx, w) = broadcast_flat(beta, x, theta)
    out = np.empty_like(b)
    _normalised_kernel(b, xx, w, out)
    return shaped(out, shape)
