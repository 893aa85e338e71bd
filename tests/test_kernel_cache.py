"""Kernel caches are keyed by every package source: an edit to a helper module (whose
callers numba would not re-validate) moves the whole cache to a new directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import derivex


def test_cache_dir_changes_when_any_kernel_source_changes(tmp_path: Path) -> None:
    package = tmp_path / "derivex"
    shutil.copytree(Path(derivex.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = derivex._kernel_cache_dir(package)
    assert before == derivex._kernel_cache_dir(package)  # stable for unchanged sources
    helper = package / "pricing" / "_special.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    after_helper = derivex._kernel_cache_dir(package)
    assert after_helper != before
    core = package / "core" / "fixed.py"
    core.write_text(core.read_text() + "\n# edited\n")
    assert derivex._kernel_cache_dir(package) not in (before, after_helper)
