"""Kernels called by a fixed C symbol (``core/batch_symbol.py``): a caller compiled in one
process and loaded from the cache in another calls the callee's machine code through the
symbol, the symbol is bound before the cached caller loads (else LLVM would abort the
process), arguments are cast to the declared signature and others are a typing error."""

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
    from derivex.core.jit import cold_kernel, kernel


    @cold_kernel
    def _scale(out, k):
        for j in range(out.shape[0]):
            out[j] = out[j] * k
        return out.shape[0], k


    call_scale = batch_symbol.register(
        "derivex_test_scale",
        _scale,
        (types.Array(types.int64, 1, "A"), types.int64),
        __file__,
    )


    @kernel
    def _inner(out, k):
        return call_scale(out, k)  # k: an int32, cast to the declared int64


    @cold_kernel
    def caller(out, k):
        n, used = _inner(out, np.int32(k))
        total = 0
        for j in range(n):
            total += out[j]
        return total + used
    """
)

RUN = textwrap.dedent(
    """
    import numpy as np
    import symbol_kernels as m
    out = np.arange(4, dtype=np.int64)
    print(m.caller(out, 3), out.tolist(), m.caller.stats.cache_hits.get(m.caller.signatures[0], 0))
    """
)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="symbols need compiled code")
def test_a_cached_caller_calls_the_symbol_in_a_new_process(tmp_path: Path) -> None:
    (tmp_path / "symbol_kernels.py").write_text(MODULE)
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    answers = []
    for _ in range(2):  # compiled, then loaded from the cache (the symbol bound first)
        done = subprocess.run(
            [sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        answers.append(done.stdout.strip())
    # 0+3+6+9 = 18, plus the factor the callee returned
    assert answers[0] == "21 [0, 3, 6, 9] 0"
    assert answers[1] == "21 [0, 3, 6, 9] 1"


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="symbols need compiled code")
def test_arguments_that_do_not_convert_are_a_typing_error() -> None:
    import numpy as np
    from numba import types

    from derivex.core import batch_symbol, jit

    def first(values):
        return values[0]

    _first = jit._compile(first, cache=False)

    call_first = batch_symbol.register(
        "derivex_test_first", _first, (types.Array(types.int64, 1, "C"),), __file__
    )

    @numba.njit(cache=False)
    def wrong(values):
        return call_first(values)

    with pytest.raises(numba.core.errors.TypingError, match="derivex_test_first takes"):
        wrong(np.zeros(2, np.float64))

    @numba.njit(cache=False)
    def right(values):
        return call_first(values)

    assert right(np.array([7, 8], np.int64)) == 7
