"""Callee libraries (``core/jit.py``): a force-inlined kernel compiled because another kernel
calls it is built by ``CalleeCodegen`` (no module optimisation, ``-O0`` machine code: the
caller inlines its IR and optimises it once), while a kernel called from Python, or bound to a
C symbol, is compiled at full level; the two are cached under different keys, so a process
that calls the kernel from Python never loads the callee library another process saved, and
every answer is the same either way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import pytest

MODULE = textwrap.dedent(
    """
    import numpy as np
    from numba import types

    from derivex.core import batch_symbol
    from derivex.core.jit import kernel


    @kernel
    def inner(out, k):
        total = 0
        for j in range(out.shape[0]):
            out[j] = out[j] * k + j
            total += out[j]
        return total


    @kernel
    def outer(out, k):
        return inner(out, k) + 1


    @kernel
    def bound(out, k):
        return out.shape[0] * k


    call_bound = batch_symbol.register(
        "derivex_test_callee_bound", bound, (types.Array(types.int64, 1, "A"), types.int64),
        __file__,
    )


    @kernel
    def via_symbol(out, k):
        return call_bound(out, k)
    """
)

# prints, per step, the answer and which code generator built the library that ran
RUN = textwrap.dedent(
    """
    import sys
    import numpy as np
    from derivex.core.jit import CalleeCodegen
    import callee_kernels as m

    def kind(dispatcher):
        if not dispatcher.signatures:
            return "-"  # not compiled nor loaded in this process
        library = dispatcher.overloads[dispatcher.signatures[0]].library
        return "callee" if isinstance(library.codegen, CalleeCodegen) else "full"

    def hits(dispatcher):
        return sum(dispatcher.stats.cache_hits.values())

    for step in sys.argv[1:]:
        out = np.arange(5, dtype=np.int64)
        if step == "outer":
            print("outer", m.outer(out, 3), kind(m.outer), kind(m.inner), hits(m.inner))
        elif step == "inner":
            print("inner", m.inner(out, 3), kind(m.inner), hits(m.inner))
        elif step == "symbol":
            print("symbol", m.via_symbol(out, 3), kind(m.via_symbol), kind(m.bound))
    """
)


def _run(tmp_path: Path, *steps: str) -> list[str]:
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN, *steps], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split("\n")[: len(steps)]


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="code generators of compiled code")
def test_a_callee_gets_the_callee_library_and_python_calls_the_full_one(tmp_path: Path) -> None:
    (tmp_path / "callee_kernels.py").write_text(MODULE)
    # out = [0, 4, 8, 12, 16] (j*3 + j), total 40; outer adds 1
    # a process that compiles the caller: its callee is a callee library, the caller full
    assert _run(tmp_path, "outer") == ["outer 41 full callee 0"]
    # another process calls the callee from Python: the callee library is in the cache, but
    # under the callee key, so it compiles the full one (no cache hit)
    assert _run(tmp_path, "inner") == ["inner 40 full 0"]
    # and both are cached now: each process loads the one it asks for
    assert _run(tmp_path, "inner") == ["inner 40 full 1"]
    # the caller loads from the cache and does not touch its callee; then a Python call of
    # the callee loads the full library
    assert _run(tmp_path, "outer", "inner") == ["outer 41 full - 0", "inner 40 full 1"]


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="code generators of compiled code")
def test_a_kernel_bound_to_a_symbol_is_compiled_at_full_level(tmp_path: Path) -> None:
    (tmp_path / "callee_kernels.py").write_text(MODULE)
    # the symbol's kernel runs its own machine code: bound while its caller compiles, it is
    # still compiled at full level; the caller (called from Python) too
    assert _run(tmp_path, "symbol") == ["symbol 15 full full"]
    assert _run(tmp_path, "symbol") == ["symbol 15 full full"]
