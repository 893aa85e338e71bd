"""Special functions used by the pricing kernels (internal).

All functions are scalar ``numba`` kernels compiled with
``error_model="numpy"`` (no Python exceptions, IEEE semantics) and without
``fastmath`` so results are reproducible bit-for-bit on one platform.

* :func:`erfcx` -- scaled complementary error function ``exp(z*z)*erfc(z)``
  to a few ulp for every finite ``z`` (no underflow for large ``z``).
* :func:`norm_cdf` / :func:`norm_pdf` -- standard normal distribution.
* :func:`mills_y` -- ``Y(h) = Phi(h) / phi(h)``, evaluated without
  underflow for very negative ``h``.
* :func:`inverse_norm_cdf` -- ``Phi^{-1}(p)``; accurate to ~1e-15 relative
  (two Halley steps from the Abramowitz-Stegun 26.2.23 start).

Numba cache note: numba re-validates a cached kernel only against its own source file,
not the jitted code it calls in other modules; ``derivex`` keys the whole cache directory
by a digest of every package source (``derivex._kernel_cache_dir``), so an edit to a helper
here invalidates its callers too.
"""

from __future__ import annotations

import math

import numba

SQRT_TWO_PI = math.sqrt(2.0 * math.pi)
ONE_OVER_SQRT_TWO_PI = 1.0 / SQRT_TWO_PI
ONE_OVER_SQRT_TWO = 1.0 / math.sqrt(2.0)
SQRT_PI_OVER_TWO = math.sqrt(0.5 * math.pi)
ONE_OVER_SQRT_PI = 1.0 / math.sqrt(math.pi)
DBL_EPSILON = 2.220446049250313e-16
DBL_MIN = 2.2250738585072014e-308
DBL_MAX = 1.7976931348623157e308

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def exp_of_square(z: float) -> float:
    """``exp(z*z)`` with ~2 ulp error (the square is formed exactly).

    ``z`` is split (Veltkamp) into a 26-bit head and a tail so that
    ``head*head`` is exact; the small remainder goes through a second
    ``exp``.  A plain ``exp(z*z)`` would carry a relative error of order
    ``z*z*eps``.
    """
    c = 134217729.0 * z
    hi = c - (c - z)
    lo = z - hi
    return math.exp(hi * hi) * math.exp(lo * (hi + z))


@_jit
def erfcx(z: float) -> float:
    """Scaled complementary error function ``exp(z**2) * erfc(z)``.

    Uses ``exp_of_square(z) * erfc(z)`` where ``erfc`` does not underflow
    and the asymptotic series (12 terms, relative truncation error below
    1e-17) for ``z >= 26``.  Overflows to ``inf`` for ``z < -26.6``.
    """
    if z != z:
        return z
    if z < 26.0:
        if z < -26.7:
            return math.inf
        return exp_of_square(z) * math.erfc(z)
    # erfcx(z) ~ 1/(z sqrt(pi)) * sum_n (-1)^n (2n-1)!! / (2 z^2)^n
    if z > 1e150:
        return ONE_OVER_SQRT_PI / z
    u = 1.0 / (2.0 * z * z)
    term = 1.0
    total = 1.0
    for n in range(1, 13):
        term *= -(2.0 * n - 1.0) * u
        total += term
    return ONE_OVER_SQRT_PI / z * total


@_jit
def norm_pdf(z: float) -> float:
    """Standard normal density ``exp(-z*z/2)/sqrt(2*pi)``."""
    return ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * z * z)


@_jit
def norm_cdf(z: float) -> float:
    """Standard normal cumulative distribution ``Phi(z)`` via ``erfc``.

    Relative accuracy is a few ulp times ``max(1, z*z)`` in the lower tail
    (the argument ``-z/sqrt(2)`` is rounded once); ``Phi(z)`` underflows to
    0 for ``z < -38.5``.
    """
    return 0.5 * math.erfc(-z * ONE_OVER_SQRT_TWO)


@_jit
def mills_y(h: float) -> float:
    """``Y(h) = Phi(h)/phi(h) = sqrt(pi/2) * erfcx(-h/sqrt(2))``.

    ``Y`` is positive, increasing, ``Y(h) ~ -1/h`` for ``h -> -inf``; all of
    its derivatives are positive and satisfy ``Y' = 1 + h Y``.
    """
    return SQRT_PI_OVER_TWO * erfcx(-h * ONE_OVER_SQRT_TWO)


@_jit
def inverse_norm_cdf(p: float) -> float:
    """Inverse of the standard normal cdf, ``Phi^{-1}(p)`` for ``0 < p < 1``.

    Returns ``-inf``/``inf`` for ``p <= 0``/``p >= 1`` and nan for nan.  The
    rational start (Abramowitz & Stegun 26.2.23, |error| < 4.5e-4) is polished
    with two Halley steps on the tail probability, giving close to full
    double precision, also deep in the tails (down to subnormal ``p``).
    """
    if p != p:
        return p
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    upper = p > 0.5
    q = 1.0 - p if upper else p  # q <= 0.5; the tail probability
    t = math.sqrt(-2.0 * math.log(q))
    z = -(t - (2.515517 + t * (0.802853 + t * 0.010328))
          / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))))
    for _ in range(2):
        # Halley on f(z) = Phi(z) - q with f'/f'' from the normal density.
        pdf = norm_pdf(z)
        if pdf <= 0.0:
            break
        r = (norm_cdf(z) - q) / pdf
        z = z - r / (1.0 + 0.5 * z * r)
    return -z if upper else z
