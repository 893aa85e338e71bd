"""The record formats as plain data, keyed by numeric code: what tests/golden/records.json
freezes. Shared by tests/test_golden.py (compares) and scripts/golden.py (writes).

Codes and field layouts are the wire and journal format; Python names of commands and events
are not (issue 13 renames them), so the golden test keys everything by code and checks only
that a frozen name never comes to mean another code.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from derivex.core import records

#: enums whose values travel in records (field they appear in: see records.py)
VALUE_ENUMS = (
    "Side",
    "OrderType",
    "TimeInForce",
    "OrderFlag",
    "InstrumentSetting",
    "SelfTradePrevention",
    "SelfTradeScope",
    "InstrumentKind",
    "OptionType",
    "InstrumentStatus",
    "Underlying",
    "MarginMode",
    "AccountState",
    "LiquidationStage",
    "IndexStatus",
    "SystemAccount",
    "Liquidity",
)


def dtype_layout(dtype: np.dtype) -> list[list[Any]]:
    """``[name, numpy format string, byte offset]`` of every field, ordered by offset then
    name (aliases share offsets)."""
    fields = [
        [name, field.str, int(offset)]
        for name, (field, offset, *_title) in dtype.fields.items()  # type: ignore[union-attr]
    ]
    return sorted(fields, key=lambda row: (row[2], row[0]))


def _codes(enum: type[IntEnum]) -> dict[str, str]:
    return {str(int(member)): member.name for member in enum}


def describe() -> dict[str, Any]:
    """Every command kind (name, mutation flag, payload fields), event kind, reason (name,
    band), value enum and both record layouts, as JSON-ready data keyed by numeric code."""
    return {
        "record_bytes": records.RECORD_BYTES,
        "risk_values_per_leg": records.RISK_VALUES_PER_LEG,
        "command_layout": dtype_layout(records.COMMAND_DTYPE),
        "event_layout": dtype_layout(records.EVENT_DTYPE),
        "commands": {
            str(int(kind)): {
                "name": kind.name,
                "mutates": records.COMMAND_MUTATES[kind],
                "fields": list(records.COMMAND_FIELDS[kind]),
            }
            for kind in records.CommandKind
        },
        "events": _codes(records.EventKind),
        "reasons": {
            str(int(reason)): {"name": reason.name, "band": records.reason_band(reason)}
            for reason in records.Reason
        },
        "enums": {name: _codes(getattr(records, name)) for name in VALUE_ENUMS},
    }
