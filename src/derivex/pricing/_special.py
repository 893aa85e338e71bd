"""Special functions used by the pricing kernels (internal).

All functions are scalar ``numba`` kernels compiled with
``error_model="numpy"`` (no Python exceptions, IEEE semantics) and without
``fastmath`` so results are reproducible bit-for-bit on one platform.

* :func:`erfcx` -- scaled complementary error function ``exp(z*z)*erfc(z)``
  to a few ulp for every finite ``z`` (no underflow for large ``z``), from Cody's
  rational approximations.
* :func:`norm_cdf` / :func:`norm_pdf` -- standard normal distribution.
* :func:`mills_y` -- ``Y(h) = Phi(h) / phi(h)``, evaluated without
  underflow for very negative ``h``.
* :func:`inverse_norm_cdf` -- ``Phi^{-1}(p)``; accurate to ~1e-15 relative
  (two Halley steps from the Abramowitz-Stegun 26.2.23 start).
* :func:`approximate_inverse_norm_cdf` -- ``Phi^{-1}(p)`` to ~1.2e-9 relative, three
  times cheaper; for initial guesses that are refined anyway.

Numba cache note: numba re-validates a cached kernel only against its own source file,
not the jitted code it calls in other modules; ``derivex`` keys each kernel module's cache
by a digest of the sources it imports (``derivex._kernel_cache``), so an edit to a helper
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

# forceinline (LLVM alwaysinline) for the small hot kernels of the pricing loops; see _lbr.
_jit = numba.njit(cache=True, error_model="numpy", forceinline=True)


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


# Rational Chebyshev approximations of W. J. Cody, "Rational Chebyshev approximations for
# the error function", Math. Comp. 23 (1969) 631-637 (the coefficients of his CALERF):
# erf on |z| <= 0.46875, erfcx on 0.46875 < z <= 4 and, in 1/z^2, on z > 4.  Using erfcx
# directly avoids the exp(z^2) * erfc(z) product (two exponentials and an erfc) on the
# hot path of the normalised Black function.
_ERF_A = (
    3.1611237438705656,
    113.864154151050156,
    377.485237685302021,
    3209.37758913846947,
    0.185777706184603153,
)
_ERF_B = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
_ERFCX_C = (
    0.564188496988670089,
    8.88314979438837594,
    66.1191906371416295,
    298.635138197400131,
    881.95222124176909,
    1712.04761263407058,
    2051.07837782607147,
    1230.33935479799725,
    2.15311535474403846e-8,
)
_ERFCX_D = (
    15.7449261107098347,
    117.693950891312499,
    537.181101862009858,
    1621.38957456669019,
    3290.79923573345963,
    4362.61909014324716,
    3439.36767414372164,
    1230.33935480374942,
)
_ERFCX_P = (
    0.305326634961232344,
    0.360344899949804439,
    0.125781726111229246,
    0.0160837851487422766,
    6.58749161529837803e-4,
    0.0163153871373020978,
)
_ERFCX_Q = (
    2.56852019228982242,
    1.87295284992346047,
    0.527905102951428412,
    0.0605183413124413191,
    0.00233520497626869185,
)
_CODY_SMALL = 0.46875


@_jit
def _erfcx_positive(y: float) -> float:
    """``erfcx(y)`` for ``y > 0.46875``: a pure rational function, no exponential."""
    if y <= 4.0:
        c = _ERFCX_C
        d = _ERFCX_D
        num = c[8] * y
        den = y
        for i in range(7):
            num = (num + c[i]) * y
            den = (den + d[i]) * y
        return (num + c[7]) / (den + d[7])
    if y >= 6.71e7:  # the correction 1/(2 y^2) is below half an ulp
        return ONE_OVER_SQRT_PI / y
    p = _ERFCX_P
    q = _ERFCX_Q
    w = 1.0 / (y * y)
    num = p[5] * w
    den = w
    for i in range(4):
        num = (num + p[i]) * w
        den = (den + q[i]) * w
    return (ONE_OVER_SQRT_PI - w * (num + p[4]) / (den + q[4])) / y


@_jit
def erfcx(z: float) -> float:
    """Scaled complementary error function ``exp(z**2) * erfc(z)``.

    Cody's rational approximations: ``exp_of_square(z) * (1 - erf(z))`` for
    ``|z| <= 0.46875``, a rational function of ``z`` (``z <= 4``) or ``1/z^2``
    beyond, and ``2 exp(z^2) - erfcx(-z)`` for negative ``z``.  A few ulp for every
    finite ``z``; overflows to ``inf`` for ``z < -26.7``.  Cost: about 10 ns for
    ``z > 0.47`` (no exponential).
    """
    if z != z:
        return z
    if z > _CODY_SMALL:
        return _erfcx_positive(z)
    if z >= -_CODY_SMALL:
        a = _ERF_A
        b = _ERF_B
        zz = z * z
        num = a[4] * zz
        den = zz
        for i in range(3):
            num = (num + a[i]) * zz
            den = (den + b[i]) * zz
        return exp_of_square(z) * (1.0 - z * (num + a[3]) / (den + b[3]))
    if z < -26.7:
        return math.inf
    return 2.0 * exp_of_square(z) - _erfcx_positive(-z)


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
    z = -(
        t
        - (2.515517 + t * (0.802853 + t * 0.010328))
        / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308)))
    )
    for _ in range(2):
        # Halley on f(z) = Phi(z) - q with f'/f'' from the normal density.
        pdf = norm_pdf(z)
        if pdf <= 0.0:
            break
        r = (norm_cdf(z) - q) / pdf
        z = z - r / (1.0 + 0.5 * z * r)
    return -z if upper else z


# P. J. Acklam's rational approximation of the normal quantile (2003): central rational
# function in (p - 1/2)^2, tail rational function in sqrt(-2 ln p); relative error below
# 1.2e-9 over the whole range (checked against mpmath in the tests).
_ACKLAM_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_ACKLAM_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_ACKLAM_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACKLAM_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)
_ACKLAM_TAIL = 0.02425


@_jit
def approximate_inverse_norm_cdf(p: float) -> float:
    """``Phi^{-1}(p)`` to about 1.2e-9 relative (Acklam's rational approximation).

    Same edge cases as :func:`inverse_norm_cdf` (``-inf``/``inf`` for ``p <= 0``/
    ``p >= 1``, nan for nan).  No exponential or ``erfc``: one ``log`` and ``sqrt`` in the
    tails only, about 3x cheaper than the polished version; meant for initial guesses
    that an iteration refines.
    """
    if p != p:
        return p
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    if _ACKLAM_TAIL <= p <= 1.0 - _ACKLAM_TAIL:
        a = _ACKLAM_A
        b = _ACKLAM_B
        q = p - 0.5
        r = q * q
        num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
        return num / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    c = _ACKLAM_C
    d = _ACKLAM_D
    upper = p > 0.5
    q = math.sqrt(-2.0 * math.log(1.0 - p if upper else p))
    z = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
        (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0
    )
    return -z if upper else z
