"""Cold start (issue 14): time from ``git clone`` to the first accepted order, as a new user
meets it: a local clone of ``--rev``, ``bash scripts/setup.sh`` (its own ``.venv``; pip's
download cache is shared, the kernel cache is a throwaway directory), then ``derivex serve``
and one ``private/buy`` over WebSocket with the demo key (a limit 1% below the mark of the
first perpetual) until it is accepted. Appends one row per run to
``bench/results/cold-start.json``: clone, setup and serve-to-order seconds (wall), the
children's CPU seconds, what ``scripts/warm.py`` printed, and the load before and after.

    python bench/cold_start.py --rev HEAD --label head
    python bench/cold_start.py --rev d04ab56 --label issue-14-filed

Run the trees one after the other on a quiet machine; each takes minutes (a cold compile).
Never part of the test run."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from derivex.cluster.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cold-start.json"


async def first_order(port: int, data: Path) -> dict[str, Any]:
    """Authenticate with the demo key and buy the least amount 1% below the mark of the
    first BTC perpetual; retries until the venue answers (it may still be starting)."""
    import aiohttp

    async def call(ws: Any, method: str, params: dict[str, Any]) -> Any:
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return await ws.receive_json(timeout=600)

    while True:
        try:
            key = json.loads((data / "keys.json").read_text())[0]
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"ws://127.0.0.1:{port}/ws/api/v2") as ws,
            ):
                auth = await call(
                    ws,
                    "public/auth",
                    {
                        "grant_type": "client_credentials",
                        "client_id": key["client_id"],
                        "client_secret": key["client_secret"],
                    },
                )
                if "result" not in auth:
                    raise RuntimeError(auth)
                listed = await call(
                    ws, "public/get_instruments", {"currency": "BTC", "kind": "future"}
                )
                perp = next(i for i in listed["result"] if "PERPETUAL" in i["instrument_name"])
                name = perp["instrument_name"]
                ticker = await call(ws, "public/ticker", {"instrument_name": name})
                tick = perp["tick_size"]
                price = round(ticker["result"]["mark_price"] * 0.99 / tick) * tick
                reply: dict[str, Any] = await call(
                    ws,
                    "private/buy",
                    {
                        "instrument_name": name,
                        "amount": perp["min_trade_amount"],
                        "type": "limit",
                        "price": price,
                    },
                )
                return reply
        except (OSError, aiohttp.ClientError, ValueError, KeyError, IndexError, TimeoutError):
            await asyncio.sleep(0.2)


def run(rev: str, label: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="derivex-cold-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(root / "cache")}
        env["XDG_CACHE_HOME"] = str(root / "xdg")
        env["PIP_CACHE_DIR"] = os.path.expanduser("~/.cache/pip")  # downloads, not builds
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
        load_before = os.getloadavg()
        started = time.perf_counter()
        repo = root / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        subprocess.run(["git", "-C", str(repo), "checkout", "-q", rev], check=True)
        cloned = time.perf_counter()
        setup = subprocess.run(
            ["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True
        )
        set_up = time.perf_counter()
        if setup.returncode:
            raise SystemExit(f"setup failed:\n{setup.stdout[-2000:]}\n{setup.stderr[-2000:]}")
        port = free_port()
        with open(root / "serve.log", "wb") as log:
            serve = subprocess.Popen(
                [
                    *(str(repo / ".venv" / "bin" / "derivex"), "serve"),
                    *("--data-dir", str(root / "data"), "--port", str(port)),
                ],
                cwd=repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                reply = asyncio.run(asyncio.wait_for(first_order(port, root / "data"), 900))
            finally:
                ordered = time.perf_counter()
                serve.terminate()
                serve.wait(60)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = (setup.stdout + setup.stderr).splitlines()
        return {
            "label": label,
            "rev": subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip(),
            "clone_s": round(cloned - started, 1),
            "setup_s": round(set_up - cloned, 1),
            "serve_to_order_s": round(ordered - set_up, 1),
            "clone_to_order_s": round(ordered - started, 1),
            "children_cpu_s": round(children.ru_utime + children.ru_stime, 1),
            "order_state": reply.get("result", {}).get("order", {}).get("order_state", reply),
            "warm": [line for line in lines if line.startswith("warm:")],
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--label", default="head")
    args = parser.parse_args()
    row = run(args.rev, args.label)
    print(json.dumps(row))
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
