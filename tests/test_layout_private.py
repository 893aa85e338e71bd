"""The state layout and the record layouts are private to the core: no shell module imports
``derivex.core.layout`` (in any form) and none encodes a record with a hand-typed
``struct`` format. Shells read state through ``core.query`` and records through
``core.codec``. The only literal struct formats left in the shells are the file and wire
formats listed below, none of them a command or event record."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "derivex"
CORE = PACKAGE / "core"
LAYOUT = "derivex.core.layout"
STRUCT_CALLS = {"Struct", "pack", "pack_into", "unpack", "unpack_from", "iter_unpack", "calcsize"}
#: (module, format) -> why it is not a record: formats of files and wire protocols
ALLOWED_FORMATS = {
    ("gateway/signatures.py", "<QQQ"): "a slot of the shared signatures table",
    ("gateway/signatures.py", "<QQ"): "the first 16 bytes of a signature, as two words",
    ("gateway/connection.py", "!BBH"): "WebSocket frame header, 16-bit length (RFC 6455)",
    ("gateway/connection.py", "!BBQ"): "WebSocket frame header, 64-bit length (RFC 6455)",
    ("journal/verify.py", "<BIiiqiI"): "state root account leaf head (docs/journal.md)",
    ("journal/verify.py", "<Iqqqqi"): "state root position entry (docs/journal.md)",
    ("journal/verify.py", "<Q"): "state root proof: account / instrument counts",
    ("journal/leaves.py", "<BII"): "state root globals leaf head (docs/journal.md)",
    ("journal/leaves.py", "<3Q"): "state root globals leaf: the next order ids",
    ("journal/writer.py", "<Q"): "the journal's durable-seq word",
    ("journal/format.py", "<4sHHQIIQ16x16s"): "journal batch header (docs/journal.md)",
    ("journal/snapshot.py", "<8sIIQQQII16s"): "snapshot file preamble (docs/journal.md)",
}

pytestmark = pytest.mark.nojit


def shell_files() -> list[Path]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if CORE not in p.parents)
    assert len(files) > 50
    return files


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layout_imports(path: Path, source: str) -> list[str]:
    """The imports of ``derivex.core.layout`` in ``source`` (absolute or relative, whole
    module or names from it), and string mentions of it (``importlib``)."""
    found = []
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if (a.name + ".").startswith(LAYOUT + ".")]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if (module + ".").startswith(LAYOUT + "."):
                found.append(module)
            elif module == "derivex.core" and any(a.name == "layout" for a in node.names):
                found.append(f"{module}.layout")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(LAYOUT)
        ):
            found.append(node.value)
    return found


def struct_formats(source: str) -> list[str]:
    """Literal formats passed to ``struct`` functions (``struct.X(...)`` or a name
    imported from ``struct``)."""
    tree = ast.parse(source)
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "struct"
        for alias in node.names
    }
    formats = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        named = isinstance(func, ast.Name) and func.id in imported
        attribute = (
            isinstance(func, ast.Attribute)
            and func.attr in STRUCT_CALLS
            and isinstance(func.value, ast.Name)
            and func.value.id == "struct"
        )
        first = node.args[0]
        if (named or attribute) and isinstance(first, ast.Constant):
            formats.append(str(first.value))
    return formats


@pytest.mark.parametrize("path", shell_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_shell_module_keeps_off_the_core_layouts(path: Path) -> None:
    source = path.read_text()
    assert not layout_imports(path, source), f"{path.name} imports the core's state layout"
    where = path.relative_to(PACKAGE).as_posix()
    for fmt in struct_formats(source):
        assert (where, fmt) in ALLOWED_FORMATS, (
            f"{where} encodes {fmt!r} by hand: records go through derivex.core.codec"
        )


@pytest.mark.parametrize(
    "source",
    [
        "from derivex.core import layout as L\n",
        "from derivex.core import config, layout\n",
        "from derivex.core.layout import NIL\n",
        "import derivex.core.layout\n",
        "import derivex.core.layout as L\n",
        "from ..core import layout\n",
        "from ..core.layout import O_QTY\n",
        "importlib.import_module('derivex.core.layout')\n",
    ],
)
def test_every_form_of_the_import_is_caught(source: str) -> None:
    assert layout_imports(PACKAGE / "gateway" / "example.py", source)


def test_unrelated_imports_pass() -> None:
    path = PACKAGE / "gateway" / "example.py"
    assert not layout_imports(path, "from derivex.core import query\nfrom .layout import x\n")
    assert not layout_imports(path, "from derivex.core.layouts import x\n")


def test_hand_typed_record_structs_are_caught() -> None:
    source = 'import struct\nP = struct.Struct("<BBBBB3xII8xqqQ")\nfrom struct import pack\n'
    source += 'pack("<B7xIIQqq8x", 1)\n'
    assert struct_formats(source) == ["<BBBBB3xII8xqqQ", "<B7xIIQqq8x"]
    assert ("gateway/venue.py", "<BBBBB3xII8xqqQ") not in ALLOWED_FORMATS
