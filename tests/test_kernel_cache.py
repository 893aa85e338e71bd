"""Kernel caches are keyed per kernel module by the sources it imports: an edit recompiles the
kernels that (transitively) import the edited module and nothing else; a module that no
kernel imports (the gateway, the CLI, the journal writer) never throws compiled code away."""

from __future__ import annotations

import shutil
from pathlib import Path

import derivex
from derivex import _kernel_cache
from derivex.core import engine

digest = _kernel_cache.closure_digest.__wrapped__  # uncached: the test edits sources


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_an_edit_recompiles_exactly_the_kernels_that_import_it(tmp_path: Path) -> None:
    package = tmp_path / "derivex"
    shutil.copytree(
        Path(derivex.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    kernels = {
        name: package / name
        for name in ("core/engine.py", "journal/walk.py", "ipc/ring.py", "pricing/risk.py")
    }

    def digests() -> dict[str, str]:
        return {name: digest(path, package) for name, path in kernels.items()}

    before = digests()
    assert before == digests()  # stable for unchanged sources
    assert len(set(before.values())) == len(before)

    for shell in (
        "gateway/server.py",
        "cli.py",
        "journal/writer.py",
        "runtime/worker.py",
        "exchange.py",
        "journal/__init__.py",
    ):
        _edit(package / shell)
    assert digests() == before  # nothing a kernel imports changed

    _edit(package / "journal" / "format.py")  # constants walk.py folds in
    after_format = digests()
    assert after_format["journal/walk.py"] != before["journal/walk.py"]
    assert {k: v for k, v in after_format.items() if k != "journal/walk.py"} == {
        k: v for k, v in before.items() if k != "journal/walk.py"
    }

    _edit(package / "core" / "fixed.py")  # a helper the engine calls through other modules
    after_fixed = digests()
    assert after_fixed["core/engine.py"] != after_format["core/engine.py"]
    assert after_fixed["pricing/risk.py"] == after_format["pricing/risk.py"]

    _edit(package / "core" / "records.py")  # codes the kernels fold in as constants
    assert digests()["core/engine.py"] != after_fixed["core/engine.py"]

    _edit(package / "pricing" / "_special.py")
    assert digests()["pricing/risk.py"] != after_fixed["pricing/risk.py"]


def test_relative_and_package_imports_are_followed(tmp_path: Path) -> None:
    package = tmp_path / "derivex"
    (package / "pkg").mkdir(parents=True)
    (package / "pkg" / "__init__.py").write_text("X = 1\n")
    (package / "pkg" / "a.py").write_text("from . import b\nfrom .c import thing\n")
    (package / "pkg" / "b.py").write_text("def f():\n    from derivex.pkg import d\n")
    (package / "pkg" / "c.py").write_text("thing = 2\n")
    (package / "pkg" / "d.py").write_text("y = 3\n")
    (package / "pkg" / "unrelated.py").write_text("z = 4\n")
    first = digest(package / "pkg" / "a.py", package)
    _edit(package / "pkg" / "unrelated.py")
    assert digest(package / "pkg" / "a.py", package) == first
    changes = set()
    for name in ("b.py", "c.py", "d.py", "__init__.py"):  # __init__: `from . import b`
        _edit(package / "pkg" / name)
        now = digest(package / "pkg" / "a.py", package)
        assert now != first and now not in changes
        changes.add(now)


def test_kernels_are_cached_outside_the_source_tree() -> None:
    engine.Engine()  # compiles or loads the batch kernel
    dispatchers = [
        value
        for value in vars(engine).values()
        if hasattr(value, "_cache") and hasattr(value._cache, "_cache_path")
    ]
    assert dispatchers
    source = Path(derivex.__file__).parent
    for dispatcher in dispatchers:
        locator = dispatcher._cache._impl.locator
        assert isinstance(locator, _kernel_cache.ClosureCacheLocator)
        path = Path(locator.get_cache_path())
        assert path.is_relative_to(_kernel_cache.cache_root())
        assert not path.is_relative_to(source)


def test_a_kernel_numba_cannot_cache_warns_instead_of_failing() -> None:
    """numba warns (and compiles without caching) when a kernel cannot be cached, naming the
    file through its locator; with derivex's locator that raised AttributeError instead
    (found by passing a kernel that waits, ``ipc.wait.wait_step``, to another kernel as a
    numba dispatcher argument: numba refuses to cache the caller, "uses dynamic globals")."""
    import warnings
    from types import SimpleNamespace

    from numba.core import caching
    from numba.core.errors import NumbaWarning

    from derivex.core import fixed

    impl = caching.CompileResultCacheImpl(fixed.mul_fits.py_func)
    assert isinstance(impl._locator, _kernel_cache.ClosureCacheLocator)
    uncachable = SimpleNamespace(
        lifted=[SimpleNamespace(can_cache=False)],
        library=SimpleNamespace(has_dynamic_globals=False),
        fndesc=SimpleNamespace(qualname="mul_fits"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert impl.check_cachable(uncachable) is False
    assert any(issubclass(w.category, NumbaWarning) for w in caught)
