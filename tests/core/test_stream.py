"""The batch door: ``Engine.stream`` / ``Engine.run`` hand every event to the caller in
chunks of one reusable buffer; events and state are those of ``Engine.process``."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import COMMAND_DTYPE, concat_commands
from derivex.sim.flow import FlowSpec, generate
from tests.core.test_differential import RandomChooser, StreamGen, draw_config

pytestmark = pytest.mark.nojit


@functools.cache
def random_stream(seed: int, batches: int) -> tuple[EngineConfig, np.ndarray]:
    """A seeded random stream of every command kind (TIME, quotes, growth included) as
    one batch, and the config it was drawn for. Made once per seed (the three chunk sizes
    read the same stream; callers process copies)."""
    ch = RandomChooser(seed)
    config = draw_config(ch)
    gen = StreamGen(ch, config)
    parts = [gen.setup_batch()]
    engine = Engine(config)
    gen.observe(engine.process(parts[0]))
    for _ in range(batches):
        part = gen.batch(ch.int(1, 60))
        gen.observe(engine.process(part))  # so the generator names live orders
        parts.append(part)
    return config, concat_commands(parts)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("chunk", [16, 100, 4096])
def test_stream_delivers_the_events_of_process(seed: int, chunk: int) -> None:
    config, commands = random_stream(seed, 40)
    whole = Engine(config)
    expected = whole.process(commands.copy())
    streamed = Engine(config)
    views: list[bytes] = []
    sizes: list[int] = []
    buffers: set[int] = set()
    for view in streamed.stream(commands.copy(), chunk=chunk):
        views.append(view.tobytes())  # the view is only valid until the next one
        sizes.append(len(view))
        buffers.add(view.__array_interface__["data"][0])
    assert b"".join(views) == expected.tobytes()
    assert streamed.state_hash() == whole.state_hash()
    # one reusable buffer; a tiny chunk grows only for a command whose worst case
    # outgrew it (then by doubling)
    if chunk >= 4096:
        assert len(buffers) == 1 and max(sizes) <= chunk
    assert len(buffers) <= 8
    streamed.check_invariants()


def test_run_hands_every_event_to_the_callback_and_counts_them() -> None:
    spec = FlowSpec(commands=3_000, accounts=50, seed=3, chunk=500)
    setup, flow = generate(spec)
    expected_engine = Engine()
    expected_engine.process(setup)
    expected = expected_engine.process(flow.copy())
    engine = Engine()
    engine.process(setup)
    received: list[np.ndarray] = []
    count = engine.run(flow.copy(), lambda view: received.append(view.copy()), chunk=64)
    assert count == len(expected) and len(received) > 10
    assert np.concatenate([r.view(np.uint8) for r in received]).tobytes() == expected.tobytes()
    assert engine.state_hash() == expected_engine.state_hash()


def test_process_of_a_large_batch_streams_and_matches_small_batches() -> None:
    """``process`` over the streaming threshold gives the events of the same commands run
    in small batches (the events of a command never depend on how the log was cut)."""
    from derivex.core import engine as engine_module

    spec = FlowSpec(commands=2_000, accounts=40, seed=5, chunk=400)
    setup, flow = generate(spec)
    big, small = Engine(), Engine()
    big.process(setup)
    small.process(setup)
    threshold = engine_module.STREAM_ABOVE
    engine_module.STREAM_ABOVE = 100  # so that this modest flow takes the streaming path
    try:
        events = big.process(flow.copy())
    finally:
        engine_module.STREAM_ABOVE = threshold
    pieces = [small.process(flow[i : i + 50].copy()) for i in range(0, len(flow), 50)]
    assert events.tobytes() == b"".join(p.tobytes() for p in pieces)
    assert big.state_hash() == small.state_hash()


def test_stream_rejects_other_records() -> None:
    engine = Engine()
    with pytest.raises(TypeError):
        list(engine.stream(np.zeros(3, dtype=np.int64)))
    assert list(engine.stream(np.zeros(0, dtype=COMMAND_DTYPE))) == []


def test_a_strided_batch_gives_the_events_of_its_contiguous_copy() -> None:
    """A batch that is a strided view (every other record of a larger array) is processed
    as its contiguous copy: the kernels and their out-of-line calls take C-contiguous
    batches (core/batch_symbol.py), and the engine copies such a view once."""
    config, commands = random_stream(1, 10)
    spaced = np.zeros(2 * len(commands), COMMAND_DTYPE)
    spaced[::2] = commands
    strided = spaced[::2]
    assert not strided.flags.c_contiguous
    reference = Engine(config)
    expected = reference.process(commands.copy())
    engine = Engine(config)
    assert engine.process(strided).tobytes() == expected.tobytes()
    assert engine.state_hash() == reference.state_hash()
