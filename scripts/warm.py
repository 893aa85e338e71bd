"""Compile (or load) derivex's kernels before anything runs in parallel (scripts/setup.sh runs
it): the engine and the per-command door; then a short ``derivex serve --workers 2`` with the
demo agents trading (the runtime's rings, bus and book snapshots, the journal, the pricing
service, snapshots at its clean stop); then ``derivex verify`` of what it wrote (the journal
walk and the state roots). Each step is bounded; a step that fails is reported and the others
still run (the kernels it did compile stay cached).

On a machine with two or more cores a second process (``--stages``) compiles the engine's
out-of-line libraries (TIME, transfers, subaccounts, the rare commands: called by C symbol,
``core/batch_symbol.py``) and its command stages at the same time, last first, while this
one compiles them in order through ``process_batch``: each is compiled once, by whichever
process reaches it first (the other waits on the kernel's cache lock,
``derivex._kernel_cache``, and loads it), so the two meet in the middle; it also builds the
native door module. ``--serial`` (or one core) does without it.

    python scripts/warm.py [--serve-seconds 8] [--serial] [--serve]

``--serve`` (``scripts/setup.sh`` without ``--dev``): only what ``derivex serve`` needs
before its first order: the engine, then a short single-process venue (its pricing, journal
and snapshot kernels); no per-command door, no workers, no verify (they compile on first
use).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v2/public/test", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no output: {error})"


def _stages(started: float) -> int:
    """(The second process.) Build the native door module, then compile the engine's rare
    stages and commands (each a library of its own, called by its C symbol:
    ``core/batch_symbol.py``) and the command stages ``process_batch`` inlines, in the
    reverse of the order in which its typing reaches them."""
    import numba
    import numpy as np
    from numba import types

    from derivex import Engine, door_native
    from derivex.core import batch_symbol, engine, jit
    from derivex.core.records import EVENT_DTYPE, command_array

    door_native.load()
    for name in (
        *("derivex_time_command", "derivex_transfer_command", "derivex_create_subaccount"),
        *("derivex_transfer", "derivex_rare_command"),
    ):
        batch_symbol.bind(name)
        print(f"warm: stages: {name} {time.monotonic() - started:.0f} s", flush=True)
    state = numba.typeof(Engine().state)
    events, commands = numba.typeof(np.zeros(1, EVENT_DTYPE)), numba.typeof(command_array(1))
    # (st, ev, n, cmds, i) and the extra arguments process_state passes
    base = (state, events, types.int64, commands, types.int64)
    extra = {"move_money": (types.boolean,), "cancel_all": (types.boolean,)}
    plan = ("create_account", "move_money", "cancel_all", "mass_quote", "amend_order")
    for name in (*plan, "cancel_order", "place_order"):
        with jit.as_callees():  # as process_batch compiles them (derivex.core.jit)
            getattr(engine, name).compile((*base, *extra.get(name, ())))
        print(f"warm: stages: {name} {time.monotonic() - started:.0f} s", flush=True)
    # the kernels the gateway calls from Python on a first order and a ticker (the band)
    # and an account summary: compiled for their own code, cached apart from the callee
    # libraries process_batch inlines (derivex.core.jit)
    from derivex.core.risk import margins, price_band

    for called in (price_band, margins):
        called.compile((state, types.int64))
    print(f"warm: stages: gateway kernels {time.monotonic() - started:.0f} s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-seconds", type=float, default=8.0)
    parser.add_argument("--start-timeout", type=float, default=900.0)
    parser.add_argument("--serial", action="store_true", help="one process only")
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--serve", action="store_true", help="only what a single-process derivex serve needs"
    )
    args = parser.parse_args()
    started = time.monotonic()
    if args.stages:
        return _stages(started)

    import numpy  # noqa: F401  (imported before the kernels, as in every process)

    from derivex import Engine
    from derivex.core.records import command_array

    stages = None
    if not args.serial and (os.cpu_count() or 1) > 1:
        stages = subprocess.Popen([sys.executable, __file__, "--stages"], env=os.environ)
    Engine().process(command_array(1))
    print(f"warm: engine {time.monotonic() - started:.0f} s", flush=True)
    if not args.serve:
        from derivex.door import load_binding

        load_binding()  # the per-command door's compiled entry point (Exchange.place etc.)
        print(f"warm: door {time.monotonic() - started:.0f} s", flush=True)
    failed = 0
    if stages is not None:
        try:
            failed += stages.wait(900) != 0
        except subprocess.TimeoutExpired:
            stages.kill()
            stages.wait()
            failed += 1
        if failed:
            print("warm: the stages process failed", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="derivex-warm-") as tmp:
        data = Path(tmp) / "venue"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "serve.log"  # shown when the step fails
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [
                    *(str(BIN / "derivex"), "serve"),
                    *(() if args.serve else ("--workers", "2")),
                    *("--port", str(port), "--data-dir", str(data)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + args.start_timeout
            while not _serves(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    print("warm: serve did not come up; its output ends:", file=sys.stderr)
                    print(_tail(log), file=sys.stderr)
                    failed += 1
                    break
                time.sleep(0.5)
            else:
                # the agents trade, the pricing runs
                time.sleep(min(args.serve_seconds, 3.0) if args.serve else args.serve_seconds)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(120)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        print(f"warm: serve {time.monotonic() - started:.0f} s", flush=True)
        if data.exists() and not args.serve:
            verified = subprocess.run(
                [str(BIN / "derivex"), "verify", str(data / "journal")],
                capture_output=True,
                timeout=900,
                env=os.environ,
            )
            if verified.returncode != 0:
                failed += 1
                print("warm: verify failed:", file=sys.stderr)
                print(verified.stdout.decode(errors="replace")[-4000:], file=sys.stderr)
                print(verified.stderr.decode(errors="replace")[-4000:], file=sys.stderr)
            print(f"warm: verify {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
