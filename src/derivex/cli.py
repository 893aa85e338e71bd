"""Command line: ``derivex demo``, ``replay``, ``verify``, ``prove`` (and, as they land,
serve, bench, simulate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from derivex.core.records import EventKind, Liquidity
from derivex.exchange import Exchange, Quote

app = typer.Typer(
    help="derivex: deterministic exchange core for crypto derivatives", no_args_is_help=True
)

DEMO_START_NS = 1_798_761_600_000_000_000  # 2027-01-01T00:00:00Z, a fixed demo clock
USDC = 1_000_000  # atomic units per USDC


@app.callback()
def main() -> None:
    """derivex command line."""


def _usdc(units: int) -> str:
    return f"{units / USDC:,.6f}"


@app.command()
def demo() -> None:
    """Create instruments and accounts, trade, and print the book, fills, positions and
    balances (a deterministic session: same output every run)."""
    console = Console()
    now = [DEMO_START_NS]

    def clock() -> int:
        now[0] += 1_000_000
        return now[0]

    ex = Exchange(clock=clock)
    # prices in 0.01 USDC, quantities in 0.0001 BTC: one tick x one lot = 1e-6 USDC
    perp = ex.add_perpetual(
        "BTC", tick_size_ticks=50, min_trade_lots=1, maker_fee_ppm=-100, taker_fee_ppm=500
    )
    expiry = 1_798_790_400_000_000_000  # 2027-01-01T08:00Z
    call = ex.add_option(
        "BTC",
        expiry,
        10_000_000,
        "call",
        tick_size_ticks=500,
        min_trade_lots=1000,
        maker_fee_ppm=200,
        taker_fee_ppm=300,
    )
    maker, taker, hedger = (ex.create_account() for _ in range(3))
    for account in (maker, taker, hedger):
        ex.deposit(account, 1_000_000 * USDC)
    ex.mass_quote(
        maker,
        [
            Quote(perp, 9_999_500, 5_000, 10_000_500, 5_000),
            Quote(call, 450_000, 10_000, 470_000, 10_000),
        ],
        label=1,
    )
    ex.place(maker, perp, "buy", 20_000, 9_998_000, label=2)
    ex.place(maker, perp, "sell", 20_000, 10_002_000, label=3)
    trades = [
        ex.place(taker, perp, "buy", 12_000, order_type="market", label=10),
        ex.place(hedger, call, "buy", 5_000, 470_000, time_in_force="ioc", label=11),
        ex.place(taker, perp, "sell", 3_000, 9_999_500, post_only=True, label=12),
        ex.place(hedger, perp, "sell", 8_000, 9_999_000, label=13),
    ]
    ex.check_invariants()

    fills = Table(title="fills (taker side)")
    for column in ("instrument", "side", "price USDC", "qty BTC", "fee USDC", "liquidity"):
        fills.add_column(column)
    for result in trades:
        for event in result.events[result.events["kind"] == EventKind.FILLED]:
            if event["liquidity"] != Liquidity.TAKER:
                continue
            instrument = int(event["instrument"])
            fills.add_row(
                ex.instrument_name(instrument),
                "buy" if event["side"] == 0 else "sell",
                ex.format_price(instrument, int(event["price_ticks"])),
                f"{int(event['qty_lots']) / 10_000:.4f}",
                _usdc(int(event["fee_units"])),
                "taker",
            )
    console.print(fills)
    for instrument in (perp, call):
        depth = ex.depth(instrument)
        book = Table(title=f"book {ex.instrument_name(instrument)}")
        for column in ("bid qty", "bid", "orders", "ask", "ask qty", "orders "):
            book.add_column(column)
        for row in range(max(len(depth.bids), len(depth.asks))):
            bid = depth.bids[row] if row < len(depth.bids) else None
            ask = depth.asks[row] if row < len(depth.asks) else None
            book.add_row(
                f"{bid[1] / 10_000:.4f}" if bid else "",
                ex.format_price(instrument, bid[0]) if bid else "",
                str(bid[2]) if bid else "",
                ex.format_price(instrument, ask[0]) if ask else "",
                f"{ask[1] / 10_000:.4f}" if ask else "",
                str(ask[2]) if ask else "",
            )
        console.print(book)
    positions = Table(title="positions")
    for column in ("account", "instrument", "qty BTC", "entry value USDC"):
        positions.add_column(column)
    for account in (maker, taker, hedger):
        for position in ex.positions(account):
            positions.add_row(
                str(account),
                ex.instrument_name(position.instrument),
                f"{position.qty_lots / 10_000:+.4f}",
                _usdc(position.basis_units),
            )
    console.print(positions)
    balances = Table(title="balances (USDC)")
    balances.add_column("account")
    balances.add_column("balance")
    names = {0: "fee pool", 1: "insurance fund", 2: "P&L clearing"}
    for account, units in ex.balances().items():
        balances.add_row(names.get(account, str(account)), _usdc(units))
    console.print(balances)
    console.print(f"state hash {ex.state_hash()}")


def _journal_progress(console: Console, directory: Path, label: str) -> tuple[Any, Any]:
    """A rich progress bar sized by the journal's bytes (about one command per 64 bytes)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from derivex.journal.format import journal_files

    estimate = sum(path.stat().st_size for path in journal_files(directory)) // 64
    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                        transient=True)
    task = progress.add_task(label, total=max(estimate, 1))
    return progress, lambda done: progress.update(task, completed=done)


@app.command()
def replay(
    directory: Annotated[Path, typer.Argument(help="journal directory")],
    checkpoint_every: Annotated[int, typer.Option(
        help="print the state root every N commands")] = 100_000,
    full: Annotated[bool, typer.Option(
        "--full", help="ignore snapshots, replay from the first command")] = False,
    show_hash: Annotated[bool, typer.Option(
        "--hash/--no-hash", help="print the state hash")] = True,
) -> None:
    """Replay a journal (latest snapshot + tail, or --full) and print the state roots at
    checkpoints. Read-only: a torn tail is reported, not cut."""
    from derivex.journal import JournalError, recover

    console = Console()
    progress, update = _journal_progress(console, directory, "replay")
    try:
        with progress:
            recovered = recover(directory, use_snapshot=not full,
                                checkpoint_every=checkpoint_every, on_progress=update)
    except JournalError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    table = Table(title=f"checkpoints of {directory}")
    table.add_column("seq", justify="right")
    table.add_column("state root")
    for point in recovered.checkpoints:
        table.add_row(str(point.seq), point.root)
    table.add_row(str(recovered.seq), recovered.root.hex() if recovered.root else "")
    console.print(table)
    for line in recovered.report():
        console.print(line)
    seconds = recovered.seconds.get("replay", 0.0)
    if seconds > 0:
        console.print(f"replayed {recovered.replayed:,} commands in {seconds:.3f} s "
                      f"({recovered.replayed / seconds:,.0f} commands/s)")
    if show_hash:
        console.print(f"state hash {recovered.engine.state_hash()}")


@app.command()
def verify(directory: Annotated[Path, typer.Argument(help="journal directory")]) -> None:
    """Check every journal batch and snapshot, and that the latest snapshot + tail reaches
    the same state hash and root as a full replay. Exit code 1 on disagreement, 2 on
    damage."""
    from derivex.journal import JournalError, verify_directory

    console = Console()
    progress, update = _journal_progress(console, directory, "verify")
    try:
        with progress:
            audit = verify_directory(directory, on_progress=update)
    except JournalError as error:
        console.print(f"[red]damaged:[/red] {error}")
        raise typer.Exit(2) from None
    for line in audit.lines:
        console.print(line)
    console.print("[green]OK[/green]" if audit.ok else "[red]MISMATCH[/red]")
    if not audit.ok:
        raise typer.Exit(1)


@app.command()
def prove(
    directory: Annotated[Path, typer.Argument(help="journal directory")],
    account: Annotated[int, typer.Argument(help="account id")],
) -> None:
    """Print the JSON inclusion proof of an account in the state root after the last
    journaled command (check it with derivex.journal.verify_proof)."""
    from derivex.journal import JournalError, recover
    from derivex.journal import prove as make_proof

    try:
        recovered = recover(directory, roots=False)
        proof = make_proof(recovered, account)
    except (JournalError, KeyError) as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    typer.echo(json.dumps(proof, indent=2))


if __name__ == "__main__":
    app()
