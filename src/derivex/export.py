"""Data out for quants: a journal's replay, or an embedded venue's traffic, as Parquet.

``export_journal(journal_dir, out_dir)`` (the CLI's ``derivex export``) replays a journal
from its first command through the batch door (``Engine.run``: events in chunks of one
reusable buffer, never the whole day in memory) and writes four files into ``out_dir``:

- ``commands.parquet``: every command record (the header and payload fields by their base
  names; aliased payloads are the same bytes under those names);
- ``events.parquet``: every event record, with the ``ts_ns`` of the command that made it;
- ``trades.parquet``: one row per trade, from the taker's FILLED event (taker account,
  order id and side, price, lots, taker fee);
- ``positions.parquet``: positions over time, one row per POSITION_CHANGED event (the
  position, its signed entry value, cash and balance after the fill).

``ParquetSink`` is the writer; ``Exchange.add_sink`` hands an embedded venue's batches to
the same sink. Needs ``pyarrow`` (the ``export`` extra). Memory: one chunk of events plus
one row group per file. Cost: the replay plus the column conversion and encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core.engine import DEFAULT_CHUNK, Engine
from derivex.core.records import EventKind, Liquidity

COMMAND_COLUMNS = (
    "seq",
    "ts_ns",
    "kind",
    "side",
    "order_type",
    "tif",
    "flags",
    "stp",
    "count",
    "account",
    "instrument",
    "order_id",
    "price_ticks",
    "qty_lots",
    "label",
)
EVENT_COLUMNS = (
    "seq",
    "kind",
    "command",
    "side",
    "liquidity",
    "reason",
    "leg",
    "account",
    "instrument",
    "order_id",
    "price_ticks",
    "qty_lots",
    "a",
    "b",
)
# (output name, event field) of the derived tables
TRADE_COLUMNS = (
    ("seq", "seq"),
    ("instrument", "instrument"),
    ("account", "account"),
    ("order_id", "order_id"),
    ("side", "side"),
    ("price_ticks", "price_ticks"),
    ("qty_lots", "qty_lots"),
    ("fee_units", "fee_units"),
)
POSITION_COLUMNS = (
    ("seq", "seq"),
    ("account", "account"),
    ("instrument", "instrument"),
    ("position_lots", "position_lots"),
    ("basis_units", "basis_units"),
    ("cash_units", "cash_units"),
    ("balance_units", "balance_units"),
)
ROW_GROUP = 1 << 17


class _Table:
    """One Parquet file written in row groups of ``ROW_GROUP`` rows: columns are buffered
    as numpy arrays and handed to pyarrow when a group is full."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts: list[dict[str, np.ndarray]] = []
        self.buffered = 0
        self.rows = 0
        self.writer: Any = None

    def add(self, columns: dict[str, np.ndarray]) -> None:
        count = len(next(iter(columns.values())))
        if not count:
            return
        self.parts.append(columns)
        self.buffered += count
        if self.buffered >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.parts:
            return
        names = list(self.parts[0])
        merged = {
            name: np.concatenate([part[name] for part in self.parts])
            if len(self.parts) > 1
            else self.parts[0][name]
            for name in names
        }
        table = pa.table(merged)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)
        self.rows += self.buffered
        self.parts, self.buffered = [], 0

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


class ParquetSink:
    """Writes commands and events into ``directory`` as the four tables of the module
    docstring. ``write(commands, events)`` takes a processed batch (each event's
    ``seq`` must be one of ``commands``' seqs, which are consecutive); ``close()`` finishes
    the files (also on leaving a ``with`` block). Raises ImportError without pyarrow."""

    def __init__(self, directory: Path | str) -> None:
        import pyarrow  # noqa: F401  (fail at once, not at the first row group)

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.commands = _Table(self.directory / "commands.parquet")
        self.events = _Table(self.directory / "events.parquet")
        self.trades = _Table(self.directory / "trades.parquet")
        self.positions = _Table(self.directory / "positions.parquet")

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Both halves of a processed batch. Cost: O(commands + events), copies."""
        self.write_commands(commands)
        self.write_events(events, commands)

    def write_commands(self, commands: np.ndarray) -> None:
        self.commands.add({name: np.ascontiguousarray(commands[name]) for name in COMMAND_COLUMNS})

    def write_events(self, events: np.ndarray, commands: np.ndarray) -> None:
        """``events`` of (some of) ``commands``; their ``ts_ns`` comes from the command
        with the same seq. ``events`` may be a view that is reused afterwards: everything
        is copied here."""
        if not len(events):
            return
        first_seq = int(commands["seq"][0])
        ts_ns = commands["ts_ns"][(events["seq"] - np.uint64(first_seq)).astype(np.int64)]
        columns = {name: np.ascontiguousarray(events[name]) for name in EVENT_COLUMNS}
        columns["ts_ns"] = np.ascontiguousarray(ts_ns)
        self.events.add(columns)
        kind = columns["kind"]
        taker = (kind == EventKind.FILLED) & (columns["liquidity"] == Liquidity.TAKER)
        if taker.any():
            fills = events[taker]
            trades = {name: np.ascontiguousarray(fills[field]) for name, field in TRADE_COLUMNS}
            trades["ts_ns"] = ts_ns[taker]
            self.trades.add(trades)
        moved = kind == EventKind.POSITION_CHANGED
        if moved.any():
            changes = events[moved]
            rows = {name: np.ascontiguousarray(changes[field]) for name, field in POSITION_COLUMNS}
            rows["ts_ns"] = ts_ns[moved]
            self.positions.add(rows)

    def close(self) -> None:
        for table in (self.commands, self.events, self.trades, self.positions):
            table.close()


@dataclass(frozen=True)
class ExportStats:
    commands: int
    events: int
    trades: int
    positions: int
    state_hash: str


def stream_journal(
    journal_dir: Path | str,
    on_batch: Any,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> Engine:
    """Replay the journal in ``journal_dir`` from its first command through the batch
    door, calling ``on_batch(commands, events_view)`` for every chunk of events (the
    commands are the run the events came from; the view is valid during the call).
    Returns the engine at the journal's end. Runs of small batches are gathered as the
    replayer gathers them (never across an incomplete mass quote), so the events are
    those of recovery. Raises JournalError for a directory without a journal, and what
    the journal reader raises."""
    from derivex.journal.format import JournalError, journal_files
    from derivex.journal.reader import JournalReader
    from derivex.journal.recovery import _recorded_config
    from derivex.journal.replay import Replayer, apply_journal

    directory = Path(journal_dir)
    if not directory.is_dir() or not journal_files(directory):
        raise JournalError(f"no journal in {directory}")
    config, _ = _recorded_config(directory)
    engine = Engine(config)

    class Streaming(Replayer):
        def _process(self, commands: np.ndarray) -> None:
            for view in self.engine.stream(commands, chunk):
                on_batch(commands, view)

    apply_journal(JournalReader(directory, from_seq=1), Streaming(engine, stage_commands=1 << 16))
    return engine


def export_journal(
    journal_dir: Path | str, out_dir: Path | str, *, chunk: int = DEFAULT_CHUNK
) -> ExportStats:
    """Write the journal's replay into ``out_dir`` as Parquet (module docstring). The
    commands of a run are written once, before its first chunk of events."""
    sink = ParquetSink(out_dir)
    last: list[int] = [0]

    def on_batch(commands: np.ndarray, events: np.ndarray) -> None:
        if int(commands["seq"][-1]) > last[0]:
            sink.write_commands(commands)
            last[0] = int(commands["seq"][-1])
        sink.write_events(events, commands)

    with sink:
        engine = stream_journal(journal_dir, on_batch, chunk=chunk)
    return ExportStats(
        sink.commands.rows,
        sink.events.rows,
        sink.trades.rows,
        sink.positions.rows,
        engine.state_hash(),
    )
