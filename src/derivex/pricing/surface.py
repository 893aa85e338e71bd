"""Volatility surface from per-expiry raw SVI slices.

:class:`SviSurface` holds one :class:`~derivex.pricing.svi.SviParams` per
expiry and interpolates **total variance** linearly in time at fixed
log-moneyness ``k = ln(K/F)``:

* between slices ``T_i <= T <= T_{i+1}``:
  ``w(k, T) = w_i(k) + (T - T_i)/(T_{i+1} - T_i) * (w_{i+1}(k) - w_i(k))``;
* before the first slice ``w(k, T) = w_1(k) T / T_1`` (flat implied vol);
* after the last slice ``w(k, T) = w_N(k) T / T_N`` (flat implied vol).

If the slices are free of calendar arbitrage (``w_{i+1}(k) >= w_i(k)`` for
all ``k``) so is the interpolated surface (it is then non-decreasing in
``T`` at every ``k``).  Linear interpolation of two butterfly-free slices is
not guaranteed butterfly-free in between; :meth:`SviSurface.check_butterfly`
checks the given slices only.

:func:`check_calendar` checks a sequence of slices on a log-moneyness grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .svi import ButterflyReport, SviParams, check_butterfly, default_grid, fit_svi

__all__ = ["CalendarReport", "SviSurface", "check_calendar"]


@dataclass(frozen=True)
class CalendarReport:
    """Outcome of :func:`check_calendar`.

    ``min_increment`` is the smallest ``w_{i+1}(k) - w_i(k)`` over all
    adjacent pairs and grid points; it is attained between the expiries
    ``worst_pair`` at ``argmin_k``.  ``ok`` iff ``min_increment >= -tol``.
    ``violations`` counts (pair, grid point) combinations below ``-tol``.
    """

    ok: bool
    min_increment: float
    argmin_k: float
    worst_pair: tuple[float, float]
    violations: int


def check_calendar(
    expiries: ArrayLike,
    slices: Sequence[SviParams],
    k_grid: ArrayLike | None = None,
    tol: float = 1e-12,
) -> CalendarReport:
    """Check total variance is non-decreasing in expiry at fixed log-moneyness.

    ``expiries`` must be strictly increasing and match ``slices`` in length
    (``ValueError`` otherwise; fewer than two slices is trivially ok).
    Cost: O(len(slices) * len(k_grid)).
    """
    t = np.asarray(expiries, dtype=np.float64)
    if t.shape != (len(slices),):
        raise ValueError("expiries and slices must have the same length")
    if np.any(np.diff(t) <= 0.0):
        raise ValueError("expiries must be strictly increasing")
    grid = default_grid() if k_grid is None else np.asarray(k_grid, dtype=np.float64)
    if len(slices) < 2:
        return CalendarReport(True, np.inf, float("nan"), (float("nan"), float("nan")), 0)
    w = np.stack([p.total_variance(grid) for p in slices])
    inc = np.diff(w, axis=0)
    pair, col = np.unravel_index(int(np.argmin(inc)), inc.shape)
    worst = float(inc[pair, col])
    return CalendarReport(
        ok=bool(worst >= -tol),
        min_increment=worst,
        argmin_k=float(grid[col]),
        worst_pair=(float(t[pair]), float(t[pair + 1])),
        violations=int(np.count_nonzero(inc < -tol)),
    )


class SviSurface:
    """Implied volatility surface made of raw SVI slices (see module doc).

    ``expiries`` (years) must be positive and strictly increasing and match
    ``slices``; raises ``ValueError`` otherwise.  Immutable after creation.
    """

    def __init__(self, expiries: Sequence[float], slices: Sequence[SviParams]) -> None:
        t = np.asarray(expiries, dtype=np.float64).reshape(-1)
        if t.size == 0 or t.size != len(slices):
            raise ValueError("need one SviParams per expiry and at least one expiry")
        if not np.all(np.isfinite(t)) or np.any(t <= 0.0) or np.any(np.diff(t) <= 0.0):
            raise ValueError("expiries must be finite, positive and strictly increasing")
        self._t = t
        self._slices = tuple(slices)

    @property
    def expiries(self) -> NDArray[np.float64]:
        return self._t.copy()

    @property
    def slices(self) -> tuple[SviParams, ...]:
        return self._slices

    @classmethod
    def fit(
        cls,
        expiries: Sequence[float],
        log_moneyness: Sequence[ArrayLike],
        total_variance: Sequence[ArrayLike],
        weights: Sequence[ArrayLike] | None = None,
        **fit_kwargs: Any,
    ) -> SviSurface:
        """Fit one SVI slice per expiry with :func:`~derivex.pricing.svi.fit_svi`.

        ``log_moneyness[i]``/``total_variance[i]`` are the quotes of
        ``expiries[i]``.  Slices are fitted independently: run
        :meth:`check_calendar` on the result.  Cost: one ``fit_svi`` per slice.
        """
        ws = [None] * len(expiries) if weights is None else list(weights)
        if not len(log_moneyness) == len(total_variance) == len(ws) == len(expiries):
            raise ValueError("one quote set per expiry required")
        slices = [
            fit_svi(k, w, wt, **fit_kwargs)
            for k, w, wt in zip(log_moneyness, total_variance, ws, strict=True)
        ]
        return cls(expiries, slices)

    @classmethod
    def fit_implied_vols(
        cls,
        expiries: Sequence[float],
        forwards: Sequence[float],
        strikes: Sequence[ArrayLike],
        vols: Sequence[ArrayLike],
        weights: Sequence[ArrayLike] | None = None,
        **fit_kwargs: Any,
    ) -> SviSurface:
        """Like :meth:`fit` from strikes and implied vols per expiry
        (``k = ln(K/F)``, ``w = vol^2 T``)."""
        ks = [
            np.log(np.asarray(s, dtype=np.float64) / f)
            for s, f in zip(strikes, forwards, strict=True)
        ]
        ws = [np.asarray(v, dtype=np.float64) ** 2 * t for v, t in zip(vols, expiries, strict=True)]
        return cls.fit(expiries, ks, ws, weights, **fit_kwargs)

    def total_variance(self, log_moneyness: ArrayLike, expiry_years: ArrayLike) -> Any:
        """Total variance ``w(k, T)`` (broadcasting), interpolated as in the
        module doc.  nan for ``T < 0`` or non-finite input; 0 at ``T = 0``."""
        k, t = np.broadcast_arrays(
            np.asarray(log_moneyness, dtype=np.float64), np.asarray(expiry_years, dtype=np.float64)
        )
        out = np.full(k.shape, np.nan)
        ts = self._t
        idx = np.searchsorted(ts, t, side="right")  # ts[idx-1] <= t < ts[idx]
        for i in np.unique(idx[np.isfinite(t) & (t >= 0.0)]):
            sel = (idx == i) & np.isfinite(t) & (t >= 0.0)
            kk, tt = k[sel], t[sel]
            if i == 0:
                out[sel] = self._slices[0].total_variance(kk) * tt / ts[0]
            elif i == ts.size:
                out[sel] = self._slices[-1].total_variance(kk) * tt / ts[-1]
            else:
                t0, t1 = ts[i - 1], ts[i]
                lam = (tt - t0) / (t1 - t0)
                w0 = self._slices[i - 1].total_variance(kk)
                w1 = self._slices[i].total_variance(kk)
                out[sel] = w0 + lam * (w1 - w0)
        return out[()]

    def implied_vol(self, strike: ArrayLike, expiry_years: ArrayLike, forward: ArrayLike) -> Any:
        """Implied volatility ``sqrt(w(ln(K/F), T)/T)`` (broadcasting).

        nan for ``T <= 0``, non-positive strike/forward or negative total
        variance.  Cost: O(n) plus one SVI evaluation per element.
        """
        k_arr = np.asarray(strike, dtype=np.float64)
        f_arr = np.asarray(forward, dtype=np.float64)
        t = np.asarray(expiry_years, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where((k_arr > 0.0) & (f_arr > 0.0), np.log(k_arr / f_arr), np.nan)
            w = np.asarray(self.total_variance(k, t))
            vol = np.sqrt(np.where(w >= 0.0, w, np.nan) / np.where(t > 0.0, t, np.nan))
        return vol[()]

    def check_butterfly(
        self, k_grid: ArrayLike | None = None, tol: float = 1e-10
    ) -> list[ButterflyReport]:
        """:func:`~derivex.pricing.svi.check_butterfly` for every slice."""
        grid = default_grid() if k_grid is None else k_grid
        return [check_butterfly(p, grid, tol) for p in self._slices]

    def check_calendar(self, k_grid: ArrayLike | None = None, tol: float = 1e-12) -> CalendarReport:
        """:func:`check_calendar` across this surface's slices."""
        return check_calendar(self._t, self._slices, k_grid, tol)
