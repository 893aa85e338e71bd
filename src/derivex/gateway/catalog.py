"""The instrument catalogue: names, units and Deribit's instrument objects.

The engine knows instruments by id with integer ticks and lots; clients speak Deribit's
decimal prices (USDC) and amounts (base currency). An ``InstrumentSpec`` carries the two
scales that convert between them: ``price_unit`` (USDC per engine price tick) and
``lot_size`` (base currency per engine lot). A price or amount the client sends is read by
``numbers.units`` (a bounded grammar, exact integer arithmetic on the units' integer
ratios): it is either an exact multiple of the unit within int64, or rejected.

Instrument names are shell metadata (not journaled), so the catalogue is saved beside the
journal (``instruments.json``) and read back on recovery.

>>> spec = InstrumentSpec(0, "BTC_USDC-PERPETUAL", "perpetual", "BTC", Decimal("0.01"),
...                       Decimal("0.0001"), tick_size_ticks=50, min_trade_lots=1)
>>> spec.to_ticks("60000.5"), spec.to_lots("0.25"), spec.price(6_000_050), spec.amount(2500)
(6000050, 2500, 60000.5, 0.25)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from derivex.gateway.errors import (
    INVALID_AMOUNT,
    INVALID_INSTRUMENT,
    PRICE_WRONG_TICK,
    RpcError,
)
from derivex.gateway.numbers import units

PERPETUAL_EXPIRY_MS = 32_503_708_800_000  # Deribit's expiration_timestamp of perpetuals
COLLATERAL = "USDC"
UNITS_PER_USDC = 1_000_000


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument as the gateway presents it. ``contract_value_units`` (engine) equals
    ``price_unit * lot_size * UNITS_PER_USDC``."""

    instrument: int
    name: str
    kind: str  # "perpetual" | "option"
    base: str
    price_unit: Decimal
    lot_size: Decimal
    tick_size_ticks: int = 1
    min_trade_lots: int = 1
    expiry_ms: int = 0
    strike: Decimal = Decimal(0)
    option_type: str = ""  # "call" | "put"
    maker_fee_ppm: int = 0
    taker_fee_ppm: int = 0
    created_ms: int = 0

    def __post_init__(self) -> None:
        # exact integer ratios of the units, for ``price``/``amount`` (not fields)
        object.__setattr__(self, "_price_ratio", self.price_unit.as_integer_ratio())
        object.__setattr__(self, "_lot_ratio", self.lot_size.as_integer_ratio())
        # ``plain_ticks`` / ``plain_lots`` memos (not fields)
        object.__setattr__(self, "_ticks", {})
        object.__setattr__(self, "_lots", {})

    @property
    def contract_value_units(self) -> int:
        value = self.price_unit * self.lot_size * UNITS_PER_USDC
        if value != int(value) or value < 1:
            raise ValueError(f"{self.name}: price_unit x lot_size is not whole collateral units")
        return int(value)

    @property
    def price_decimals(self) -> int:
        return max(0, -int(self.price_unit.as_tuple().exponent))

    def to_ticks(self, price: Any, param: str = "price") -> int:
        """Client price -> engine ticks; must be a number of the gateway's grammar
        (``numbers``: -32602 otherwise, or outside int64) and a whole number of price units
        (10043 otherwise; the engine checks the tick size). Cost: O(len(price)); cached:
        clients send the same few prices again and again."""
        return _whole(
            price,
            self._price_ratio,  # type: ignore[attr-defined]
            param,
            PRICE_WRONG_TICK,
            "price_wrong_tick",
        )

    def to_lots(self, amount: Any, param: str = "amount") -> int:
        """Client amount (base currency) -> engine lots; as ``to_ticks``, 10021 if not a
        whole number of lots."""
        return _whole(
            amount,
            self._lot_ratio,  # type: ignore[attr-defined]
            param,
            INVALID_AMOUNT,
            "invalid_amount",
        )

    def plain_ticks(self, price: str | int | float) -> int:
        """``to_ticks(price)`` of a ``str``, ``int`` or ``float`` (not ``bool``) price,
        memoised per instrument in a plain dict: a look-up is a third of
        ``to_ticks``'s (whose cache key has seven parts). Equal keys convert alike
        (``60000 == 60000.0``, both exactly 60000); rejects are not memoised."""
        ticks = self._ticks.get(price)  # type: ignore[attr-defined]
        if ticks is None:
            ticks = self.to_ticks(price)
            if len(self._ticks) < _PLAIN_MEMO:  # type: ignore[attr-defined]
                self._ticks[price] = ticks  # type: ignore[attr-defined]
        return ticks  # type: ignore[no-any-return]

    def plain_lots(self, amount: str | int | float) -> int:
        """``to_lots(amount)`` as ``plain_ticks`` does ``to_ticks``."""
        lots = self._lots.get(amount)  # type: ignore[attr-defined]
        if lots is None:
            lots = self.to_lots(amount)
            if len(self._lots) < _PLAIN_MEMO:  # type: ignore[attr-defined]
                self._lots[amount] = lots  # type: ignore[attr-defined]
        return lots  # type: ignore[no-any-return]

    def price(self, ticks: int) -> float:
        """Engine ticks -> the price as a float: ``float(ticks * price_unit)``, computed as
        an integer ratio (Python's ``int / int`` is correctly rounded, so the result is the
        same float, without a decimal multiplication)."""
        numerator, denominator = self._price_ratio  # type: ignore[attr-defined]
        return ticks * numerator / denominator

    def amount(self, lots: int) -> float:
        """Engine lots -> the amount in base currency (as ``price``)."""
        numerator, denominator = self._lot_ratio  # type: ignore[attr-defined]
        return lots * numerator / denominator

    def value(self, units: int) -> float:
        """Collateral atomic units -> USDC."""
        return units / UNITS_PER_USDC

    def deribit(self, active: bool = True) -> dict[str, Any]:
        """The ``public/get_instruments`` object (the fields ccxt reads, and the usual
        others)."""
        tick = float(self.tick_size_ticks * self.price_unit)
        obj: dict[str, Any] = {
            "instrument_name": self.name,
            "instrument_id": self.instrument,
            "kind": "future" if self.kind == "perpetual" else "option",
            "instrument_type": "linear",
            "base_currency": self.base,
            "counter_currency": COLLATERAL,
            "quote_currency": COLLATERAL,
            "settlement_currency": COLLATERAL,
            "price_index": f"{self.base.lower()}_usdc",
            "settlement_period": "perpetual" if self.kind == "perpetual" else "week",
            "expiration_timestamp": self.expiry_ms
            if self.kind == "option"
            else PERPETUAL_EXPIRY_MS,
            "creation_timestamp": self.created_ms,
            "tick_size": tick,
            "tick_size_steps": [],
            "min_trade_amount": self.amount(self.min_trade_lots),
            "contract_size": 1.0,  # amounts are in the base currency
            "is_active": active,
            "maker_commission": self.maker_fee_ppm / 1e6,
            "taker_commission": self.taker_fee_ppm / 1e6,
            "block_trade_commission": self.taker_fee_ppm / 1e6,
            "rfq": False,
        }
        if self.kind == "option":
            obj["strike"] = float(self.strike)
            obj["option_type"] = self.option_type
        else:
            obj["max_leverage"] = 50
        return obj

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("price_unit", "lot_size", "strike"):
            data[key] = str(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstrumentSpec:
        values = dict(data)
        for key in ("price_unit", "lot_size", "strike"):
            values[key] = Decimal(values[key])
        return cls(**values)


_PLAIN_MEMO = 4096  # prices / amounts memoised per instrument by plain_ticks / plain_lots


# typed: ``True`` must not hit the entry of ``1`` (it is rejected, ``1`` is not)
@lru_cache(maxsize=4096, typed=True)
def _whole(
    value: Any, unit: tuple[int, int], param: str, inexact: int, inexact_message: str
) -> int:
    """``value`` in ``unit``s (an integer ratio), by ``numbers.units``: the bounded
    grammar, -32602 outside it or int64, ``inexact`` if not a whole number of units."""
    return units(value, unit[0], unit[1], param, inexact, inexact_message)


def option_name(base: str, expiry_ms: int, strike: Decimal, option_type: str) -> str:
    """Deribit's option name: ``BTC_USDC-27DEC26-100000-C`` (day not zero-padded; a
    fractional strike writes its point as ``d``)."""
    expiry = datetime.fromtimestamp(expiry_ms / 1000, tz=UTC)
    text = f"{strike:f}".rstrip("0").rstrip(".") if "." in f"{strike:f}" else f"{strike:f}"
    return (
        f"{base}_{COLLATERAL}-{expiry.day}{expiry.strftime('%b').upper()}"
        f"{expiry.strftime('%y')}-{text.replace('.', 'd')}-{option_type[0].upper()}"
    )


class Catalog:
    """Instruments by name and by engine id."""

    def __init__(self, specs: list[InstrumentSpec] | None = None) -> None:
        self.by_name: dict[str, InstrumentSpec] = {}
        self.by_id: dict[int, InstrumentSpec] = {}
        # ``shapes.order``'s per-kind templates of the order object
        self.order_templates: dict[tuple[Any, ...], dict[str, Any]] = {}
        for spec in specs or []:
            self.add(spec)

    def add(self, spec: InstrumentSpec) -> None:
        if spec.name in self.by_name or spec.instrument in self.by_id:
            raise ValueError(f"instrument {spec.name} ({spec.instrument}) already listed")
        self.by_name[spec.name] = spec
        self.by_id[spec.instrument] = spec

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self.by_id.values(), key=lambda s: s.instrument))

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, name: Any) -> InstrumentSpec:
        """The instrument named ``name``; ``RpcError`` 10020 if there is none."""
        spec = self.by_name.get(name) if isinstance(name, str) else None
        if spec is None:
            raise RpcError(
                INVALID_INSTRUMENT,
                "invalid_or_unsupported_instrument",
                {"param": "instrument_name"},
            )
        return spec

    def currencies(self) -> list[str]:
        """Every base currency, then the collateral."""
        bases = sorted({spec.base for spec in self.by_id.values()})
        return [*bases, COLLATERAL]

    def matching(self, currency: str | None, kind: str | None = None) -> list[InstrumentSpec]:
        """Instruments of a currency (its base or the collateral; None or ``any``: all) and
        of a Deribit kind (``future`` / ``option``; None or ``any``: all)."""
        wanted = None if currency in (None, "", "any") else str(currency).upper()
        result = []
        for spec in self:
            if wanted is not None and wanted not in (spec.base, COLLATERAL):
                continue
            deribit_kind = "future" if spec.kind == "perpetual" else "option"
            if kind not in (None, "", "any") and kind != deribit_kind:
                continue
            result.append(spec)
        return result

    def save(self, path: Path) -> None:
        path.write_text(json.dumps([spec.to_json() for spec in self], indent=1))

    @classmethod
    def load(cls, path: Path) -> Catalog:
        return cls([InstrumentSpec.from_json(item) for item in json.loads(path.read_text())])
