"""Engine configuration: limits, gas weights and pool capacities.

The configuration is part of the state (it is hashed and journaled with it): two engines
agree on a log only if they agree on the configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
PARAM_COUNT = 18

MAX_FEE_PPM = 100_000


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
        for pool in ("orders", "levels", "accounts", "instruments", "positions",
                     "levels_per_side"):
            initial, maximum = getattr(self, f"initial_{pool}"), getattr(self, f"max_{pool}")
            if not 1 <= initial <= maximum:
                problems.append(f"initial_{pool} must be in [1, max_{pool}]")
        if self.max_orders >= (1 << 32) or self.max_positions >= (1 << 31):
            problems.append("order slots must fit 32 bits and position slots 31 bits")
        if self.initial_accounts < 4:
            problems.append("initial_accounts must leave room for the system accounts")
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))

    def params(self) -> np.ndarray:
        """The parameter vector the kernel reads (see the ``P_*`` indices)."""
        values = [
            self.max_order_lots, self.max_position_lots, self.max_price_ticks,
            self.max_balance_units, self.max_open_orders_per_account,
            self.max_orders_per_book, self.gas_base, self.gas_per_level, self.gas_per_fill,
            self.gas_max, self.gas_refill_per_ms, self.max_orders, self.max_levels,
            self.max_accounts, self.max_instruments, self.max_positions,
            self.max_levels_per_side, self.max_quote_legs,
        ]
        assert len(values) == PARAM_COUNT
        return np.array(values, dtype=np.int64)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
