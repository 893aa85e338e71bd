"""Writing event records. The batch loop guarantees room before each command, so these
never check bounds. O(1)."""

from __future__ import annotations

from derivex.core.jit import kernel


@kernel
def emit(
    ev,
    n,
    seq,
    kind,
    command,
    side,
    liquidity,
    reason,
    leg,
    account,
    instrument,
    order_id,
    price,
    qty,
    a,
):
    """Write one event at ``ev[n]`` (field ``b``/``label`` zero) and return ``n + 1``."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = kind
    e["command"] = command
    e["side"] = side
    e["liquidity"] = liquidity
    e["reason"] = reason
    e["leg"] = leg
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
    e["price_ticks"] = price
    e["qty_lots"] = qty
    e["a"] = a
    e["b"] = 0
    return n + 1


@kernel
def set_label(ev, n, label):
    """Set the ``label`` (uint64) of the event just written (index ``n - 1``)."""
    ev[n - 1]["label"] = label


@kernel
def set_b(ev, n, value):
    """Set field ``b`` (int64) of the event just written."""
    ev[n - 1]["b"] = value
