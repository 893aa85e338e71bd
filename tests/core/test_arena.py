"""The arena (``core/arena.py``): ``unpack`` builds, from the arena and its layout alone, the
very views ``pack`` made (same memory, shape and strides) for every State field, after
growth too; and a layout that does not fit its arena is refused before any kernel trusts
it (``check_layout``, run by ``Engine.from_arena``)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from derivex.core.arena import check_layout, unpack
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.growth import grow
from derivex.core.state import State

pytestmark = pytest.mark.nojit


@numba.njit(_nrt=False, error_model="numpy")
def _put(out, k, view):
    out[k, 0] = view.ctypes.data
    out[k, 1] = view.size
    out[k, 2] = view.strides[0]
    out[k, 3] = view.itemsize


# one line per State field (a heterogeneous tuple is indexed by constants only)
_SOURCE = "def _described(arena, layout, out):\n    st = unpack(arena, layout)\n" + "".join(
    f"    _put(out, {k}, st[{k}])\n" for k in range(len(State._fields))
)
_NAMESPACE = {"unpack": unpack, "_put": _put}
exec(_SOURCE, _NAMESPACE)
#: per State field of the unpacked arena: address, element count, first stride, item size
described_unpacked = numba.njit(_nrt=False, error_model="numpy")(_NAMESPACE["_described"])


def described(state: State) -> np.ndarray:
    return np.array(
        [[a.ctypes.data, a.size, a.strides[0], a.itemsize] for a in state], dtype=np.int64
    )


def test_unpack_gives_the_packed_views_of_every_field_after_growth_too() -> None:
    engine = Engine(EngineConfig(initial_orders=8, initial_levels=4))
    for _ in range(2):  # as packed, then after a growth (a new arena, a new layout)
        out = np.zeros((len(State._fields), 4), dtype=np.int64)
        described_unpacked(engine.arena, engine.layout, out)
        np.testing.assert_array_equal(out, described(engine.state))
        engine._adopt(grow(engine.state, 64))
    # the layout really changed, so an unpack from a stale layout would have failed above
    assert engine.state.ord_label.shape[0] >= 64


def test_a_layout_that_does_not_fit_its_arena_is_refused() -> None:
    engine = Engine(EngineConfig())
    check_layout(engine.arena, engine.layout)
    too_long = engine.layout.copy()
    too_long[-1, 1] += 1 << 20  # the last section runs past the arena's end
    with pytest.raises(ValueError, match="outside the arena"):
        Engine.from_arena(engine.config, engine.arena, too_long, engine.state)
    misaligned = engine.layout.copy()
    misaligned[1, 0] += 4  # counters are int64: 4 bytes off is misaligned
    with pytest.raises(ValueError, match="not aligned"):
        check_layout(engine.arena, misaligned)
    with pytest.raises(ValueError, match="layout must be"):
        check_layout(engine.arena, engine.layout[:-1])
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        check_layout(engine.arena.view(np.int64), engine.layout)
