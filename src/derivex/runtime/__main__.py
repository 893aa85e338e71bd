"""``python -m derivex.runtime``: run the multi-process runtime with the synthetic front end
(matching only: risk checks off, as the synthetic flow carries no index or marks) until
SIGINT/SIGTERM (or ``--seconds``); exit status 0 after a clean stop."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from derivex.core.config import EngineConfig
from derivex.runtime import RuntimeConfig, serve
from derivex.runtime.frontends import setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivex.runtime", description=__doc__)
    parser.add_argument("--name", default="derivex")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--journal",
        default=None,
        help="journal directory (new, or resumed with its state; workers keep replicas)",
    )
    parser.add_argument("--fsync", default="group", choices=("group", "batch", "interval", "none"))
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument(
        "--commands", type=int, default=None, help="commands per worker (default: until stopped)"
    )
    parser.add_argument("--pause-probability", type=float, default=0.01)
    parser.add_argument("--accounts", type=int, default=16)
    parser.add_argument(
        "--ready-file", default=None, help="write the pids here as JSON once the runtime runs"
    )
    parser.add_argument("--report-file", default=None, help="write the final report here")
    args = parser.parse_args(argv)
    config = RuntimeConfig(
        # the synthetic flow sends no index or marks: matching only
        engine=EngineConfig(risk_checks=False),
        name=args.name,
        workers=args.workers,
        setup=setup(args.accounts),
        journal_dir=args.journal,
        fsync=args.fsync,
        front_end_options={
            "commands": args.commands,
            "accounts": args.accounts,
            "pause_probability": args.pause_probability,
        },
    )

    def ready(runtime) -> None:
        if args.ready_file:
            status = runtime.status()
            status["removed_stale"] = runtime.report.removed_stale
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(json.dumps(status))
            tmp.replace(args.ready_file)

    report = serve(config, seconds=args.seconds, on_ready=ready)
    text = json.dumps(dataclasses.asdict(report) | {"clean": report.clean}, default=str)
    if args.report_file:
        Path(args.report_file).write_text(text)
    print(text)
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
