"""``private/get_order_state_by_label``: the caller's orders carrying a label, open or
closed, as Deribit answers it.

This is what a client does after a lost reply (a timeout, 13888 ``outcome_unknown``, a
leader killed between its publish and its answer): it asks for the label it gave the
order before sending it again. In cluster mode a new leader's order records are rebuilt
from the stream (``cluster.read_replica.VenueRecords``), labels included (the command
carries the label's key; the label text is in the data directory's label files), so the
answer reflects exactly what the log holds: an order it finds is in the log, and one it
does not find was never sequenced.

Cost: O(open orders + closed orders kept) of the account.
"""

from __future__ import annotations

from typing import Any

from derivex.gateway import params as p
from derivex.gateway import shapes
from derivex.gateway.methods import Context, method

__all__ = ["get_order_state_by_label"]


@method("private/get_order_state_by_label", ("currency", "label"), scope="read")
def get_order_state_by_label(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Open orders first, then closed ones (newest kept history), of ``currency``'s
    instruments; an empty list when none carries ``label``."""
    label = p.text(params, "label")
    wanted = {spec.instrument for spec in ctx.venue.catalog.matching(p.text(params, "currency"))}
    account = ctx.session.account
    found = [r for r in ctx.venue.open_orders(account, wanted) if r.label == label]
    found += [
        r for r in ctx.venue.closed_orders(account) if r.instrument in wanted and r.label == label
    ]
    return [shapes.order(record, ctx.venue.catalog) for record in found]
