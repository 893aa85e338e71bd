"""The record codec: structs derived from the dtypes pack exactly what numpy's field setters
write, event field bits decode exactly what numpy reads, and the one table of multi-record
commands agrees with what the engine consumes, the runtime holds back and the span kernel
counts."""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core import codec
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    Reason,
    command_array,
    event_array,
)
from derivex.runtime.frames import complete_prefix

PLACE_FIELDS = (
    "kind",
    "side",
    "order_type",
    "tif",
    "flags",
    "account",
    "instrument",
    "price_ticks",
    "qty_lots",
    "label",
)
TARGET_FIELDS = ("kind", "account", "instrument", "order_id", "price_ticks", "qty_lots")
ORPHANS = (Reason.ORPHAN_LEG, Reason.ORPHAN_QUOTE_LEG)


def _random_value(rng: np.random.Generator, scalar: np.dtype) -> int:
    info = np.iinfo(scalar)
    return int(rng.integers(info.min, info.max, dtype=np.int64 if info.min < 0 else np.uint64))


@pytest.mark.parametrize("names", [PLACE_FIELDS, TARGET_FIELDS, ("kind", "v4")])
def test_a_derived_struct_packs_what_the_field_setters_write(names) -> None:
    layout = codec.record_struct(COMMAND_DTYPE, names)
    at = codec.header_offset(COMMAND_DTYPE, names)
    assert at + layout.size == COMMAND_DTYPE.itemsize
    rng = np.random.default_rng(13)
    for _ in range(50):
        values = {n: _random_value(rng, COMMAND_DTYPE.fields[n][0]) for n in names}
        expected = command_array(1)
        for name, value in values.items():
            expected[name][0] = value
        packed = bytearray(COMMAND_DTYPE.itemsize)
        packed[:at] = b"\xff" * at  # the header the sequencer stamps is left alone
        layout.pack_into(packed, at, *(values[n] for n in sorted(names, key=_offset)))
        assert bytes(packed[at:]) == expected.tobytes()[at:]


def _offset(name: str) -> int:
    return COMMAND_DTYPE.fields[name][1]


def test_the_gateway_formats_are_the_ones_it_used_to_type_by_hand() -> None:
    assert codec.record_struct(COMMAND_DTYPE, PLACE_FIELDS).format == "<BBBBB3xII8xqqQ"
    assert codec.record_struct(COMMAND_DTYPE, TARGET_FIELDS).format == "<B7xIIQqq8x"


def test_aliased_fields_cannot_share_a_struct() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        codec.record_struct(COMMAND_DTYPE, ("qty_lots", "amount_units"))
    with pytest.raises(KeyError):
        codec.record_struct(COMMAND_DTYPE, ("no_such_field",))


def test_event_field_bits_decode_what_numpy_reads() -> None:
    rng = np.random.default_rng(7)
    events = event_array(64)
    events.view(np.uint8)[:] = rng.integers(0, 256, events.nbytes, dtype=np.uint8)
    rows = codec.event_rows(events)
    for name in EVENT_DTYPE.names:
        word, shift, mask = codec.field_bits(EVENT_DTYPE, name)
        decoded = [(row[word] >> shift) & mask for row in rows]
        if mask == -1:  # a 64-bit field: the signed word, numpy's view of the same bits
            expected = events[name].astype(np.int64).tolist()
        else:
            expected = events[name].tolist()
        assert decoded == expected, name


def _records(*kinds_and_counts: tuple[CommandKind, int]) -> np.ndarray:
    records = command_array(len(kinds_and_counts))
    for i, (kind, count) in enumerate(kinds_and_counts):
        records["kind"][i], records["count"][i] = kind, count
    records["seq"] = np.arange(1, len(records) + 1)
    return records


def _process(records: np.ndarray) -> np.ndarray:
    engine = Engine(EngineConfig(risk_checks=False))
    events = engine.process(records)
    return events


@pytest.mark.parametrize("header", list(codec.MULTI_RECORD))
def test_the_engine_consumes_a_header_and_its_count_legs_as_one_command(header) -> None:
    """Every leg kind of the table is taken with its header (no orphan reject, every event
    carries the header's seq), and alone it is an orphan: the engine's span kernels agree
    with the table."""
    legs = codec.MULTI_RECORD[header]
    records = _records((header, len(legs)), *((leg, 0) for leg in legs))
    assert codec.spans(records) == [len(records)]
    events = _process(records)
    assert len(events) and set(events["seq"].tolist()) == {1}
    assert not set(events["reason"].tolist()) & set(ORPHANS)
    for leg in legs:
        alone = _process(_records((leg, 0)))
        assert int(alone["reason"][0]) in ORPHANS


def test_no_other_command_kind_is_treated_as_a_leg() -> None:
    legs = {leg for kinds in codec.MULTI_RECORD.values() for leg in kinds}
    for kind in CommandKind:
        assert codec.HEADERS[kind] == (kind in codec.MULTI_RECORD)
        assert codec.LEGS[kind] == (kind in legs)
        if kind not in legs:
            events = _process(_records((kind, 0)))
            assert not set(events["reason"].tolist()) & set(ORPHANS), kind.name


def test_spans_count_each_command_once() -> None:
    records = _records(
        (CommandKind.PLACE_ORDER, 0),
        (CommandKind.MASS_QUOTE, 2),
        (CommandKind.QUOTE_LEG, 0),
        (CommandKind.QUOTE_LEG, 0),
        (CommandKind.INDEX, 0),  # no legs announced: one record
        (CommandKind.RISK_ARRAY, 3),  # legs beyond the end: clipped
        (CommandKind.RISK_GREEKS, 0),
    )
    assert codec.spans(records) == [1, 3, 1, 2]
    assert codec.ends_inside_multi_record(records)
    assert not codec.ends_inside_multi_record(records[:5])


@pytest.mark.parametrize("header", list(codec.MULTI_RECORD))
def test_the_runtime_holds_back_a_header_whose_legs_have_not_all_arrived(header) -> None:
    legs = codec.MULTI_RECORD[header]
    whole = _records((CommandKind.NOOP, 0), (header, 2), (legs[0], 0), (legs[-1], 0))
    assert complete_prefix(whole, 4) == (4, -1)
    assert complete_prefix(whole, 3) == (1, -1)
    assert complete_prefix(whole, 2) == (1, -1)
