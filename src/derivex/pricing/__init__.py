"""Float-based option pricing: Black-76 / Black-Scholes prices and Greeks,
robust implied volatility, and SVI volatility surfaces.

Public API (all vectorised over numpy arrays with broadcasting):

* :func:`black76_price`, :func:`black76_greeks`, :func:`bs_price`,
  :func:`bs_greeks`, :class:`Greeks` -- see :mod:`derivex.pricing.black`.
* :func:`implied_vol_black76`, :func:`implied_vol_bs`,
  :func:`normalised_implied_vol`, :class:`IvStatus` -- see
  :mod:`derivex.pricing.implied`.
* :class:`SviParams`, :func:`fit_svi`, :class:`SviFit`,
  :func:`fit_svi_full`, :func:`check_butterfly`, :class:`ButterflyReport` -- see
  :mod:`derivex.pricing.svi`.
* :class:`SviSurface`, :func:`check_calendar`, :class:`CalendarReport` --
  see :mod:`derivex.pricing.surface`.
* :class:`ScenarioGrid`, :class:`DeribitVolShock`, :class:`SpanVolShock`,
  :func:`scenario_values`, :func:`lot_greeks`, :func:`compute_risk_arrays`,
  :func:`risk_array_records`, :func:`perpetual_risk_records` -- integer risk arrays
  and RISK_ARRAY commands for the core, see :mod:`derivex.pricing.risk`
  (contract in ``docs/risk-arrays.md``).
* :class:`PricingService`, :class:`OptionSpec`, :class:`PricingResult` -- marks and
  risk-array records for the options of one underlying, see
  :mod:`derivex.pricing.service`.

Units: time in years, volatilities and rates as decimals; vega per 1.0 of
volatility, theta per year.  This package is float-based and not part of the
deterministic exchange core; it produces marks and risk arrays for it.
"""

from .black import Greeks, black76_greeks, black76_price, bs_greeks, bs_price
from .implied import IvStatus, implied_vol_black76, implied_vol_bs, normalised_implied_vol
from .risk import (
    DeribitVolShock,
    RiskArrays,
    ScenarioGrid,
    SpanVolShock,
    compute_risk_arrays,
    lot_greeks,
    perpetual_greeks,
    perpetual_risk_records,
    risk_array_records,
    scenario_values,
)
from .service import OptionSpec, PricingResult, PricingService
from .surface import CalendarReport, SviSurface, check_calendar
from .svi import ButterflyReport, SviFit, SviParams, check_butterfly, fit_svi, fit_svi_full

__all__ = [
    "ButterflyReport",
    "CalendarReport",
    "DeribitVolShock",
    "Greeks",
    "IvStatus",
    "OptionSpec",
    "PricingResult",
    "PricingService",
    "RiskArrays",
    "ScenarioGrid",
    "SpanVolShock",
    "SviFit",
    "SviParams",
    "SviSurface",
    "black76_greeks",
    "black76_price",
    "bs_greeks",
    "bs_price",
    "check_butterfly",
    "check_calendar",
    "compute_risk_arrays",
    "fit_svi",
    "fit_svi_full",
    "implied_vol_black76",
    "implied_vol_bs",
    "lot_greeks",
    "normalised_implied_vol",
    "perpetual_greeks",
    "perpetual_risk_records",
    "risk_array_records",
    "scenario_values",
]
