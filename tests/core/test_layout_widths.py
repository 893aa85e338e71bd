"""Column groups index arrays of their own width: ``Order8`` columns index an int64 array
(``ord_i8``), ``Order4`` columns an int32 one (``ord_i4``), and each pool's array takes only
its own group. A scan of core/'s syntax trees, so a mix-up fails here, not as a silently
wrong read (both widths have a column 0)."""

from __future__ import annotations

import ast
from enum import IntEnum
from pathlib import Path

import pytest

from derivex.core import layout

CORE = Path(__file__).resolve().parents[2] / "src" / "derivex" / "core"

pytestmark = pytest.mark.nojit

GROUPS: dict[str, type[IntEnum]] = {
    name: value
    for name, value in vars(layout).items()
    if isinstance(value, type) and issubclass(value, IntEnum) and value is not IntEnum
}

# the State arrays each group belongs to (a 2-D pool's columns, or a vector's entries)
ARRAY_GROUP = {
    "counters": "Counter",
    "acc_i8": "Account8",
    "acc_i4": "Account4",
    "acc_risk": "Risk8",
    "ins_i8": "Ins8",
    "ins_i4": "Ins4",
    "und_i8": "Und8",
    "pos_i8": "Pos8",
    "pos_i4": "Pos4",
    "ord_i8": "Order8",
    "ord_i4": "Order4",
    "lvl_i8": "Level8",
    "lvl_i4": "Level4",
}


def _array_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _groups_in(index: ast.expr) -> list[str]:
    """The column groups named in a subscript's index (``a[slot, Order8.QTY_LOTS]``)."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    return [
        part.value.id
        for part in parts
        if isinstance(part, ast.Attribute)
        and isinstance(part.value, ast.Name)
        and part.value.id in GROUPS
    ]


def width_errors(source: str, filename: str = "<source>") -> list[str]:
    """Every subscript in ``source`` whose column group does not fit the array: a group of
    the other width on an ``*_i8`` / ``*_i4`` array, or another pool's group on a State
    array. O(size of the source)."""
    errors = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Subscript):
            continue
        array = _array_name(node.value)
        if array is None:
            continue
        for group in _groups_in(node.slice):
            where = f"{filename}:{node.lineno}: {array}[..., {group}...]"
            expected = ARRAY_GROUP.get(array)
            if expected is not None and group != expected:
                errors.append(f"{where}: {array} takes {expected} columns")
            elif array.endswith("i8") and group.endswith("4"):
                errors.append(f"{where}: an int32 column group on an int64 array")
            elif array.endswith("i4") and group.endswith("8"):
                errors.append(f"{where}: an int64 column group on an int32 array")
    return errors


def test_groups_are_width_typed_and_the_old_flat_names_are_gone() -> None:
    for name in GROUPS:
        if name in ("Counter", "ScenarioBlock"):
            continue  # a vector's entries / column blocks: no width of their own
        assert name[-1] in "48", name
    assert set(ARRAY_GROUP.values()) <= set(GROUPS)
    # the old flat names are gone (the layout is private: no shell needs them)
    for old in ("S_QTY", "I_KIND", "O_QTY", "FLAT_NAMES"):
        with pytest.raises(AttributeError):
            getattr(layout, old)


def test_checker_catches_mixed_widths() -> None:
    bad = (
        "x = st.ord_i8[slot, Order4.NEXT]\n"
        "y = st.pos_i4[p, Pos8.QTY]\n"
        "z = st.ins_i8[i, Pos8.QTY]\n"
        "w = ins_i4[i, Ins8.STRIKE]\n"
    )
    assert len(width_errors(bad)) == 4
    good = "x = st.ord_i8[slot, Order8.QTY_LOTS]\ny = st.ins_i4[i, Ins4.KIND]\n"
    assert width_errors(good) == []


def test_core_indexes_each_array_with_its_own_group() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) > 10
    errors: list[str] = []
    uses = 0
    for path in files:
        source = path.read_text()
        errors += width_errors(source, path.name)
        uses += sum(source.count(f"{group}.") for group in GROUPS)
    assert errors == []
    assert uses > 400  # the kernels do use the groups (this scan is not vacuous)
