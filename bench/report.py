"""What every benchmark records about the machine and how it writes its results."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numba
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def machine(**extra: Any) -> dict[str, Any]:
    """CPU count, versions and the load average at the start of the run."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "load_before": os.getloadavg(),
        **extra,
    }


def finish(results: dict[str, Any], table: Table, console: Console, name: str, quick: bool) -> Path:
    """Record the load at the end, print the table, write ``results/<name>.json`` (or
    ``<name>-quick.json`` for a smoke run) and return its path."""
    results["machine"]["load_after"] = os.getloadavg()
    console.print(table)
    console.print(
        f"load average before {results['machine']['load_before']}, "
        f"after {results['machine']['load_after']}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (f"{name}-quick.json" if quick else f"{name}.json")
    out.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {out}")
    return out
