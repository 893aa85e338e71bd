"""One contract, two logs: the embedded file journal (``FileLog``) and a JetStream stream
on a real 3-node cluster (``JetStreamLog``) must behave the same for what the sequencer
and the replicas rely on: byte-exact frames, the fence, deduplicated retries, reads from
any seq."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from derivex.cluster.log import CommandLog, FileLog, WrongLastSequence
from tests.cluster.conftest import stamped


# the JetStream case reaches the cluster through getfixturevalue, which the tier scan of
# tests/conftest.py cannot see: marked here
@pytest.fixture(params=["file", pytest.param("jetstream", marks=pytest.mark.integration)])
def open_log(request, tmp_path) -> Iterator[Callable[[], CommandLog]]:
    """A factory of fresh, empty logs of one implementation; closes what it made."""
    made: list[CommandLog] = []

    def make() -> CommandLog:
        if request.param == "file":
            log: CommandLog = FileLog(tmp_path / f"journal{len(made)}")
        else:
            from derivex.cluster.jetstream import JetStreamLog

            cluster = request.getfixturevalue("nats_cluster")
            name = request.getfixturevalue("domain") + f"x{len(made)}"
            log = JetStreamLog(cluster.urls, name, writer="w1")
        made.append(log)
        return log

    try:
        yield make
    finally:
        for log in made:
            log.close()


def frames_of(log: CommandLog, from_seq: int = 1) -> list[tuple[int, bytes]]:
    return [(batch.first_seq, batch.commands.tobytes()) for batch in log.read(from_seq)]


def test_append_read_round_trip_is_byte_exact(open_log) -> None:
    log = open_log()
    assert log.last_seq == 0 and list(log.read(1)) == []
    frames = [stamped(1, 3, seed=1), stamped(4, 1, seed=2), stamped(5, 250, seed=3)]
    last = 0
    for frame in frames:
        last = log.append(frame, last)
        assert last == int(frame["seq"][-1]) == log.last_seq
    assert frames_of(log) == [(int(f["seq"][0]), f.tobytes()) for f in frames]


def test_the_fence_refuses_a_stale_writer(open_log) -> None:
    log = open_log()
    original = stamped(1, 3, seed=1)
    log.append(original, 0)
    stale = stamped(1, 2, seed=9)  # stamped by a writer who believes the log is empty
    with pytest.raises(WrongLastSequence) as refused:
        log.append(stale, 0)
    assert refused.value.expected == 0 and refused.value.actual == 3
    ahead = stamped(10, 1)  # nor may a writer skip ahead of the log
    with pytest.raises(WrongLastSequence):
        log.append(ahead, 9)
    assert frames_of(log) == [(1, original.tobytes())] and log.last_seq == 3


def test_a_retried_append_is_deduplicated(open_log) -> None:
    log = open_log()
    first = stamped(1, 4, seed=1)
    assert log.append(first, 0) == 4
    assert log.append(first, 0) == 4  # the retry of a write whose reply was lost
    second = stamped(5, 2, seed=2)
    assert log.append(second, 4) == 6
    assert log.append(first, 0) == 4  # even a late retry, once the log has moved on
    assert frames_of(log) == [(1, first.tobytes()), (5, second.tobytes())]
    changed = first.copy()
    changed["ts_ns"] += 1  # same seqs, other bytes: not a retry, a stale writer
    with pytest.raises(WrongLastSequence):
        log.append(changed, 0)


def test_reading_from_the_middle(open_log) -> None:
    log = open_log()
    frames = [stamped(1, 5, seed=1), stamped(6, 5, seed=2), stamped(11, 5, seed=3)]
    for frame in frames:
        log.append(frame, int(frame["seq"][0]) - 1)
    inside = list(log.read(8))  # seq 8 is the third record of the second frame
    assert [batch.first_seq for batch in inside] == [8, 11]
    assert inside[0].commands.tobytes() == frames[1][2:].tobytes()
    assert inside[1].last_seq == 15
    assert [batch.first_seq for batch in log.read(11)] == [11]
    assert [batch.first_seq for batch in log.read(15)] == [15]
    assert list(log.read(16)) == []
    stitched = np.concatenate([batch.commands for batch in log.read(2)])
    assert stitched["seq"].tolist() == list(range(2, 16))


def test_a_malformed_frame_is_a_caller_error(open_log) -> None:
    log = open_log()
    gap = stamped(1, 3)
    gap["seq"][2] = 7
    with pytest.raises(ValueError, match="do not continue"):
        log.append(gap, 0)
    with pytest.raises(ValueError, match="empty"):
        log.append(stamped(1, 0), 0)
    assert log.last_seq == 0
