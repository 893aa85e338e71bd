"""Where numba keeps derivex's compiled kernels, and when they are stale.

numba re-validates a cached kernel only against the source file that defines it, not the
kernels it calls or the constants it folds in from other modules. derivex therefore keys
each kernel module's cache by a digest of its *import closure*: the module's own source and
every ``derivex`` module it imports, directly or through others. A kernel is stale exactly
when something in that closure changed, so

- an edit to ``core/fixed.py`` recompiles every kernel that (transitively) imports it;
- an edit to ``journal/walk.py`` recompiles the journal's kernels, not the engine's;
- an edit to a module that no kernel imports (the gateway, the CLI, the journal writer)
  recompiles nothing.

The digest is of file *contents* and module-relative paths, so two checkouts with the same
kernel sources (a worktree, a CI clone) share one cache. The cache lives under the user cache
directory (or ``NUMBA_CACHE_DIR`` when set), never in the source tree.

The locator is numba's documented extension point for where caches live
(``numba.core.caching._CacheLocator``); ``install`` puts it first in the list numba tries.

Several processes may compile into one cache at once (``scripts/warm.py`` compiles in
parallel; test workers and a served venue's processes start cold together). numba keeps one
index per kernel function that maps each signature to a data file it numbers by reading the
index: two processes saving two signatures of one function at once could both take number 1,
and the index of one would then name the other's code. ``install`` therefore makes each
compile of a derivex kernel hold an exclusive file lock on that function's index
(``compile_lock``): a second process waits, then loads what the first saved instead of
compiling it again. No deadlock: a process holds the locks of the kernels on its compile
stack, and waits only for a kernel its innermost one calls (or, binding a C symbol before a
load, ``BEFORE_LOAD``, one its module imports); kernels do not recurse and modules do not
import each other in a cycle.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from numba.core import caching, dispatcher, sigutils
from numba.core.compiler_lock import global_compiler_lock

PACKAGE = Path(__file__).resolve().parent


def cache_root() -> str:
    """``NUMBA_CACHE_DIR`` if set, else ``<user cache dir>/derivex/numba``."""
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return explicit
    from platformdirs import user_cache_dir

    return os.path.join(user_cache_dir("derivex"), "numba")


def _module_file(package: Path, dotted: str) -> Path | None:
    """The file of ``derivex.<dotted>`` (a module or a package's ``__init__``), if any."""
    base = package.joinpath(*dotted.split(".")) if dotted else package
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _statements(tree: ast.Module) -> Iterator[ast.AST]:
    """Every statement of ``tree``, nested ones included (function and class bodies,
    branches, loops, ``try``/``with``/``match`` blocks); expressions are not entered, since
    an import is always a statement. A tenth of the nodes ``ast.walk`` visits."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, field, None)
            if block:
                stack.extend(block)


def _imports(package: Path, path: Path) -> frozenset[Path]:
    """The files of the ``derivex`` modules that ``path`` imports (anywhere in the file:
    a lazy import in a function body counts too). ``from derivex.x import y`` counts ``x``
    (its ``__init__`` if it is a package) and, when ``y`` is a submodule, ``y``. The
    ``__init__`` of a package passed on the way to a module is not counted: what a kernel
    can fold in is what it names. Parsed once per version of the file and process (every
    kernel module's closure walks the same shared modules: 473 parses per ``import
    derivex.core.engine`` before, ~1.1 s of every process start); an edit (a new
    modification time or size) parses again."""
    status = path.stat()
    return _parsed_imports(package, path, status.st_mtime_ns, status.st_size)


@functools.cache
def _parsed_imports(package: Path, path: Path, _mtime_ns: int, _size: int) -> frozenset[Path]:
    """``_imports`` of ``path`` as it is at that modification time and size."""
    tree = ast.parse(path.read_bytes(), str(path))
    # (a file outside the package has no relative imports of derivex)
    relative_to = path.relative_to(package).parent.parts if path.is_relative_to(package) else ()
    names: list[str] = []
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = list(relative_to[: len(relative_to) - node.level + 1])
                module = ".".join(["derivex", *parts, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    found: set[Path] = set()
    for name in names:
        if not name.startswith("derivex."):
            continue
        file = _module_file(package, name.removeprefix("derivex."))
        if file is not None:
            found.add(file)
    return frozenset(found)


@functools.cache
def closure_files(path: Path, package: Path = PACKAGE) -> frozenset[Path]:
    """``path`` and the files of every ``derivex`` module it imports, transitively."""
    seen = {path}
    stack = [path]
    while stack:
        for imported in _imports(package, stack.pop()):
            if imported not in seen:
                seen.add(imported)
                stack.append(imported)
    return frozenset(seen)


def imports(source: Path, module_file: str) -> bool:
    """Whether the module file ``source`` is ``module_file`` or imports it, transitively.
    Cost: the first call per ``source`` walks its imports; then a set lookup."""
    return Path(module_file).resolve() in closure_files(source)


@functools.cache
def closure_digest(path: Path, package: Path = PACKAGE) -> str:
    """Digest of ``path`` and every ``derivex`` module it imports, transitively."""
    digest = hashlib.sha256()
    for file in sorted(closure_files.__wrapped__(path, package)):  # (uncached: the tests edit)
        # (a file outside the package, a test's kernels: by name, it has no package path)
        name = file.relative_to(package) if file.is_relative_to(package) else file.name
        digest.update(str(name).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


class ClosureCacheLocator(caching._CacheLocator):
    """Caches a derivex kernel under ``<root>/<module path>/<closure digest>``; the closure
    digest is also numba's source stamp, so an index written for other sources is never
    trusted."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        path = Path(py_file).resolve()
        # numba's warning for a kernel it cannot cache names the file through this attribute
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._stamp = closure_digest(path)
        try:
            module = str(path.relative_to(PACKAGE).with_suffix("")).replace(os.sep, ".")
        except ValueError:  # a kernel outside the package (a test's or a benchmark's helper)
            where = hashlib.sha256(str(path.parent).encode()).hexdigest()[:12]
            module = os.path.join("outside", f"{path.stem}-{where}")
        self._cache_path = os.path.join(cache_root(), module, self._stamp[:20])

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return self._stamp

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> ClosureCacheLocator | None:
        # every file's kernels, ours or a test's, go under the cache root: never beside
        # the source (numba's default is a ``__pycache__`` next to it)
        if not os.path.isfile(py_file):
            return None  # (an interactive session, a notebook cell: numba's locators decide)
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            return None
        return self


_held: dict[str, int] = {}  # lock path -> depth, the locks this process holds


@contextlib.contextmanager
def compile_lock(path: str) -> Iterator[None]:
    """Hold the exclusive lock file ``path`` (created if missing) for the block; re-entrant
    within a process. Blocks while another process holds it; no lock where the file cannot
    be opened for writing. Cost: one open and one ``flock`` (the lock goes with the process
    if it dies)."""
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    try:
        handle = open(path, "ab")  # noqa: SIM115  (closed below, after the unlock)
    except OSError:  # a cache numba can read but not write here: it will not save either
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(compile: Callable[..., Any]) -> Callable[..., Any]:
    """``Dispatcher.compile`` under the lock of the kernel's cache index when the kernel is
    cached by ``ClosureCacheLocator`` and the signature is not compiled in this process."""

    @functools.wraps(compile)
    def locked_compile(self: Any, sig: Any) -> Any:
        cache = getattr(self, "_cache", None)
        locator = getattr(getattr(cache, "_impl", None), "locator", None)
        if not isinstance(locator, ClosureCacheLocator):
            return compile(self, sig)
        arguments, _ = sigutils.normalize_signature(sig)
        if tuple(arguments) in self.overloads:
            return compile(self, sig)
        index = cache._cache_file._index_path  # type: ignore[union-attr]  # a numba Cache here
        # numba's (re-entrant) process-wide lock first: the file locks are then taken and
        # counted by one thread at a time
        with global_compiler_lock, compile_lock(index + ".lock"):
            return compile(self, sig)

    locked_compile.derivex_locked = True  # type: ignore[attr-defined]
    return locked_compile


#: called with a kernel's source file before numba loads one of its compiled signatures
#: from the cache (``core/batch_symbol.py`` binds there the C symbols the loaded code calls:
#: LLVM must resolve them when it adds the code, and a missing one aborts the process)
BEFORE_LOAD: list[Callable[[Path], None]] = []


def _hooked(load: Callable[..., Any]) -> Callable[..., Any]:
    """``Cache._load_overload`` that runs ``BEFORE_LOAD`` first when the cache holds the
    signature (a miss compiles instead, and a compile binds what it calls as it types)."""

    @functools.wraps(load)
    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        locator = getattr(getattr(self, "_impl", None), "locator", None)
        if BEFORE_LOAD and isinstance(locator, ClosureCacheLocator) and self._enabled:
            key = self._index_key(sig, target_context.codegen())
            if key in self._cache_file._load_index():
                for hook in BEFORE_LOAD:
                    hook(Path(locator._py_file).resolve())
        return load(self, sig, target_context)

    load_overload.derivex_hooked = True  # type: ignore[attr-defined]
    return load_overload


def install() -> None:
    """Make numba try ``ClosureCacheLocator`` first, compile derivex kernels under
    ``compile_lock`` and run ``BEFORE_LOAD`` before a cache load (idempotent)."""
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # type: ignore[attr-defined]  # public from numba 0.61
    classes = impl._locator_classes
    if ClosureCacheLocator not in classes:
        classes.insert(0, ClosureCacheLocator)
    if not getattr(dispatcher.Dispatcher.compile, "derivex_locked", False):
        dispatcher.Dispatcher.compile = _locked(dispatcher.Dispatcher.compile)  # type: ignore[method-assign]
    if not getattr(caching.Cache._load_overload, "derivex_hooked", False):
        caching.Cache._load_overload = _hooked(caching.Cache._load_overload)  # type: ignore[method-assign]
