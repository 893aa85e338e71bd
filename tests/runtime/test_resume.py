"""The multi-process runtime resumes a journal: one it wrote itself in an earlier run (with
a snapshot taken in between) and one an embedded ``Exchange`` wrote. The engine and every
worker replica continue from the recovered state, the seq numbering continues without a
gap, and recovering the directory in-process afterwards gives the engine's final state."""

from __future__ import annotations

import numpy as np
import pytest
import runtime_checks as rc

from derivex.exchange import open_exchange
from derivex.journal import (
    Journal,
    JournalError,
    read,
    recover,
    snapshot,
    write_snapshot,
)
from derivex.runtime import Runtime, RuntimeConfig
from derivex.runtime.frontends import setup


def _run(cfg, until_seq: int):
    with Runtime(cfg) as rt:
        assert rt.wait_until(lambda s: s["processed_seq"] >= until_seq, 60)
        assert rt.status()["start_seq"] == rt.start_seq
    report = rt.report
    rc.assert_clean(report)
    assert rc.segments(cfg.name) == []
    return report


def _contiguous(directory) -> int:
    last = 0
    for batch in read(directory):
        assert batch.first_seq == last + 1
        last = batch.last_seq
    return last


def test_a_second_run_resumes_the_first_runs_journal_and_snapshot(tmp_path):
    journal = tmp_path / "journal"
    n = 1500
    options = {"commands": n, "batch_max": 24, "seed": 21}
    first_cfg = rc.runtime_config(
        rc.unique_name("resume1"), journal, workers=2, front_end_options=options
    )
    first = _run(first_cfg, 2 * n + len(first_cfg.setup))
    rc.assert_replicas(first, journal)
    end_of_first = first.engine["seq"]
    # a snapshot at the end of the first run: the second engine starts from it
    recovered = recover(journal, roots=False)
    assert recovered.engine.state_hash() == first.engine["state_hash"]
    write_snapshot(journal, recovered.engine.state, recovered.config, recovered.seq)

    # same setup given again: a resumed run must not sequence it a second time
    second_cfg = rc.runtime_config(
        rc.unique_name("resume2"),
        journal,
        workers=2,
        front_end_options={**options, "seed": 22, "commands": 1000},
    )
    second = _run(second_cfg, end_of_first + 2000)
    engine = second.engine
    assert engine["start_seq"] == end_of_first and engine["snapshot_seq"] == end_of_first
    assert engine["seq"] == end_of_first + 2000 and engine["commands"] == [1000, 1000]
    assert second.journal["gaps"] == 0 and second.market_data["gaps"] == 0
    for worker in second.workers:  # the replicas started from the snapshot too
        replica = worker["replica"]
        assert replica["recovered_seq"] >= end_of_first
        assert replica["snapshot_seq"] == end_of_first
    rc.assert_replicas(second)

    assert _contiguous(journal) == engine["seq"]
    again = recover(journal, roots=False)
    assert again.seq == engine["seq"] and again.engine.state_hash() == engine["state_hash"]
    full = recover(journal, use_snapshot=False, roots=False)
    assert full.engine.state_hash() == engine["state_hash"]


def test_the_runtime_resumes_a_journal_written_by_an_embedded_exchange(tmp_path):
    journal = tmp_path / "journal"
    exchange, _ = open_exchange(journal, config=rc.ENGINE, fsync="none")
    exchange.submit(setup(8))
    for k in range(20):  # the embedded venue trades a little before the runtime
        exchange.place(
            3 + k % 8,
            0,
            "buy" if k % 2 else "sell",
            1 + k % 5,
            price_ticks=10_000_000 + (k % 7 - 3) * 50,
        )
    snapshot(exchange, with_root=False)
    exchange.place(4, 0, "buy", 3, price_ticks=10_000_050)
    embedded_seq, embedded_hash = exchange.journal.last_seq, exchange.state_hash()
    exchange.journal.close()
    assert recover(journal, roots=False).engine.state_hash() == embedded_hash

    cfg = rc.runtime_config(
        rc.unique_name("embedded"), journal, workers=2, front_end_options={"commands": 800}
    )
    report = _run(cfg, embedded_seq + 1600)
    assert report.engine["start_seq"] == embedded_seq
    assert report.engine["snapshot_seq"] == embedded_seq - 1
    assert report.engine["seq"] == embedded_seq + 1600
    rc.assert_replicas(report)
    assert _contiguous(journal) == report.engine["seq"]
    again = recover(journal, roots=False)
    assert again.engine.state_hash() == report.engine["state_hash"]
    # the runtime's commands follow the embedded ones in the journal
    seqs = np.concatenate([b.commands["seq"] for b in read(journal)])
    assert np.array_equal(seqs, np.arange(1, report.engine["seq"] + 1))


def test_a_journal_of_another_engine_configuration_is_refused_before_anything_starts(tmp_path):
    journal = tmp_path / "journal"
    with Journal(journal, fsync="none") as writer:
        writer.attach(rc.ENGINE)
    other = RuntimeConfig(name=rc.unique_name("config"), journal_dir=str(journal))
    with pytest.raises(JournalError, match="different EngineConfig"):
        Runtime(other).start()
    assert rc.segments(other.name) == []
