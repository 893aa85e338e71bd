"""Cross-domain transfers at the gateway (issue 17, core/escrow.py). A cluster node's
gateway serves one risk domain; collateral moves to another domain in two phases, the
second carried by the relay (``derivex.cluster.relay``).

- ``private/submit_transfer_to_domain`` (scope ``trade``): ``domain`` (the destination's
  id, 0-15) and ``amount`` (USDC): a TRANSFER_OUT of the caller's account, checked like a
  withdrawal (free collateral after initial margin). Returns the transfer's number, the
  destination and the account's balance after it. The relay credits the amount in the
  destination (or, if it refuses, refunds it here).
- ``private/get_domain_transfers`` (scope ``read``): this domain's transfer table (per peer
  domain: sent, refunded, credited from it, refused, the processed marks) and the escrow
  totals.

Errors: -32602 for a malformed parameter, the engine's reasons mapped by ``REASON_ERRORS``
(10009 ``not_enough_funds`` beyond the free collateral, 11030 ``other_reject``).
Cost: one engine command.
"""

from __future__ import annotations

from typing import Any

from derivex.core import query
from derivex.core.records import CommandKind, EventKind, command_array
from derivex.gateway import params as p
from derivex.gateway.catalog import UNITS_PER_USDC
from derivex.gateway.errors import invalid_params, rpc_error_for
from derivex.gateway.methods import ENGINE, Context, method
from derivex.gateway.numbers import units


@method("private/submit_transfer_to_domain", ("domain", "amount"), scope="trade", cost=ENGINE)
def submit_transfer_to_domain(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    domain = p.integer(params, "domain", low=0, high=query.MAX_DOMAINS - 1)
    amount = units(p.number(params, "amount"), 1, UNITS_PER_USDC, "amount")
    if amount <= 0:
        raise invalid_params("amount", "must be positive")
    records = command_array(1)
    records["kind"] = CommandKind.TRANSFER_OUT
    records["account"] = ctx.session.account
    records["domain"] = domain
    records["amount_units"] = amount
    events = ctx.venue.submit_inputs(records)
    sent = events[events["kind"] == EventKind.TRANSFER_SENT]
    if not len(sent):
        raise rpc_error_for(int(events["reason"][0]))
    return {
        "transfer_id": int(sent["order_id"][0]),
        "domain": domain,
        "amount": amount / UNITS_PER_USDC,
        "balance": int(sent["balance_units"][0]) / UNITS_PER_USDC,
    }


@method("private/get_domain_transfers", (), scope="read")
def get_domain_transfers(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    state = ctx.venue.exchange.engine.state
    escrow_out, credited_in = query.escrow(state)
    return {
        "escrow_out": escrow_out / UNITS_PER_USDC,
        "credited_in": credited_in / UNITS_PER_USDC,
        "domains": [
            {"domain": peer, **row} for peer, row in sorted(query.transfers(state).items())
        ],
    }
