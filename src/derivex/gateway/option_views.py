"""Option views (implied volatility and Greeks, as tickers and positions show them) taken
from sequenced RISK_ARRAY commands, so every gateway, in one process or in any worker of
``derivex serve --workers N``, shows the same numbers for the same batches.

A RISK_ARRAY header carries the mark's implied volatility (``mark_iv_ppm``, 1e-6); its
RISK_GREEKS leg the Greeks of one lot at 1e-9 in ticks per lot (``derivex.pricing.risk.
lot_greeks``). Divided by the contract value (units per tick per lot) and scaled by the
price unit they are Deribit's Greeks per unit of the base in the quote currency: delta as
is, gamma / unit, vega, theta and rho x unit (gamma therefore at the resolution of 1e-9
per lot).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from derivex.core.records import CommandKind
from derivex.gateway.catalog import Catalog

__all__ = ["option_views"]

_RISK_ARRAY, _RISK_GREEKS = int(CommandKind.RISK_ARRAY), int(CommandKind.RISK_GREEKS)


def option_views(catalog: Catalog,
                 commands: np.ndarray) -> Iterator[tuple[int, float, dict[str, float]]]:
    """``(instrument, iv percent, greeks)`` of every RISK_ARRAY command in ``commands`` with
    a RISK_GREEKS leg, for instruments in ``catalog``. Cost O(commands); nothing unless the
    batch holds RISK_ARRAY commands."""
    kinds = commands["kind"]
    for header in np.flatnonzero(kinds == _RISK_ARRAY).tolist():
        if header + 1 >= len(commands) or int(kinds[header + 1]) != _RISK_GREEKS:
            continue
        instrument = int(commands["instrument"][header])
        spec = catalog.by_id.get(instrument)
        if spec is None or not spec.contract_value_units:
            continue
        leg = commands[header + 1]
        per_lot = 1e-9 / float(spec.contract_value_units)
        unit = float(spec.price_unit)
        yield instrument, round(int(commands["mark_iv_ppm"][header]) / 1e4, 2), {
            "delta": round(int(leg["delta_nano"]) * per_lot, 5),
            "gamma": round(int(leg["gamma_nano"]) * per_lot / unit, 8),
            "vega": round(int(leg["vega_nano"]) * per_lot * unit, 5),
            "theta": round(int(leg["theta_nano"]) * per_lot * unit, 5),
            "rho": round(int(leg["rho_nano"]) * per_lot * unit, 5)}
