"""The operator's index override (scope ``admin``): ``private/admin_set_index`` sets an
underlying's index to a price now, as venues let their risk desk do when the price feeds
fail or in a drill.

It is sequenced through the engine as the market feed's own input is: one INDEX command
with a single source, ``OPERATOR_SOURCE_ID``, stamped now, then a TIME command so the new
index applies at once (marks, funding, the liquidation sweep), exactly what
``Exchange.set_index`` does. Both are journaled and replayed like any command. The
simulated market feed of ``derivex serve`` (whichever process runs it: it walks the command
like every other process) goes on from that price instead of pulling the index back; a feed
of real prices would override it at its next report. A ``read`` / ``trade`` key is refused
with 13021 ``forbidden`` before anything is sequenced.

Reply: ``index_name``, ``price`` (the engine's index after the command), ``status`` and
``liquidations``: the LIQUIDATION events the override set off, counted per instrument and
stage as ``private/admin_get_liquidations`` totals them (an account-wide stage has
``instrument_name`` ""). Cost: the TIME command's (O(positions) for the sweep).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from derivex.core.records import (
    CommandKind,
    EventKind,
    Underlying,
    command_array,
    concat_commands,
    index_records,
)
from derivex.gateway import params as p
from derivex.gateway.errors import rpc_error_for
from derivex.gateway.feeds import _index_base
from derivex.gateway.methods import Context, method
from derivex.gateway.oversight import ACCOUNT_STAGES, STAGES
from derivex.oracle import OPERATOR_SOURCE_ID

ADMIN = "admin"


@method("private/admin_set_index", ("index_name", "price"), scope=ADMIN, cost=10)
def set_index(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Set ``index_name``'s index (``btc_usdc``) to ``price`` now (see the module
    docstring). -32602 for an unknown index or a price that is not a positive number of the
    perpetual's price units; the engine's reason if it refuses the command."""
    name = p.text(params, "index_name")
    venue = ctx.venue
    base = _index_base(str(name), venue.catalog)
    specs = [s for s in venue.catalog.matching(base, "future") if s.base == base] if base else []
    if not specs:
        raise p.invalid_params("index_name", f"no index {name!r} on this venue")
    ticks = specs[0].to_ticks(p.number(params, "price"), "price")
    if ticks <= 0:
        raise p.invalid_params("price", "must be positive")
    code = int(Underlying[base])
    tick = command_array(1)
    tick["kind"] = CommandKind.TIME
    records = concat_commands(
        [index_records(code, [(OPERATOR_SOURCE_ID, time.time_ns(), ticks)]), tick]
    )
    events = venue.submit_inputs(records)
    first = events[events["seq"] == events["seq"][0]] if len(events) else events
    if not len(first) or int(first["kind"][0]) != EventKind.ACCEPTED:
        raise rpc_error_for(int(first["reason"][0]) if len(first) else 0)
    index = venue.exchange.index(base)
    return {
        "index_name": f"{base.lower()}_usdc",
        "price": specs[0].price(index.price_ticks),
        "status": index.status,
        "liquidations": liquidation_counts(venue, events),
    }


def liquidation_counts(venue: Any, events: Any) -> list[dict[str, Any]]:
    """LIQUIDATION ``events`` counted per (instrument name or "", stage name), sorted."""
    counts: Counter[tuple[str, str]] = Counter()
    for event in events[events["kind"] == EventKind.LIQUIDATION]:
        stage = int(event["a"])
        spec = (
            None if stage in ACCOUNT_STAGES else venue.catalog.by_id.get(int(event["instrument"]))
        )
        counts[(spec.name if spec is not None else "", STAGES.get(stage, str(stage)))] += 1
    return [
        {"instrument_name": name, "stage": stage, "count": count}
        for (name, stage), count in sorted(counts.items())
    ]
