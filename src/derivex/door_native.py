"""The per-command door's native half: ``Exchange.place`` / ``cancel`` / ``amend`` as C
methods (CPython's vectorcall), so that one order costs one C call and the kernel.

What a Python wrapper spends per call (measured, bench/matching_bench.py): the method call
with its keywords, a dozen attribute loads and stores, fourteen integers converted for the
binding and the result object: together several times the kernel's own time. The C methods
here do the same steps in C: parse the arguments (the keywords by identity), look the side,
order type and time in force up in the Python tables, check that the door may run, read
the clock, stamp seq and ts_ns, call the compiled entry point (``derivex.core.entry``)
through its address, and build the ``OrderResult`` without running Python code. Anything
else (an unknown keyword, a value the C side does not convert, a venue with a journal or a
sink, a command that needs a pool to grow or a fresh buffer) goes to the Python method,
which decides and raises exactly as before: the C methods are a shortcut, never a second
implementation of the rules.

Per call they touch no Python attribute: the sequencer's ``seq``, ``ts_ns`` and
``batches`` are fields of its base type here (``SequencerState``, a C struct), and
whether the door may run is asked of the venue (``OrderMethods._fast_door``) once per
change of a condition: every setter of one bumps the sequencer's ``door_version``, which
a call compares, with one dict lookup that the engine still has the arena the door is
bound to (an engine grows by replacing it). The default clock, ``time.time_ns``, is read
with ``clock_gettime(CLOCK_REALTIME)`` as CPython does; any other clock is called.

The module is compiled on first use with the C compiler CPython was built with, into the
kernel cache directory (keyed by its source and the interpreter), never into the source
tree. ``load`` returns None where that fails (no compiler, no headers): the Python methods
then run, with the same results.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from types import ModuleType

from derivex._door_native_source import SOURCE as _SOURCE

_loaded: list[ModuleType | None] = []
#: why the module did not build or load (for diagnosis)
load_error: str | None = None


def _build(directory: str, name: str) -> str:
    """Compile the module into ``directory`` (atomically: parallel test workers may build
    it at once); returns its path. Raises OSError / CalledProcessError."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    path = os.path.join(directory, name + suffix)
    if os.path.exists(path):
        return path
    source = _SOURCE.replace("MODULE_NAME", name).replace("INIT_NAME", "PyInit_" + name)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    include = sysconfig.get_paths()["include"]
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        c_file = os.path.join(tmp, name + ".c")
        with open(c_file, "w") as out:
            out.write(source)
        built = os.path.join(tmp, name + suffix)
        subprocess.run(
            [*compiler, "-shared", "-fPIC", "-O2", f"-I{include}", c_file, "-o", built],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(built, path)
    return path


def _adopt(native_type: type) -> None:
    """Give the C result type ``OrderResult``'s properties and make it count as one."""
    from derivex.results import OrderResult

    for name, value in vars(OrderResult).items():
        if isinstance(value, property) or name in ("_get", "__repr__"):
            setattr(native_type, name, value)
    OrderResult.register(native_type)


def load() -> ModuleType | None:
    """The native module, built on first use (about a second, once per machine and
    interpreter); None where it cannot be built or loaded (the reason: ``load_error``).
    Never raises."""
    global load_error
    if _loaded:
        return _loaded[0]
    module = None
    try:
        from derivex._kernel_cache import cache_root

        digest = hashlib.sha256((_SOURCE + sys.version).encode()).hexdigest()[:16]
        name = f"derivex_door_native_{digest}"
        directory = os.path.join(cache_root(), "door")
        os.makedirs(directory, exist_ok=True)
        spec = importlib.util.spec_from_file_location(name, _build(directory, name))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _adopt(module.OrderResult)
    except Exception as error:  # no compiler or headers: the Python methods run
        load_error = f"{type(error).__name__}: {error}"
        module = None
    _loaded.append(module)
    return module


__all__ = ["load", "load_error"]
