"""Kernel caches are keyed per kernel module by the sources it imports: an edit recompiles the
kernels that (transitively) import the edited module and nothing else; a module that no
kernel imports (the gateway, the CLI, the journal writer) never throws compiled code away."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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


def test_a_kernel_outside_the_package_is_cached_under_the_root_not_beside_it(
    tmp_path: Path,
) -> None:
    """A test's or a benchmark's own kernel (``cache=True``) is cached under the cache root
    (numba's default would write a ``__pycache__`` beside the source file)."""
    source = tmp_path / "helper_kernels.py"
    source.write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n"
    )
    cache = tmp_path / "cache"
    code = (
        "import sys, derivex\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import helper_kernels\n"
        "assert helper_kernels.twice(21) == 42\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert not (tmp_path / "__pycache__").exists() or not list(
        (tmp_path / "__pycache__").glob("*.nbi")
    )
    assert list((cache / "outside").rglob("*.nbi")), "no index under the cache root"


def test_two_processes_compiling_one_kernel_at_once_compile_it_once(tmp_path: Path) -> None:
    """Two processes that reach the same uncompiled kernel together (parallel warm-up, test
    workers, a venue's processes): the second waits on the kernel's cache lock and loads
    what the first saved (numba numbers a function's data files by reading its index: two
    saves at once could give two signatures one file)."""
    (tmp_path / "lock_kernels.py").write_text(
        "from derivex.core.jit import kernel\n\n"
        "@kernel\ndef total(a, x):\n    s = 0\n"
        "    for i in range(a.shape[0]):\n        s += a[i] * x\n    return s\n"
    )
    go = tmp_path / "go"
    code = (
        "import os, sys, time, numpy as np, derivex\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import lock_kernels\n"
        f"open({str(tmp_path)!r} + f'/ready-{{os.getpid()}}', 'w').close()\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.01)\n"
        "assert lock_kernels.total(np.arange(4), 3) == 18\n"
        "assert lock_kernels.total(np.arange(4.0), 0.5) == 3.0\n"
        "print(sum(lock_kernels.total.stats.cache_misses.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    children = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    compiled = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        compiled.append(int(out.split()[-1]))
    assert sum(compiled) == 2  # each signature compiled by one of them, loaded by the other


def test_the_compile_lock_is_exclusive_between_processes_and_reentrant(tmp_path: Path) -> None:
    path = str(tmp_path / "kernel.nbi.lock")
    probe = (
        "import fcntl, sys\n"
        "with open(sys.argv[1], 'ab') as f:\n"
        "    try:\n        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "    except BlockingIOError:\n        sys.exit(3)\n"
    )

    def other_process_gets_it() -> bool:
        done = subprocess.run([sys.executable, "-c", probe, path], timeout=60, check=False)
        return done.returncode == 0

    with _kernel_cache.compile_lock(path):
        with _kernel_cache.compile_lock(path):  # the same process again: no self-deadlock
            assert not other_process_gets_it()
        assert not other_process_gets_it()
    assert other_process_gets_it()


def test_the_import_scan_sees_every_import_statement_of_the_package() -> None:
    """``_statements`` (which the closure digest walks instead of every node) yields every
    import statement ``ast.walk`` finds, nested in functions, branches and handlers too."""
    import ast

    for path in Path(derivex.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_bytes())
        wanted = [
            ast.dump(node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        seen = [
            ast.dump(node)
            for node in _kernel_cache._statements(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        assert sorted(seen) == sorted(wanted), path
    nested = ast.parse(
        "def f():\n    try:\n        import derivex.a\n    except E:\n        import derivex.b\n"
        "    finally:\n        import derivex.c\n"
        "class C:\n    if x:\n        pass\n    else:\n        import derivex.d\n"
        "match v:\n    case 1:\n        import derivex.e\n"
        "with w:\n    for i in y:\n        while z:\n            import derivex.f\n"
    )
    found = {
        alias.name
        for node in _kernel_cache._statements(nested)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert found == {f"derivex.{name}" for name in "abcdef"}
