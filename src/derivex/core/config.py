"""Engine configuration: limits, gas weights and pool capacities.

The configuration is part of the state (it is hashed and journaled with it): two engines
agree on a log only if they agree on the configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Indices into the int64 parameter vector handed to the kernel.
P_MAX_ORDER_LOTS = 0
P_MAX_POSITION_LOTS = 1
P_MAX_PRICE_TICKS = 2
P_MAX_BALANCE_UNITS = 3
P_MAX_OPEN_ORDERS_PER_ACCOUNT = 4
P_MAX_ORDERS_PER_BOOK = 5
P_GAS_BASE = 6
P_GAS_PER_LEVEL = 7
P_GAS_PER_FILL = 8
P_GAS_MAX = 9
P_GAS_REFILL_PER_MS = 10
P_MAX_ORDERS = 11
P_MAX_LEVELS = 12
P_MAX_ACCOUNTS = 13
P_MAX_INSTRUMENTS = 14
P_MAX_POSITIONS = 15
P_MAX_LEVELS_PER_SIDE = 16
P_MAX_QUOTE_LEGS = 17
P_RISK_CHECKS = 18
P_MAX_UNDERLYINGS = 19
P_INDEX_STALE_NS = 20
P_INDEX_OUTLIER_PPM = 21
P_INDEX_OUTLIER_DISCARD = 22
P_INDEX_MIN_SOURCES = 23
P_INDEX_HISTORY = 24
P_MARK_EMA_PPM = 25
P_MARK_BASIS_CLAMP_PPM = 26
P_MARKET_BAND_PPM = 27
P_PERP_IM_PPM = 28
P_PERP_MM_PPM = 29
P_PERP_TIER_UNITS = 30
P_PERP_TIER_IM_PPM = 31
P_PERP_TIER_MM_PPM = 32
P_OPTION_IM_PPM = 33
P_OPTION_IM_MIN_PPM = 34
P_OPTION_MM_PPM = 35
P_PM_MM_PPM = 36
P_PM_SHORT_OPTION_PPM = 37
P_FUNDING_MODE = 38
P_FUNDING_PERIOD_MS = 39
P_FUNDING_DEAD_BAND_PPB = 40
P_FUNDING_CAP_PPB = 41
P_FUNDING_INTEREST_PPB = 42
P_FUNDING_CLAMP_PPB = 43
P_EXPIRY_TWAP_MS = 44
P_LIQUIDATION_FEE_PPM = 45
P_LIQUIDATION_STEP_PPM = 46
P_ADL_MODE = 47
P_ADL_MAX_COUNTERPARTIES = 48
P_OPTION_BAND_PPM = 49
P_SCENARIOS = 50  # number of scenarios S
P_SCENARIO_BASE = 51  # S rows of (price move ppm, vol shock -1/0/+1, weight ppm) follow
PARAM_COUNT = 51  # fixed part; the vector is PARAM_COUNT + 3 * S long

FUNDING_CONTINUOUS = 0  # Deribit: accrued at every TIME command, dead-band and cap
FUNDING_INTERVAL = 1  # BitMEX/Binance: F = P + clamp(I - P) over each interval
ADL_RANKED = 0  # auto-deleverage opposite positions ranked by PnL% x leverage (BitMEX)
ADL_SOCIALISE = 1  # the fund takes everything; its deficit is spread over positive balances

MAX_FEE_PPM = 100_000
MAX_SCENARIOS = 64
MAX_INDEX_SOURCES = 32

Scenario = tuple[int, int, int]


def deribit_grid(
    price_range_ppm: int = 160_000,
    buckets: int = 4,
    extended_moves_ppm: tuple[int, ...] = (
        -660_000,
        -330_000,
        500_000,
        1_000_000,
        2_000_000,
        3_000_000,
        4_000_000,
        5_000_000,
    ),
    extended_weight_ppm: int = 350_000,
) -> tuple[Scenario, ...]:
    """Deribit-style portfolio-margin grid: ``2 * buckets + 1`` evenly spaced price moves over
    +/- ``price_range_ppm`` (zero included) x volatility down / same / up, then the extended
    moves with volatility up, counted at ``extended_weight_ppm`` (35%, SPAN's weight for its
    extreme scenarios, by default). Rows are ``(price move ppm, vol shock, weight ppm)``;
    the vol shock is -1 (down), 0 or +1 (up): its size is the pricing service's."""
    rows: list[Scenario] = []
    for k in range(-buckets, buckets + 1):
        move = price_range_ppm * k // buckets
        for vol in (-1, 0, 1):
            rows.append((move, vol, 1_000_000))
    for move in extended_moves_ppm:
        rows.append((move, 1, extended_weight_ppm))
    return tuple(rows)


def span_grid(
    price_scan_ppm: int = 160_000, extreme_multiple: int = 3, extreme_weight_ppm: int = 350_000
) -> tuple[Scenario, ...]:
    """CME-SPAN-style 16 scenarios: price 0, +/-1/3, +/-2/3, +/-3/3 of the scan range, each
    with volatility up and down (14), then +/- ``extreme_multiple`` x the range with
    volatility unchanged at ``extreme_weight_ppm``."""
    rows: list[Scenario] = []
    for third in (0, 1, -1, 2, -2, 3, -3):
        for vol in (1, -1):
            rows.append((price_scan_ppm * third // 3, vol, 1_000_000))
    rows.append((price_scan_ppm * extreme_multiple, 0, extreme_weight_ppm))
    rows.append((-price_scan_ppm * extreme_multiple, 0, extreme_weight_ppm))
    return tuple(rows)


@dataclass(frozen=True)
class EngineConfig:
    """Limits and capacities. ``max_*`` capacities are hard: beyond them commands are
    rejected with a capacity reason. ``initial_*`` capacities are what is allocated up
    front; pools double between batches as they fill, up to the maximum."""

    max_order_lots: int = 1 << 40
    max_position_lots: int = (1 << 31) - 1
    max_price_ticks: int = 1 << 40
    max_balance_units: int = 1 << 60
    max_open_orders_per_account: int = 10_000
    max_orders_per_book: int = 1_000_000
    gas_base: int = 10
    gas_per_level: int = 2
    gas_per_fill: int = 5
    gas_max: int = 1_000_000
    gas_refill_per_ms: int = 1_000
    max_orders: int = 1 << 24
    max_levels: int = 1 << 22
    max_accounts: int = 1 << 22
    max_instruments: int = 1 << 12
    max_positions: int = 1 << 24
    max_levels_per_side: int = 1 << 16
    max_quote_legs: int = 256
    initial_orders: int = 1 << 12
    initial_levels: int = 1 << 10
    initial_accounts: int = 1 << 8
    initial_instruments: int = 1 << 4
    initial_positions: int = 1 << 10
    initial_levels_per_side: int = 1 << 6
    # ---- risk (docs/risk.md) ----
    risk_checks: bool = True  # margin, index and mark checks; False = matching only
    max_underlyings: int = 16
    index_stale_ms: int = 30_000  # a source older than this is dropped
    index_outlier_ppm: int = 5_000  # sources beyond median +/- this are clamped/discarded
    index_outlier_discard: bool = False  # False: clamp to the band (Deribit); True: drop
    index_min_sources: int = 1
    index_history: int = 1024  # index updates kept per underlying (expiry TWAP)
    mark_ema_ppm: int = 200_000  # weight of the new basis in the perpetual basis EMA
    mark_basis_clamp_ppm: int = 10_000  # |perpetual basis| <= this x index
    # price band around the mark for every order (docs/risk.md, "Price band"), unless the
    # instrument sets its own: perpetuals, and options (whose premiums move much more)
    market_band_ppm: int = 50_000
    option_band_ppm: int = 1_000_000  # [one tick, 2 x mark]
    perp_im_ppm: int = 20_000
    perp_mm_ppm: int = 10_000
    perp_tier_units: int = 10_000_000_000_000  # risk-limit tier width (notional units)
    perp_tier_im_ppm: int = 5_000  # added to IM per full tier of notional
    perp_tier_mm_ppm: int = 5_000
    option_im_ppm: int = 150_000  # short option: max(15% - OTM, 10%) x underlying + mark
    option_im_min_ppm: int = 100_000
    option_mm_ppm: int = 75_000  # short option: 7.5% x underlying + mark
    pm_mm_ppm: int = 800_000  # portfolio margin: maintenance = 0.8 x initial
    pm_short_option_ppm: int = 10_000  # add-on per net short option lot, x underlying
    scenarios: tuple[Scenario, ...] = field(default_factory=deribit_grid)
    # ---- funding, expiry, liquidation (docs/liquidation.md) ----
    funding_mode: int = FUNDING_CONTINUOUS
    funding_period_ms: int = 8 * 3_600_000  # rates are quoted per period
    funding_dead_band_ppb: int = 250_000  # +/-0.025% (continuous mode)
    funding_cap_ppb: int = 5_000_000  # |rate| <= 0.5% per period
    funding_interest_ppb: int = 100_000  # I = 0.01% per period (interval mode)
    funding_clamp_ppb: int = 500_000  # clamp(I - P, +/-0.05%) (interval mode)
    expiry_twap_ms: int = 1_800_000  # settlement = TWAP of the index over the last 30 min
    liquidation_fee_ppm: int = 5_000  # of the notional closed through the book, to the fund
    liquidation_step_ppm: int = 250_000  # share of a position one liquidation round closes
    adl_mode: int = ADL_RANKED
    adl_max_counterparties: int = 16  # per position and round; the rest goes to the fund
    # ---- conditional orders (docs/conditional-orders.md) ----
    trigger_fire_cap: int = 64  # triggered orders placed per command; the rest wait in order
    initial_triggers: int = 1 << 6
    max_triggers: int = 1 << 20

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.max_position_lots < (1 << 31):
            problems.append("max_position_lots must be in [1, 2**31)")
        if not 1 <= self.max_order_lots <= (1 << 62):
            problems.append("max_order_lots must be in [1, 2**62]")
        if not 1 <= self.max_price_ticks <= (1 << 62):
            problems.append("max_price_ticks must be in [1, 2**62]")
        if not 1 <= self.max_balance_units <= (1 << 61):
            problems.append("max_balance_units must be in [1, 2**61]")
        if not 1 <= self.gas_max <= 1_000_000_000:
            problems.append("gas_max must be in [1, 1e9]")
        for name in ("gas_base", "gas_per_level", "gas_per_fill", "gas_refill_per_ms"):
            if not 0 <= getattr(self, name) <= self.gas_max:
                problems.append(f"{name} must be in [0, gas_max]")
        if self.max_quote_legs < 1 or self.max_quote_legs > 65535:
            problems.append("max_quote_legs must be in [1, 65535]")
        for pool in ("orders", "levels", "accounts", "instruments", "positions", "levels_per_side"):
            initial, maximum = getattr(self, f"initial_{pool}"), getattr(self, f"max_{pool}")
            if not 1 <= initial <= maximum:
                problems.append(f"initial_{pool} must be in [1, max_{pool}]")
        if self.max_orders >= (1 << 32) or self.max_positions >= (1 << 31):
            problems.append("order slots must fit 32 bits and position slots 31 bits")
        if self.initial_accounts < 4:
            problems.append("initial_accounts must leave room for the system accounts")
        if not 1 <= len(self.scenarios) <= MAX_SCENARIOS:
            problems.append(f"scenarios must have 1..{MAX_SCENARIOS} rows")
        for row in self.scenarios:
            if (
                len(row) != 3
                or not -1_000_000 <= row[0] <= 10_000_000
                or row[1] not in (-1, 0, 1)
                or not 0 <= row[2] <= 1_000_000
            ):
                problems.append(
                    f"bad scenario {row}: (move ppm in [-1e6, 1e7], vol in "
                    "-1/0/1, weight ppm in [0, 1e6])"
                )
                break
        if not 2 <= self.max_underlyings <= 1024:
            problems.append("max_underlyings must be in [2, 1024]")
        if not 1 <= self.index_min_sources <= MAX_INDEX_SOURCES:
            problems.append(f"index_min_sources must be in [1, {MAX_INDEX_SOURCES}]")
        if self.index_history < 2:
            problems.append("index_history must be >= 2")
        for name in (
            "index_outlier_ppm",
            "mark_ema_ppm",
            "mark_basis_clamp_ppm",
            "market_band_ppm",
            "option_band_ppm",
            "perp_im_ppm",
            "perp_mm_ppm",
            "perp_tier_im_ppm",
            "perp_tier_mm_ppm",
            "option_im_ppm",
            "option_im_min_ppm",
            "option_mm_ppm",
            "pm_mm_ppm",
            "pm_short_option_ppm",
        ):
            if not 0 <= getattr(self, name) <= 1_000_000:
                problems.append(f"{name} must be in [0, 1e6]")
        if self.perp_mm_ppm > self.perp_im_ppm or self.perp_tier_mm_ppm > self.perp_tier_im_ppm:
            problems.append("maintenance rates must not exceed initial rates")
        if self.perp_tier_units < 1 or self.index_stale_ms < 1:
            problems.append("perp_tier_units and index_stale_ms must be >= 1")
        if self.funding_mode not in (FUNDING_CONTINUOUS, FUNDING_INTERVAL):
            problems.append("funding_mode must be 0 (continuous) or 1 (interval)")
        if not 1 <= self.funding_period_ms < (1 << 31):
            problems.append("funding_period_ms must be in [1, 2**31)")
        for name in (
            "funding_dead_band_ppb",
            "funding_cap_ppb",
            "funding_interest_ppb",
            "funding_clamp_ppb",
        ):
            if not 0 <= getattr(self, name) <= 100_000_000:
                problems.append(f"{name} must be in [0, 1e8] (10%)")
        if not 1 <= self.expiry_twap_ms <= 86_400_000:
            problems.append("expiry_twap_ms must be in [1, 86400000]")
        if not 0 <= self.liquidation_fee_ppm <= 100_000:
            problems.append("liquidation_fee_ppm must be in [0, 1e5]")
        if not 1 <= self.liquidation_step_ppm <= 1_000_000:
            problems.append("liquidation_step_ppm must be in [1, 1e6]")
        if self.adl_mode not in (ADL_RANKED, ADL_SOCIALISE):
            problems.append("adl_mode must be 0 (ranked) or 1 (socialise)")
        if not 1 <= self.adl_max_counterparties <= 4096:
            problems.append("adl_max_counterparties must be in [1, 4096]")
        if not 1 <= self.trigger_fire_cap <= 1 << 20:
            problems.append("trigger_fire_cap must be in [1, 2**20]")
        if not 1 <= self.initial_triggers <= self.max_triggers <= 1 << 24:
            problems.append("initial_triggers must be in [1, max_triggers <= 2**24]")
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))

    def params(self) -> np.ndarray:
        """The parameter vector the kernel reads (see the ``P_*`` indices)."""
        values = [
            self.max_order_lots,
            self.max_position_lots,
            self.max_price_ticks,
            self.max_balance_units,
            self.max_open_orders_per_account,
            self.max_orders_per_book,
            self.gas_base,
            self.gas_per_level,
            self.gas_per_fill,
            self.gas_max,
            self.gas_refill_per_ms,
            self.max_orders,
            self.max_levels,
            self.max_accounts,
            self.max_instruments,
            self.max_positions,
            self.max_levels_per_side,
            self.max_quote_legs,
            int(self.risk_checks),
            self.max_underlyings,
            self.index_stale_ms * 1_000_000,
            self.index_outlier_ppm,
            int(self.index_outlier_discard),
            self.index_min_sources,
            self.index_history,
            self.mark_ema_ppm,
            self.mark_basis_clamp_ppm,
            self.market_band_ppm,
            self.perp_im_ppm,
            self.perp_mm_ppm,
            self.perp_tier_units,
            self.perp_tier_im_ppm,
            self.perp_tier_mm_ppm,
            self.option_im_ppm,
            self.option_im_min_ppm,
            self.option_mm_ppm,
            self.pm_mm_ppm,
            self.pm_short_option_ppm,
            self.funding_mode,
            self.funding_period_ms,
            self.funding_dead_band_ppb,
            self.funding_cap_ppb,
            self.funding_interest_ppb,
            self.funding_clamp_ppb,
            self.expiry_twap_ms,
            self.liquidation_fee_ppm,
            self.liquidation_step_ppm,
            self.adl_mode,
            self.adl_max_counterparties,
            self.option_band_ppm,
            len(self.scenarios),
        ]
        assert len(values) == PARAM_COUNT
        for row in self.scenarios:
            values.extend(int(v) for v in row)
        return np.array(values, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        """Inverse of ``to_dict`` (JSON turns the scenario tuples into lists)."""
        values = dict(data)
        if "scenarios" in values:
            values["scenarios"] = tuple(tuple(int(v) for v in row) for row in values["scenarios"])
        return cls(**values)
