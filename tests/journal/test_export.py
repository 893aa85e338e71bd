"""``derivex export``: a journal's replay streamed into Parquet (commands, events, trades,
positions); read back with pyarrow and checked against the live run and the replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from derivex.core.records import EVENT_DTYPE, EventKind, Liquidity
from derivex.sim.flow import FlowSpec, generate
from tests.journal.conftest import batches_of, journal_flow, naive_replay

pq = pytest.importorskip("pyarrow.parquet")


def live_events(directory: Path, sink_dir: Path | None = None) -> tuple[np.ndarray, str]:
    """Journal a seeded flow (random batch sizes) and return the events the venue produced
    and its state hash; with ``sink_dir``, the venue also hands its batches to a
    ``ParquetSink`` there."""
    spec = FlowSpec(commands=4_000, accounts=40, seed=9, chunk=500)
    setup, flow = generate(spec)
    from derivex.exchange import Exchange
    from derivex.export import ParquetSink

    produced: list[np.ndarray] = []
    exchange = journal_flow(directory, setup, flow[:0], seed=1)
    sink = ParquetSink(sink_dir) if sink_dir is not None else None
    if sink is not None:
        exchange.add_sink(sink)
    for part in batches_of(flow, 2):
        produced.append(exchange.submit(part))
    assert isinstance(exchange, Exchange)
    exchange.journal.close()  # type: ignore[union-attr]
    if sink is not None:
        sink.close()
    return np.concatenate([p.view(np.uint8) for p in produced]).view(EVENT_DTYPE), (
        exchange.state_hash()
    )


def table(path: Path) -> dict[str, np.ndarray]:
    return {name: column.to_numpy() for name, column in pq.read_table(path).to_pydict().items()}


def test_export_matches_the_replay(tmp_path: Path) -> None:
    from derivex.export import export_journal

    journal = tmp_path / "journal"
    produced, live_hash = live_events(journal)
    stats = export_journal(journal, tmp_path / "out", chunk=1000)
    engine, commands = naive_replay(journal)
    assert stats.state_hash == live_hash == engine.state_hash()

    got_commands = pq.read_table(tmp_path / "out" / "commands.parquet")
    assert got_commands.column("seq").to_pylist() == commands["seq"].tolist()
    assert got_commands.column("kind").to_pylist() == commands["kind"].tolist()
    assert got_commands.column("price_ticks").to_pylist() == commands["price_ticks"].tolist()

    events = pq.read_table(tmp_path / "out" / "events.parquet")
    assert events.num_rows == stats.events
    setup_events = events.num_rows - len(produced)  # the setup batch came before `produced`
    for name in ("seq", "kind", "account", "order_id", "price_ticks", "qty_lots", "a", "b"):
        assert events.column(name).to_pylist()[setup_events:] == produced[name].tolist(), name
    seq_to_ts = dict(zip(commands["seq"].tolist(), commands["ts_ns"].tolist(), strict=True))
    assert events.column("ts_ns").to_pylist() == [
        seq_to_ts[s] for s in events.column("seq").to_pylist()
    ]

    fills = produced[
        (produced["kind"] == EventKind.FILLED) & (produced["liquidity"] == Liquidity.TAKER)
    ]
    trades = pq.read_table(tmp_path / "out" / "trades.parquet")
    assert trades.num_rows == stats.trades == len(fills) > 100
    assert trades.column("qty_lots").to_pylist() == fills["qty_lots"].tolist()
    assert trades.column("price_ticks").to_pylist() == fills["price_ticks"].tolist()

    moved = produced[produced["kind"] == EventKind.POSITION_CHANGED]
    positions = pq.read_table(tmp_path / "out" / "positions.parquet")
    assert positions.num_rows == stats.positions == len(moved)
    assert positions.column("position_lots").to_pylist() == moved["position_lots"].tolist()
    assert positions.column("balance_units").to_pylist() == moved["balance_units"].tolist()


def test_the_embedded_sink_writes_the_same_tables(tmp_path: Path) -> None:
    from derivex.export import export_journal

    journal = tmp_path / "journal"
    live_events(journal, sink_dir=tmp_path / "live")
    export_journal(journal, tmp_path / "out", chunk=700)
    for name in ("trades", "positions"):
        live = pq.read_table(tmp_path / "live" / f"{name}.parquet")
        exported = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert live.equals(exported.select(live.column_names)), name


def test_the_cli_exports_and_reports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from derivex.cli import app

    journal = tmp_path / "journal"
    _, live_hash = live_events(journal)
    result = CliRunner().invoke(app, ["export", str(journal), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert live_hash in result.output.replace("\n", "")
    assert (tmp_path / "out" / "events.parquet").stat().st_size > 0
    missing = CliRunner().invoke(app, ["export", str(tmp_path / "nothing"), str(tmp_path / "x")])
    assert missing.exit_code != 0
