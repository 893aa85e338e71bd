"""Simulated index feed (derivex.oracle): layout, determinism, faults, scripted paths."""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core import records as rec
from derivex.oracle import (
    NS_PER_MINUTE,
    IndexFeed,
    MultiIndexFeed,
    ScriptedPath,
    SimulatedIndexFeed,
    SourceFault,
    SourceState,
    crash_path,
)

START = 1_790_000_000 * 1_000_000_000
SECOND = 1_000_000_000
SEED = 20240917


def run(feed: SimulatedIndexFeed, steps: int, every_ns: int = 4 * SECOND) -> list[np.ndarray]:
    return [feed.records(START + i * every_ns) for i in range(steps)]


def quiet(**kwargs) -> SimulatedIndexFeed:
    """A feed without random faults (scripted faults only)."""
    options = {"stale_probability": 0.0, "outlier_probability": 0.0, **kwargs}
    return SimulatedIndexFeed(1, 10_000_000, START, SEED, **options)


def test_layout_is_an_index_command_with_one_leg_per_source():
    feed = quiet(latency_ns=3)
    records = feed.records(START + SECOND)
    assert records.dtype == rec.COMMAND_DTYPE and len(records) == 6
    assert records["kind"][0] == rec.CommandKind.INDEX
    assert records["index_underlying"][0] == 1 and records["count"][0] == 5
    legs = records[1:]
    assert np.all(legs["kind"] == rec.CommandKind.INDEX_SOURCE)
    assert legs["source_id"].tolist() == [0, 1, 2, 3, 4]
    assert np.all(legs["source_ts_ns"] == START + SECOND - 3)
    # all sources near the reference (noise 200 ppm: 10 sigma is 0.2%)
    ref = feed.last_reference
    assert np.all(np.abs(legs["price_ticks"] / ref - 1) < 2e-3)
    same = rec.index_records(
        1,
        [
            (int(s), int(t), int(p))
            for s, t, p in zip(
                legs["source_id"], legs["source_ts_ns"], legs["price_ticks"], strict=True
            )
        ],
    )
    assert same.tobytes() == records.tobytes()


def test_same_seed_same_records_other_seed_different():
    def sequence(seed: int) -> bytes:
        feed = SimulatedIndexFeed(
            2, 300_000, START, seed, sources=7, stale_probability=0.05, outlier_probability=0.05
        )
        return b"".join(r.tobytes() for r in run(feed, 200))

    assert sequence(SEED) == sequence(SEED)
    assert sequence(SEED) != sequence(SEED + 1)


def test_random_faults_occur_and_are_flagged():
    feed = SimulatedIndexFeed(
        1,
        10_000_000,
        START,
        SEED,
        stale_probability=0.02,
        outlier_probability=0.02,
        outlier_ppm=80_000,
        stale_ns=60 * SECOND,
    )
    seen_stale = seen_outlier = 0
    previous = None
    for step in range(500):
        records = feed.records(START + step * 4 * SECOND)
        legs, states = records[1:], feed.last_states
        ref = feed.last_reference
        outliers = states == SourceState.OUTLIER
        seen_outlier += int(outliers.sum())
        if outliers.any():
            deviation = np.abs(legs["price_ticks"][outliers] / ref - 1)
            assert np.all(np.abs(deviation - 0.08) < 2e-3)
        stale = states == SourceState.STALE
        seen_stale += int(stale.sum())
        if previous is not None and stale.any():
            # a stale source repeats its last report, timestamp included
            assert np.array_equal(legs["price_ticks"][stale], previous["price_ticks"][stale])
            assert np.array_equal(legs["source_ts_ns"][stale], previous["source_ts_ns"][stale])
            assert np.all(legs["source_ts_ns"][stale] < START + step * 4 * SECOND)
        previous = legs
    assert seen_stale > 0 and seen_outlier > 0


def test_scripted_faults_are_produced_as_specified():
    faults = [
        SourceFault(1, START + 10 * SECOND, START + 30 * SECOND, "stale"),
        SourceFault(3, START + 20 * SECOND, START + 24 * SECOND, "outlier", -60_000),
    ]
    feed = quiet(faults=faults, noise_ppm=0.0)
    frozen = None
    for i in range(10):
        now = START + i * 4 * SECOND
        legs = feed.records(now)[1:]
        ref = feed.last_reference
        if START + 10 * SECOND <= now < START + 30 * SECOND:
            assert feed.last_states[1] == SourceState.STALE
            if frozen is None:
                frozen = (int(legs["price_ticks"][1]), int(legs["source_ts_ns"][1]))
            assert (int(legs["price_ticks"][1]), int(legs["source_ts_ns"][1])) == frozen
            assert frozen[1] < START + 10 * SECOND
        else:
            assert feed.last_states[1] == SourceState.OK
            assert legs["source_ts_ns"][1] == now
        if START + 20 * SECOND <= now < START + 24 * SECOND:
            assert feed.last_states[3] == SourceState.OUTLIER
            assert legs["price_ticks"][3] == int(np.floor(ref * 0.94 + 0.5))
        else:
            assert abs(int(legs["price_ticks"][3]) - ref) <= 0.5
    assert frozen is not None


def test_crash_path_drives_the_reference():
    path = crash_path(start_offset_ns=5 * NS_PER_MINUTE)
    assert path.multiplier(0) == 1.0
    assert path.multiplier(15 * NS_PER_MINUTE) == pytest.approx(0.70)
    assert path.multiplier(35 * NS_PER_MINUTE) == pytest.approx(0.85)
    assert path.multiplier(10 * NS_PER_MINUTE) == pytest.approx(0.85)
    feed = quiet(vol=0.0, path=path)  # no randomness in the reference
    levels = {}
    for minute in (0, 5, 10, 15, 25, 35, 60):
        feed.records(START + minute * NS_PER_MINUTE)
        levels[minute] = feed.last_reference
    assert levels[0] == pytest.approx(10_000_000)
    assert levels[15] == pytest.approx(7_000_000)
    assert levels[25] == pytest.approx(7_750_000)
    assert levels[35] == levels[60] == pytest.approx(8_500_000)
    with pytest.raises(ValueError):
        ScriptedPath(((10, 1.0), (5, 0.9)))


def test_walk_statistics_follow_the_volatility():
    feed = quiet(vol=0.8, noise_ppm=0.0)
    minute = 60 * SECOND
    logs = [np.log(feed.reference_price(START + i * minute)) for i in range(4000)]
    realised = np.std(np.diff(logs)) * np.sqrt(365 * 24 * 60)
    assert 0.7 < realised < 0.9


def test_protocol_multi_feed_and_errors():
    btc = quiet()
    eth = SimulatedIndexFeed(2, 300_000, START, SEED + 1, sources=3)
    assert isinstance(btc, IndexFeed) and isinstance(eth, IndexFeed)
    both = MultiIndexFeed([btc, eth]).records(START + SECOND)
    assert len(both) == 6 + 4
    assert both["kind"].tolist()[:1] + both["kind"].tolist()[6:7] == [rec.CommandKind.INDEX] * 2
    assert both["index_underlying"][6] == 2 and both["count"][6] == 3
    with pytest.raises(ValueError):
        btc.records(START)  # time went backwards
    with pytest.raises(ValueError):
        SimulatedIndexFeed(1, 0, START, SEED)
    with pytest.raises(ValueError):
        SourceFault(0, 0, 1, "late")
