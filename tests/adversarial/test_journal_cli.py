"""The journal findings of issue 12 through the real CLI (``derivex serve``, ``verify``,
``repair`` in subprocesses), and a kill -9 loop of ``derivex serve`` under order load that
checks every acknowledged order against a replay of the journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import EventKind
from derivex.journal import list_snapshots, read
from derivex.journal.format import journal_files

from .test_journal_damage import build, digest

DERIVEX = [sys.executable, "-m", "derivex.cli"]
START_TIMEOUT_S = 300  # a cold kernel cache compiles first


ENV = {**os.environ, "COLUMNS": "1000"}  # rich wraps at the terminal width otherwise


def derivex(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DERIVEX, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def serve_refuses(data: Path) -> str:
    """Start ``derivex serve`` on ``data``: it must exit 2 at once, changing no file;
    returns its stderr."""
    before = digest(data)
    done = derivex("serve", "--data-dir", str(data), "--port", "0", "--no-demo")
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    assert "refusing to start" in done.stderr
    assert digest(data) == before, "a failed start changed files"
    return done.stderr


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    build(data)
    return data


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(template, copy)
    return copy


def test_deleted_newest_file_is_refused_then_repaired_explicitly(data: Path) -> None:
    newest = journal_files(data / "journal")[-1]
    newest.unlink()  # the snapshot at seq 128 sits on a file boundary before it
    assert newest.name in serve_refuses(data)
    verified = derivex("verify", str(data))
    assert verified.returncode == 2 and newest.name in verified.stdout, verified.stdout
    dry = derivex("repair", str(data))
    assert dry.returncode == 1 and "LOST" in dry.stdout and newest.name in dry.stdout
    assert "dry run" in dry.stderr
    applied = derivex("repair", str(data), "--apply")
    assert applied.returncode == 0, applied.stderr
    end = int(re.search(r"ends at seq (\d+)", applied.stdout).group(1))
    assert f"seqs {end + 1}..178" in applied.stdout  # exactly what was dropped
    assert (data / "journal" / "dropped-1").is_dir()  # moved, not deleted
    assert derivex("verify", str(data)).returncode == 0


def test_flipped_byte_in_the_final_batch_is_corruption_not_a_torn_tail(data: Path) -> None:
    newest = journal_files(data / "journal")[-1]
    raw = bytearray(newest.read_bytes())
    raw[-3] ^= 0x5A  # the final complete batch, covered by the clean-stop snapshot
    newest.write_bytes(bytes(raw))
    for _ in range(2):  # refused again the same way: the failed start truncated nothing
        stderr = serve_refuses(data)
        assert newest.name in stderr and "checksum mismatch" in stderr
        assert re.search(r"byte offset \d+", stderr)
    assert derivex("verify", str(data)).returncode == 2


@pytest.mark.parametrize(
    "case",
    [
        "serve.json deleted",
        "journal and snapshots deleted",
        "keys.json garbage",
        "instruments.json garbage",
        "config.json garbage",
        "empty snapshot",
    ],
)
def test_partial_or_damaged_directory_is_refused_naming_the_file(data: Path, case: str) -> None:
    journal = data / "journal"
    if case == "serve.json deleted":
        (data / "serve.json").unlink()
        named = "serve.json"
    elif case == "journal and snapshots deleted":
        for path in [*journal_files(journal), *(p for _, p in list_snapshots(journal))]:
            path.unlink()
        named = ".journal"
    elif case == "empty snapshot":
        path = list_snapshots(journal)[-1][1]
        path.write_bytes(b"")
        named = path.name
    else:
        named = case.split()[0]
        path = journal / named if named == "config.json" else data / named
        path.write_bytes(b"\x00garbage{")
    stderr = serve_refuses(data)
    assert named in stderr, stderr
    assert "Traceback" not in stderr


# ---- kill -9 under load ----


class Served:
    def __init__(self, data: Path) -> None:
        self.process = subprocess.Popen(
            [
                *DERIVEX,
                "serve",
                "--data-dir",
                str(data),
                "--port",
                "0",
                "--no-demo",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        lines = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "client_secret" in line:
                break
        text = "".join(lines)
        found = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/", text)
        assert found, text
        self.url = found.group(1)
        self.client_id = re.search(r"client_id\s+(\S+)", text).group(1)
        self.secret = re.search(r"client_secret\s+(\S+)", text).group(1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


async def _trade(served: Served, acked: set[int], seconds: float, depth: int = 8) -> None:
    """Pipeline orders on two connections until the server dies or ``seconds`` pass;
    record every acknowledged order id."""

    async def client(side: str) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(served.url.replace("http", "ws", 1) + "/ws/api/v2") as ws,
        ):
            await ws.send_json(
                {
                    "id": 0,
                    "method": "public/auth",
                    "params": {
                        "grant_type": "client_credentials",
                        "client_id": served.client_id,
                        "client_secret": served.secret,
                    },
                }
            )
            auth = json.loads((await ws.receive()).data)
            assert "result" in auth, auth
            stop_at = time.monotonic() + seconds
            sent = 0

            def order() -> dict:
                nonlocal sent
                sent += 1
                return {
                    "id": sent,
                    "method": f"private/{side}",
                    "params": {
                        "instrument_name": "BTC_USDC-PERPETUAL",
                        "amount": 0.001,
                        "type": "limit",
                        "price": 58_500 if side == "buy" else 61_500,
                    },
                }  # in the band

            for _ in range(depth):
                await ws.send_json(order())
            while time.monotonic() < stop_at:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    return  # the server died
                reply = json.loads(message.data)
                if "result" in reply:
                    acked.add(int(reply["result"]["order"]["order_id"]))
                await ws.send_json(order())

    with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError):
        await asyncio.gather(client("buy"), client("sell"))  # ends when the server dies


def test_kill_9_loop_loses_no_acknowledged_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acked: set[int] = set()
    kills = 4
    for round_ in range(kills):
        served = Served(data)
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(_trade(served, acked, seconds=30))
            loop.run_until_complete(asyncio.sleep(1.0 + 0.3 * round_))
            served.kill()  # mid-flight: orders are in the engine, on disk, on the wire
            loop.run_until_complete(asyncio.wait_for(task, 30))
        finally:
            loop.close()
    assert len(acked) > 100, len(acked)
    journal = data / "journal"
    engine = Engine(EngineConfig.from_dict(json.loads((journal / "config.json").read_text())))
    accepted: set[int] = set()
    for batch in read(journal):
        events = engine.process(batch.commands)
        placed = events[events["kind"] == EventKind.ACCEPTED]
        accepted.update(int(order) for order in placed["order_id"] if order)
    print(
        f"{kills} kills: {len(acked)} acknowledged orders, {len(accepted)} accepted in "
        f"the journal replay"
    )
    lost = sorted(acked - accepted)
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged orders not in the journal"
    assert derivex("verify", str(data)).returncode == 0
