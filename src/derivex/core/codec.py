"""The record codec: packing commands, decoding event rows, and which commands span several
records — all derived from the dtypes of ``core/records.py``, never typed by hand.

* ``record_struct(dtype, names)``: a ``struct.Struct`` packing the named fields of a record
  (in offset order, zero bytes between and after them up to the record's end), built from
  the dtype's offsets and formats. One ``pack_into`` per record is what the gateway's hot
  path uses (numpy's per-field setters cost about a microsecond each).
* ``field_bits(dtype, name)``: where a field sits in a record viewed as eight int64 words
  (``(word, shift, mask)``), for walks over ``records.view(np.int64)`` rows: the event
  projection decodes with these, ``runtime/frames.py`` reads command kinds and counts.
* ``MULTI_RECORD``: the one table of multi-record commands (header kind -> its leg kinds;
  the header's ``count`` says how many legs follow), with ``HEADERS`` / ``LEGS`` lookup
  arrays and one span kernel, ``command_span``. The engine's own span kernels
  (``quotes.mass_quote_span``, ``risk.leg_span``) are checked against it by
  tests/core/test_codec.py; the runtime's frame reassembly and the journal walker use it.

>>> from derivex.core.records import COMMAND_DTYPE, EVENT_DTYPE
>>> place = record_struct(COMMAND_DTYPE, ("kind", "account", "price_ticks"))
>>> place.format, place.size  # from byte 16 (kind) to the end of the record
('<B7xI12xq16x', 48)
>>> field_bits(EVENT_DTYPE, "reason")  # word 1, bits 32..47
(1, 32, 65535)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from derivex.core.jit import kernel
from derivex.core.records import COMMAND_DTYPE, RECORD_BYTES, CommandKind

__all__ = [
    "COMMAND_COUNT",
    "COMMAND_KIND",
    "COUNT_BYTES",
    "COUNT_OFFSET",
    "HEADERS",
    "KIND_OFFSET",
    "LEGS",
    "MULTI_RECORD",
    "command_span",
    "ends_inside_multi_record",
    "event_rows",
    "field_bits",
    "header_offset",
    "record_struct",
    "spans",
]

WORDS = RECORD_BYTES // 8

# numpy scalar kinds -> struct codes (little-endian, standard sizes)
_STRUCT_CODES = {
    ("u", 1): "B",
    ("u", 2): "H",
    ("u", 4): "I",
    ("u", 8): "Q",
    ("i", 1): "b",
    ("i", 2): "h",
    ("i", 4): "i",
    ("i", 8): "q",
}


def _field(dtype: np.dtype, name: str) -> tuple[int, np.dtype]:
    """``(offset, scalar dtype)`` of a field; KeyError names the field."""
    if dtype.fields is None or name not in dtype.fields:
        raise KeyError(f"no field {name!r} in the record dtype")
    scalar, offset = dtype.fields[name][:2]
    return int(offset), scalar


def record_struct(dtype: np.dtype, names: Sequence[str], start: int | None = None) -> struct.Struct:
    """A ``struct.Struct`` for the fields ``names`` of ``dtype`` records, packed from
    ``start`` (default: the first field's offset) to the record's end, fields in offset
    order with zero padding in between. Pack it into a record buffer at offset ``start``
    (``header_offset``). Raises ValueError for overlapping (aliased) fields or a field
    before ``start``. Cost: built once; ``pack_into`` is one C call per record."""
    placed = sorted(((*_field(dtype, name), name) for name in names), key=lambda f: f[0])
    at = placed[0][0] if start is None else start
    codes = ["<"]
    for offset, scalar, name in placed:
        if offset < at:
            raise ValueError(f"field {name!r} overlaps the one before it or precedes start")
        if offset > at:
            codes.append(f"{offset - at}x")
        codes.append(_STRUCT_CODES[(scalar.kind, scalar.itemsize)])
        at = offset + scalar.itemsize
    if at < dtype.itemsize:
        codes.append(f"{dtype.itemsize - at}x")
    return struct.Struct("".join(codes))


def header_offset(dtype: np.dtype, names: Sequence[str]) -> int:
    """Byte offset at which ``record_struct(dtype, names)`` (default start) packs."""
    return min(_field(dtype, name)[0] for name in names)


def field_bits(dtype: np.dtype, name: str) -> tuple[int, int, int]:
    """``(word, shift, mask)``: the field is ``(row[word] >> shift) & mask`` in a record
    viewed as little-endian int64 words (signed 64-bit fields: ``row[word]`` itself, mask
    -1). Raises ValueError for a field straddling two words."""
    offset, scalar = _field(dtype, name)
    word, byte = divmod(offset, 8)
    if byte + scalar.itemsize > 8:
        raise ValueError(f"field {name!r} straddles two words")
    mask = -1 if scalar.itemsize == 8 else (1 << (8 * scalar.itemsize)) - 1
    return word, 8 * byte, mask


def event_rows(events: np.ndarray) -> list[list[int]]:
    """Event records as lists of their eight int64 words (``field_bits`` decodes them): one
    ``tolist`` call, no per-field numpy access. Cost O(events)."""
    return events.view(np.int64).reshape(-1, WORDS).tolist()


# ---- multi-record commands ----

#: header kind -> the kinds of its legs; the header's ``count`` legs follow it in the same
#: batch (a mass quote: QUOTE_LEGs; an index: INDEX_SOURCEs; a risk array: one RISK_GREEKS,
#: then RISK_VALUES)
MULTI_RECORD: dict[CommandKind, tuple[CommandKind, ...]] = {
    CommandKind.MASS_QUOTE: (CommandKind.QUOTE_LEG,),
    CommandKind.INDEX: (CommandKind.INDEX_SOURCE,),
    CommandKind.RISK_ARRAY: (CommandKind.RISK_GREEKS, CommandKind.RISK_VALUES),
    CommandKind.PLACE_LINKED: (CommandKind.LINKED_ORDER, CommandKind.LINKED_TRIGGER),
}
HEADERS = np.zeros(256, dtype=np.bool_)  # by command kind code: a multi-record header
LEGS = np.zeros(256, dtype=np.bool_)  # by command kind code: a leg of one
for _header, _legs in MULTI_RECORD.items():
    HEADERS[int(_header)] = True
    for _leg in _legs:
        LEGS[int(_leg)] = True
HEADERS.flags.writeable = False
LEGS.flags.writeable = False

#: where a command's kind and leg count sit (``(word, shift, mask)``)
COMMAND_KIND = field_bits(COMMAND_DTYPE, "kind")
COMMAND_COUNT = field_bits(COMMAND_DTYPE, "count")
_KIND_WORD, _KIND_SHIFT, _KIND_MASK = COMMAND_KIND
_COUNT_WORD, _COUNT_SHIFT, _COUNT_MASK = COMMAND_COUNT
#: byte offsets of the kind and the count in a command record (for byte-level walks)
KIND_OFFSET = _field(COMMAND_DTYPE, "kind")[0]
COUNT_OFFSET = _field(COMMAND_DTYPE, "count")[0]
COUNT_BYTES = _field(COMMAND_DTYPE, "count")[1].itemsize


@kernel
def command_span(words, i, headers):
    """Records the command at ``i`` declares it occupies: 1 + its ``count`` for a
    multi-record header (``headers[kind]``: pass ``HEADERS``) with count >= 1, else 1.
    ``words``: the command records viewed as int64[n, 8]. The legs may not all be there:
    compare with the records available (the engine rejects a header whose legs are
    missing or of the wrong kind). O(1)."""
    word = words[i, _KIND_WORD]
    if not headers[(word >> _KIND_SHIFT) & _KIND_MASK]:
        return 1
    count = (words[i, _COUNT_WORD] >> _COUNT_SHIFT) & _COUNT_MASK
    return 1 + count if count >= 1 else 1


def spans(commands: np.ndarray) -> list[int]:
    """``command_span`` of every command start in ``commands`` (header + legs counted
    once, a declared span clipped to the records there), in order. O(n)."""
    words = commands.view(np.int64).reshape(-1, WORDS)
    out, i, n = [], 0, len(commands)
    while i < n:
        span = min(int(command_span(words, np.int64(i), HEADERS)), n - i)
        out.append(span)
        i += span
    return out


def ends_inside_multi_record(commands: np.ndarray) -> bool:
    """Whether a multi-record header in ``commands`` announces legs beyond its end (the
    command continues in a later batch, or never arrives). O(n), vectorised."""
    heads = np.flatnonzero(HEADERS[commands["kind"]])
    if not len(heads):
        return False
    counts = commands["count"][heads].astype(np.int64)
    return bool(np.any((counts >= 1) & (heads + counts >= len(commands))))
