"""The core is pure: it imports nothing that reads clocks, randomness, the environment,
files, the network or threads, and nothing from the shells around it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "src" / "derivex" / "core"
FORBIDDEN_MODULES = {
    "os",
    "sys",
    "time",
    "datetime",
    "random",
    "secrets",
    "socket",
    "threading",
    "multiprocessing",
    "asyncio",
    "logging",
    "subprocess",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "uuid",
}
FORBIDDEN_CALLS = {"open", "print", "input", "eval", "exec"}
ALLOWED_DERIVEX = "derivex.core"

pytestmark = pytest.mark.nojit


def core_files() -> list[Path]:
    files = sorted(CORE.glob("*.py"))
    assert len(files) > 10
    return files


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            top = name.split(".")[0]
            assert top not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            if top == "derivex":
                assert name.startswith(ALLOWED_DERIVEX), f"{path.name} imports shell {name}"
            if "random" in name:
                raise AssertionError(f"{path.name} imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name} calls {node.func.id}"
        if isinstance(node, ast.Attribute) and node.attr in {"random", "time_ns", "environ", "now"}:
            raise AssertionError(f"{path.name} uses .{node.attr}")


def test_no_relaxed_float_semantics() -> None:
    """Bit-identical replay needs strict IEEE semantics: no kernel may ask numba to relax
    them (the option's name is assembled so this file does not trip a text search)."""
    option = "fast" + "math"
    for path in core_files():
        assert option not in path.read_text(), f"{path.name} mentions {option}"


def test_scanner_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\n")
    with pytest.raises(AssertionError):
        test_core_module_is_pure(bad)
