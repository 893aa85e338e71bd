"""Record layouts and codes are a wire and journal format: sizes are fixed and codes are
never renumbered (every code and layout is frozen in tests/golden/records.json, checked by
tests/test_golden.py)."""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.records import (
    COMMAND_DTYPE,
    COMMAND_MUTATES,
    EVENT_DTYPE,
    CommandKind,
    Reason,
    command_array,
    concat_commands,
    reason_band,
)

pytestmark = pytest.mark.nojit


def test_record_sizes_and_byte_order() -> None:
    assert COMMAND_DTYPE.itemsize == 64 and EVENT_DTYPE.itemsize == 64
    for dtype in (COMMAND_DTYPE, EVENT_DTYPE):
        for name, (field, _offset) in dtype.fields.items():
            assert field.byteorder in ("<", "|", "="), name
            if field.itemsize > 1:
                assert field.str.startswith("<"), name


def test_reason_bands() -> None:
    assert reason_band(Reason.QTY_NOT_POSITIVE) == "validation"
    assert reason_band(Reason.INSUFFICIENT_FUNDS) == "risk"
    assert reason_band(Reason.POST_ONLY_WOULD_TAKE) == "matching"
    assert reason_band(Reason.BALANCE_LIMIT) == "account"
    assert reason_band(Reason.INSTRUMENT_HALTED) == "admin"
    assert reason_band(Reason.GAS_EXHAUSTED) == "capacity"
    assert len({int(r) for r in Reason}) == len(Reason)


def test_every_command_kind_has_a_mutation_flag() -> None:
    assert set(COMMAND_MUTATES) == set(CommandKind)
    assert COMMAND_MUTATES[CommandKind.NOOP] is False
    assert COMMAND_MUTATES[CommandKind.PLACE_ORDER] is True


def test_aliases_share_bytes_and_concat_keeps_layout() -> None:
    records = command_array(2)
    records["qty_lots"][0] = 12345
    assert records["amount_units"][0] == 12345
    joined = concat_commands([records, records[:1]])
    assert joined.dtype == COMMAND_DTYPE and len(joined) == 3
    assert np.array_equal(joined.view(np.uint8)[:128], records.view(np.uint8))
