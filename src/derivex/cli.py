"""Command line: ``derivex demo``, ``replay``, ``verify``, ``prove``, ``serve``, ``keys``
(and, as they land, bench, simulate)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from derivex.core.records import EventKind, Liquidity, command_array, concat_commands
from derivex.exchange import Exchange, Quote
from derivex.pricing.service import OptionSpec, PricingService

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
    # market data: a three-source index (the perpetual's mark follows it) and the option's
    # mark, Greeks and scenario P&Ls from the pricing service
    t = now[0]
    ex.set_index("BTC", [(0, t, 10_000_000), (1, t, 10_001_000), (2, t, 9_999_000)])
    pricing = PricingService(
        [OptionSpec(call, 10_000_000, expiry, True, 1, 500)], scenarios=ex.engine.config
    )
    ex.submit(concat_commands([pricing.records(now[0], 10_000_000), command_array(1)]))
    maker, taker = ex.create_account(), ex.create_account()
    hedger = ex.create_account(margin_mode="portfolio")
    for account in (maker, taker, hedger):
        ex.deposit(account, 1_000_000 * USDC)
    ex.mass_quote(
        maker,
        [
            Quote(perp, 9_999_500, 5_000, 10_000_500, 5_000),
            Quote(call, 68_000, 10_000, 71_000, 10_000),  # around its 695.00 mark
        ],
        label=1,
    )
    ex.place(maker, perp, "buy", 20_000, 9_998_000, label=2)
    ex.place(maker, perp, "sell", 20_000, 10_002_000, label=3)
    trades = [
        ex.place(taker, perp, "buy", 12_000, order_type="market", label=10),
        ex.place(hedger, call, "buy", 5_000, 71_000, time_in_force="ioc", label=11),
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
    margin = Table(title="margin (USDC)")
    for column in ("account", "mode", "equity", "initial", "maintenance", "available"):
        margin.add_column(column)
    for account in (maker, taker, hedger):
        summary = ex.account_summary(account)
        margin.add_row(
            str(account),
            summary.margin_mode,
            _usdc(summary.equity_units),
            _usdc(summary.initial_margin_units),
            _usdc(summary.maintenance_margin_units),
            _usdc(summary.available_funds_units),
        )
    console.print(margin)
    index = ex.index("BTC")
    console.print(
        f"index BTC {ex.format_price(perp, index.price_ticks)} ({index.sources} "
        f"sources), mark {ex.instrument_name(perp)} "
        f"{ex.format_price(perp, ex.mark(perp))}, {ex.instrument_name(call)} "
        f"{ex.format_price(call, ex.mark(call))}"
    )
    console.print(f"state hash {ex.state_hash()}")


def _journal_progress(console: Console, directory: Path, label: str) -> tuple[Any, Any]:
    """A rich progress bar sized by the journal's bytes (about one command per 64 bytes)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from derivex.journal.format import journal_files

    estimate = sum(path.stat().st_size for path in journal_files(directory)) // 64
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(label, total=max(estimate, 1))
    return progress, lambda done: progress.update(task, completed=done)


@app.command()
def replay(
    directory: Annotated[Path, typer.Argument(help="journal directory")],
    checkpoint_every: Annotated[
        int, typer.Option(help="print the state root every N commands")
    ] = 100_000,
    full: Annotated[
        bool, typer.Option("--full", help="ignore snapshots, replay from the first command")
    ] = False,
    show_hash: Annotated[
        bool, typer.Option("--hash/--no-hash", help="print the state hash")
    ] = True,
) -> None:
    """Replay a journal (latest snapshot + tail, or --full) and print the state roots at
    checkpoints. Read-only: a torn tail is reported, not cut."""
    from derivex.journal import JournalError, recover

    console = Console()
    progress, update = _journal_progress(console, directory, "replay")
    try:
        with progress:
            recovered = recover(
                directory,
                use_snapshot=not full,
                checkpoint_every=checkpoint_every,
                on_progress=update,
            )
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
        console.print(
            f"replayed {recovered.replayed:,} commands in {seconds:.3f} s "
            f"({recovered.replayed / seconds:,.0f} commands/s)"
        )
    if show_hash:
        console.print(f"state hash {recovered.engine.state_hash()}")


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="journal directory")],
    out: Annotated[Path, typer.Argument(help="directory for the Parquet files")],
    chunk: Annotated[int, typer.Option(help="events per streamed chunk")] = 1 << 16,
) -> None:
    """Replay a journal from its first command through the streaming door and write
    commands, events, trades and positions over time as Parquet files into OUT (needs
    pyarrow: pip install 'derivex[export]'). Read-only on the journal."""
    import time

    from derivex.journal import JournalError

    console = Console()
    try:
        from derivex.export import export_journal

        started = time.perf_counter()
        stats = export_journal(directory, out, chunk=chunk)
    except ImportError as error:
        console.print(f"[red]error:[/red] {error} (pip install 'derivex[export]')")
        raise typer.Exit(2) from None
    except JournalError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    seconds = time.perf_counter() - started
    console.print(
        f"exported {stats.commands:,} commands, {stats.events:,} events, {stats.trades:,} "
        f"trades, {stats.positions:,} position changes to {out} in {seconds:.2f} s"
    )
    console.print(f"state hash {stats.state_hash}")


@app.command()
def verify(
    directory: Annotated[
        Path, typer.Argument(help="journal directory (or the data directory holding it)")
    ],
) -> None:
    """Check the journal files against the segment manifest, every journal batch and
    snapshot, and that the latest snapshot + tail reaches the same state hash and root as a
    full replay. Exit code 1 on disagreement, 2 on damage or a gap."""
    from derivex.journal import JournalError, verify_directory

    if (directory / "journal").is_dir():
        directory = directory / "journal"
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
def repair(
    directory: Annotated[Path, typer.Argument(help="data directory or its journal directory")],
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="carry the repair out (without it: only print what it would drop)"
        ),
    ] = False,
) -> None:
    """Drop damaged journal data, explicitly: keep the longest verified prefix of the
    journal, move everything after it (and snapshots past its end or damaged) into
    DIRECTORY/dropped-N/, and rebuild the segment manifest. Prints exactly what is dropped.
    Exit code 0 when nothing needs repair or it was applied, 1 when a repair is needed and
    --apply was not given."""
    from derivex.journal.repair import apply_repair, plan_repair

    journal = directory / "journal" if (directory / "journal").is_dir() else directory
    plan = plan_repair(journal)
    if not plan.changes:
        typer.echo(f"{journal}: nothing to repair (journal ends at seq {plan.end_seq})")
        return
    for line in plan.lines:
        typer.echo(line)
    typer.echo(f"after the repair the journal ends at seq {plan.end_seq}")
    if not apply:
        typer.echo("dry run: nothing changed; run again with --apply to repair", err=True)
        raise typer.Exit(1)
    folder = apply_repair(plan)
    typer.echo(f"repaired{f': dropped data moved to {folder}' if folder else ''}")


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


@app.command()
def serve(
    data_dir: Annotated[Path, typer.Option(help="journal, snapshots, keys and catalogue")] = Path(
        "data"
    ),
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port for HTTP and WebSocket (0: any free one)")] = 8080,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="market-making and noise-trading agents")
    ] = True,
    fsync: Annotated[
        str,
        typer.Option(
            help="journal durability: group (default: acknowledged after the fdatasync that "
            "covers it, one flush for every batch pending), batch (one fdatasync per "
            "batch), interval (acknowledged when written, flushed every 5 ms: a power loss "
            "can lose acknowledged orders) or none (tests)"
        ),
    ] = "group",
    log_format: Annotated[str, typer.Option(help="json or console")] = "json",
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            help="0: one process; N: the multi-process runtime (engine, journal writer, market "
            "data and N gateway workers sharing the port over shared-memory rings)"
        ),
    ] = 0,
    auth_backoff: Annotated[
        str,
        typer.Option(
            help="failed logins: FREE,BASE_S,MAX_S (after FREE failures per connection or client "
            "id, refuse for BASE_S doubling up to MAX_S)"
        ),
    ] = "5,1,60",
    submit_timeout: Annotated[
        float,
        typer.Option(
            help="with --workers: seconds a worker waits for its commands to be sequenced and "
            "durable before answering 13888 (outcome unknown: query the order)"
        ),
    ] = 10.0,
    worker_nice: Annotated[
        int,
        typer.Option(
            help="with --workers: niceness added to the gateway workers (0-19), so that the "
            "engine and journal writer they wait for win the CPU on a machine with few cores"
        ),
    ] = 0,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE: override a resource limit or overload watermark (repeatable; "
            "names and defaults in docs/limits.md, e.g. max_connections_per_address=32)"
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="comma-separated nats:// URLs: cluster mode, the domain's log on NATS "
            "JetStream (docs/cluster.md); replies leave after the frame's PubAck"
        ),
    ] = None,
    domain: Annotated[str, typer.Option(help="with --cluster: the risk domain")] = "main",
    role: Annotated[
        str, typer.Option(help="with --cluster: leader, standby (takes over) or replica")
    ] = "standby",
    node: Annotated[str, typer.Option(help="with --cluster: this node's name")] = "node",
    lease_ttl: Annotated[int, typer.Option(help="with --cluster: lease TTL, seconds")] = 2,
    root_every: Annotated[
        int, typer.Option(help="with --cluster: K, a state root compared every K frames")
    ] = 16,
) -> None:
    """Run the venue behind a Deribit-compatible API (JSON-RPC over HTTP and WebSocket on
    one port, Prometheus metrics at /metrics): recover or create the journal in DATA_DIR,
    list the default instruments, feed simulated index prices and option marks, and (with
    --demo) keep the books alive with agents. Prints the URL and a demo API key."""
    import asyncio
    import logging

    from derivex.gateway import serve as serving
    from derivex.gateway.auth_limits import AuthLimits
    from derivex.gateway.datadir import DataDirectoryError
    from derivex.gateway.limits import Limits
    from derivex.gateway.telemetry import configure_logging
    from derivex.journal import JournalError

    try:
        auth_limits = AuthLimits.parse(auth_backoff)
        limits = Limits.from_options(limit or ())
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    level = getattr(logging, log_level.upper(), logging.INFO)
    configure_logging(level=level, json=log_format == "json")
    refused = (DataDirectoryError, JournalError)  # damage: refused, nothing changed
    if cluster is not None:
        options = (cluster, domain, role, node, lease_ttl, root_every)
        _serve_cluster(options, data_dir, host, port, demo, auth_limits, limits)
        return
    if workers:
        from derivex.gateway.worker import run_workers

        try:
            report = run_workers(
                data_dir,
                workers=workers,
                host=host,
                port=port,
                demo=demo,
                fsync=fsync,
                log_level=level,
                json_logs=log_format == "json",
                auth_backoff=auth_backoff,
                submit_timeout_s=submit_timeout,
                limits=limits,
                worker_nice=worker_nice,
                announce=lambda url, opened: _announce(url, opened, data_dir),
            )
        except refused as error:
            typer.echo(f"error: refusing to start: {error}", err=True)
            raise typer.Exit(2) from None
        typer.echo("derivex stopped: " + json.dumps(_runtime_summary(report)))
        if report.failure:
            typer.echo(f"error: {report.failure}", err=True)
            raise typer.Exit(1)
        return
    try:
        opened = serving.open_venue(data_dir, fsync=fsync, demo=demo)
    except refused as error:
        typer.echo(f"error: refusing to start: {error}", err=True)
        raise typer.Exit(2) from None
    for line in opened.report:
        typer.echo(line, err=True)
    try:
        asyncio.run(
            serving.run(
                opened,
                host,
                port,
                lambda gateway: _announce(gateway.url, opened, data_dir),
                demo=demo,
                auth_limits=auth_limits,
                limits=limits,
            )
        )
    except OSError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _serve_cluster(
    cluster: tuple[str, str, str, str, int, int],
    data_dir: Path,
    host: str,
    port: int,
    demo: bool,
    auth_limits: Any,
    limits: Any,
) -> None:
    """``serve --cluster``: one node of a domain (``derivex.cluster.serve``); exits with
    its code (2: diverged, 3: fenced)."""
    from derivex.cluster.serve import ClusterOptions, serve_cluster
    from derivex.gateway.datadir import DataDirectoryError

    urls, domain, role, node, lease_ttl, root_every = cluster
    try:
        options = ClusterOptions(
            [url for url in urls.split(",") if url],
            domain,
            role,
            node,
            ttl_s=lease_ttl,
            every=root_every,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        code = serve_cluster(
            options,
            data_dir,
            host,
            port,
            lambda gateway, opened: _announce(gateway.url, opened, data_dir),
            demo=demo,
            auth_limits=auth_limits,
            limits=limits,
        )
    except DataDirectoryError as error:
        typer.echo(f"error: refusing to start: {error}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


def _runtime_summary(report: Any) -> dict[str, Any]:
    """One line for the operator (and the tests) when the multi-process venue stops: the
    engine's last seq and state hash, and per gateway worker instance its round trips and
    its replica's state hash (equal to the engine's when the replica followed exactly)."""
    engine = report.engine or {}
    return {
        "clean": report.clean,
        "failure": report.failure,
        "restarts": report.restarts,
        "engine": {key: engine.get(key) for key in ("seq", "state_hash")},
        "workers": [
            {
                "index": worker.get("index"),
                "generation": worker.get("generation"),
                "round_trips": worker.get("round_trips"),
                "frames_verified": (worker.get("replica") or {}).get("frames_verified"),
                "state_hash": (worker.get("replica") or {}).get("state_hash"),
            }
            for worker in report.workers
        ],
    }


def _announce(url: str, opened: Any, data_dir: Path) -> None:
    """Print where the venue listens and the demo API key."""
    from derivex.gateway import serve as serving

    key, catalog = opened.demo_key, opened.venue.catalog
    options = len(catalog) - serving.perpetual_count(catalog)
    typer.echo(
        f"derivex serving {serving.perpetual_count(catalog)} perpetuals and "
        f"{options} options ({data_dir}/)"
    )
    typer.echo(f"  REST       {url}/api/v2/public/get_instruments")
    typer.echo(f"  WebSocket  {url.replace('http', 'ws', 1)}/ws/api/v2")
    typer.echo(f"  metrics    {url}/metrics")
    typer.echo(f"demo API key (account {key.account}, scopes {','.join(key.scopes)}):")
    typer.echo(f"  client_id     {key.client_id}")
    typer.echo(f"  client_secret {key.client_secret}")
    typer.echo(
        f"  ccxt.deribit({{'apiKey': '{key.client_id}', 'secret': "
        f"'{key.client_secret}', 'urls': {{'api': {{'rest': '{url}'}}}}}})"
    )


@app.command()
def stress(
    seed: Annotated[int, typer.Option(help="seed of the population and the index feed")] = 7,
    accounts: Annotated[
        int, typer.Option(help="trading accounts, market makers included")
    ] = 10_000,
    out: Annotated[Path, typer.Option(help="PNG plot of price, fund and liquidations")] = Path(
        "stress.png"
    ),
    minutes: Annotated[
        float,
        typer.Option(help="simulated minutes: build-up, crash over a third, rebound over a third"),
    ] = 30.0,
) -> None:
    """Liquidation stress test: ACCOUNTS levered accounts on a BTC perpetual and options
    chain through a -30% index crash and a partial rebound. Prints liquidations by stage,
    the insurance fund before and after, ADL events, bad debt and the state hash (same seed,
    same hash), and writes a PNG plot."""
    import time

    from derivex.sim.stress import StressSpec, plot_stress, run_stress

    try:
        spec = StressSpec(seed=seed, accounts=accounts, minutes=minutes)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    console = Console()
    started = time.perf_counter()
    with console.status(f"simulating {accounts:,} accounts over {minutes:g} minutes"):
        result = run_stress(spec)
    wall_s = time.perf_counter() - started
    assert result.exchange is not None
    try:  # conservation, net positions, books and margin sums after the run
        result.exchange.check_invariants()
        broken = ""
    except AssertionError as error:
        broken = str(error)
    plot_stress(result, out)
    summary = result.summary()
    counts = summary["counts"]
    table = Table(title=f"stress: seed {seed}, {accounts:,} accounts, {minutes:g} minutes")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("market makers / traders", f"{counts['market_makers']:,} / {counts['traders']:,}"),
        (
            "option traders / portfolio margin",
            f"{counts['option_traders']:,} / {counts['portfolio_accounts']:,}",
        ),
        (
            "steps / commands / events",
            f"{counts['steps']:,} / {counts['commands']:,} / {counts['events']:,}",
        ),
        (
            "index start / low / end (USDC)",
            f"{result.index_ticks[0] / 100:,.2f} / {summary['index_low_ticks'] / 100:,.2f} / "
            f"{summary['index_last_ticks'] / 100:,.2f}",
        ),
        ("insurance fund before (USDC)", _usdc(summary["fund_before_units"])),
        ("insurance fund after (USDC)", _usdc(summary["fund_after_units"])),
        ("insurance fund low (USDC)", _usdc(summary["fund_min_units"])),
        (
            "insurance fund equity low / end (USDC)",
            f"{_usdc(summary['fund_equity_min_units'])} / "
            f"{_usdc(summary['fund_equity_last_units'])}",
        ),
        ("negative balances the fund took over (USDC)", _usdc(summary["fund_absorbed_units"])),
        ("socialised losses (USDC)", _usdc(counts["socialised_units"])),
        ("bad debt (USDC)", _usdc(summary["bad_debt_units"])),
        (
            "accounts liquidated / bankrupt",
            f"{counts['liquidated_accounts']:,} / {counts['bankrupt_accounts']:,}",
        ),
        (
            "below maintenance, most / at the end",
            f"{summary['below_maintenance_max']:,} / {summary['below_maintenance_last']:,}",
        ),
        ("negative equity left at the end (USDC)", _usdc(summary["negative_equity_last_units"])),
    ]
    rows += [
        (f"liquidation events: {stage}", f"{count:,}")
        for stage, count in summary["liquidations"].items()
    ]
    rows += [("ADL events", f"{summary['adl_events']:,}")]
    rows += [(f"rejected {reason}", f"{count:,}") for reason, count in summary["rejects"].items()]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"plot {out}")
    console.print(f"wall time {wall_s:.1f} s")
    console.print(f"state hash {result.state_hash}")
    if broken:
        console.print(f"[red]invariants broken:[/red] {broken}")
        raise typer.Exit(1)
    console.print("invariants hold")


cluster_app = typer.Typer(help="cluster mode on NATS JetStream", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("up")
def cluster_up(
    directory: Annotated[
        Path, typer.Option(help="NATS stores, one data directory per domain, node logs")
    ] = Path("cluster"),
    domain: Annotated[
        list[str] | None, typer.Option(help="a risk domain (repeatable; default: main)")
    ] = None,
    lifetime: Annotated[float, typer.Option(help="stop after this many seconds")] = 3600.0,
) -> None:
    """Start a local 3-node NATS cluster (loopback, sync_interval: always) and, per
    domain, a leader and a standby (derivex serve --cluster); a node that exits is started
    again as a standby. The leading node prints its URL and demo key (one key for every
    domain); the router prints its URL (one API over all domains). Ctrl-C stops all."""
    from derivex.cluster.up import LocalVenue

    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    venue = LocalVenue(directory, domain or ["main"], lifetime_s=lifetime, echo=_echo_line)
    venue.run(lambda: bool(stopping))
    typer.echo(f"cluster stopped ({venue.restarts} node restarts)")


@cluster_app.command("roots")
def cluster_roots(
    domain: Annotated[
        list[str],
        typer.Argument(
            help="NAME[@STREAM_SEQ] (a JetStream domain, with --urls) or NAME=JOURNAL_DIR"
            "[@FRAME] (a file journal); the whole log when no seq is given"
        ),
    ],
    urls: Annotated[str, typer.Option(help="comma-separated nats:// URLs")] = "",
    ids: Annotated[
        str, typer.Option(help="NAME=ID,...: also audit transfers and global conservation")
    ] = "",
    account: Annotated[
        int | None, typer.Option(help="with --ids: this account's balance in every domain")
    ] = None,
) -> None:
    """The root of roots over the domains' state roots at the given stream seqs, computed
    from the logs alone (each replayed through a fresh engine); with --ids, the transfer
    audit too (and with --account, that account's balance per domain). Exits 1 when the
    audit finds a problem, 2 on bad arguments."""
    from derivex.cluster.domains import (
        JournalLog,
        account_view,
        audit,
        parse_domains,
        replay,
        root_of_roots,
    )

    logs: dict[str, object] = {}
    frames: dict[str, int | None] = {}
    try:
        domain_ids = parse_domains(ids) if ids else {}
        for spec in domain:
            spec, _, at = spec.partition("@")
            name, _, directory = spec.partition("=")
            frames[name] = int(at) if at else None
            if directory:
                logs[name] = JournalLog(directory)
            elif urls:
                from derivex.cluster.jetstream import JetStreamLog

                logs[name] = JetStreamLog(urls.split(","), name, writer="roots", retry_for=10.0)
            else:
                raise ValueError(f"{name}: give --urls or NAME=JOURNAL_DIR")
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        replays = {name: replay(log, frames=frames[name]) for name, log in logs.items()}  # type: ignore[arg-type]
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        for log in logs.values():
            close = getattr(log, "close", None)
            if close is not None:
                close()
    entries = {name: (rep.frames, rep.root()) for name, rep in replays.items()}
    for name, (frame, root) in sorted(entries.items()):
        typer.echo(f"{name} stream seq {frame} root {root.hex()}")
    typer.echo(f"root of roots {root_of_roots(entries).hex()}")
    if domain_ids:
        result = audit(replays, domain_ids)
        in_flight = sum(result.in_flight.values()) + sum(result.refunds_pending.values())
        typer.echo(
            f"balances {result.balances}, deposits - withdrawals "
            f"{result.deposits_minus_withdrawals}, in flight {in_flight}"
        )
        if account is not None:
            for name, row in account_view(replays, domain_ids, account).items():
                typer.echo(
                    f"account {account} in {name}: balance {row['balance_units']}, in flight "
                    f"{row['in_flight_units']}, refund due {row['refund_due_units']}"
                )
        for problem in result.problems:
            typer.echo(f"problem: {problem}")
        if result.problems:
            raise typer.Exit(1)
        typer.echo("transfers and conservation hold")


def _echo_line(line: str) -> None:
    typer.echo(line)
    sys.stdout.flush()


keys_app = typer.Typer(help="API keys of a served venue", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    account: Annotated[int, typer.Option(help="account the key acts for")],
    scope: Annotated[
        str,
        typer.Option(help="comma-separated: read, trade, admin (the operator dashboard's)"),
    ] = "read,trade",
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    data_dir: Annotated[Path, typer.Option(help="the served venue's data directory")] = Path(
        "data"
    ),
) -> None:
    """Create an API key for ACCOUNT (an existing account of the venue in DATA_DIR); prints
    its client id and secret (shown only here). A running server picks it up at once."""
    from derivex.gateway.keys import KeyStore, parse_scopes

    try:
        scopes = parse_scopes(scope)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if account < 3:
        typer.echo("error: accounts 0-2 are system accounts", err=True)
        raise typer.Exit(2)
    problem = _account_problem(data_dir, account)
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    key = KeyStore(data_dir).create(account, scopes, name)
    typer.echo(f"client_id     {key.client_id}")
    typer.echo(f"client_secret {key.client_secret}")
    typer.echo(f"account {key.account}, scopes {','.join(key.scopes)}")


def _account_problem(data_dir: Path, account: int) -> str:
    """Why no key can be made for ``account`` in the venue of ``data_dir`` ("" if it can):
    the account must exist in the venue's state (its latest snapshot and journal, read
    without changing anything; a running server may hold them)."""
    from derivex.core import query
    from derivex.journal import JournalError, recover

    journal = data_dir / "journal"
    if not journal.is_dir():
        return f"no venue in {data_dir} (no {journal}): start it with derivex serve first"
    try:
        recovered = recover(journal, roots=False)
    except JournalError as error:
        return f"cannot read the venue in {data_dir}: {error}"
    count = query.account_count(recovered.engine.state)
    if account >= count:
        return f"account {account} does not exist in {data_dir} (accounts 3-{count - 1})"
    return ""


@keys_app.command("list")
def keys_list(
    data_dir: Annotated[Path, typer.Option(help="the served venue's data directory")] = Path(
        "data"
    ),
) -> None:
    """List keys (never their secrets)."""
    from derivex.gateway.keys import KeyStore

    for key in KeyStore(data_dir).list_keys():
        typer.echo(f"{key.client_id}  account {key.account}  {','.join(key.scopes)}  {key.name}")


@keys_app.command("revoke")
def keys_revoke(
    client_id: Annotated[str, typer.Argument(help="the key's client id")],
    data_dir: Annotated[Path, typer.Option(help="the served venue's data directory")] = Path(
        "data"
    ),
) -> None:
    """Revoke a key. A running server (every worker) refuses it from its next use of the
    key, and closes the WebSockets authenticated with it at its next keys-file poll
    (every 0.1 s): this command returns after two polls, so they are closed by then."""
    import time

    from derivex.gateway.keys import KEYS_POLL_S, KeyStore

    if not KeyStore(data_dir).revoke(client_id):
        typer.echo(f"no key {client_id}", err=True)
        raise typer.Exit(1)
    time.sleep(2 * KEYS_POLL_S)


if __name__ == "__main__":
    app()
