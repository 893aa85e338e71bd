"""Kernel caches are keyed by every source of the kernel subpackages: an edit to a helper
module (whose callers numba would not re-validate) moves the whole cache to a new directory;
an edit to a module that only calls kernels (the gateway, the CLI) keeps it."""

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
    after_core = derivex._kernel_cache_dir(package)
    assert after_core not in (before, after_helper)
    records = package / "core" / "records.py"  # codes the kernels fold in as constants
    records.write_text(records.read_text() + "\n# edited\n")
    after_records = derivex._kernel_cache_dir(package)
    assert after_records != after_core
    caller = package / "cli.py"
    caller.write_text(caller.read_text() + "\n# edited\n")
    (package / "gateway" / "server.py").write_text("# edited\n")
    assert derivex._kernel_cache_dir(package) == after_records
