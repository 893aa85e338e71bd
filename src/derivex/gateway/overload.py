"""Load shedding in front of the engine (docs/limits.md).

The queue in front of the engine has two parts, each an overload signal. The dispatcher's
batch: the orders of one event-loop tick, from every connection, waiting for their one
engine call (in ``--workers`` mode the tick also holds everything that arrived while the
previous batch's round trip blocked the loop); its length is what the next tick costs.
And the frames read but not yet handled, which the tick budgets (``turns``) park with their
connection (not read meanwhile, so the rest waits in its socket): ``Turns.delay_s``, the
age of the oldest such backlog, is how long requests wait for their turn. When the batch
passes ``shed_taking_at`` orders or the wait passes ``shed_taking_after_s``, a new order
that can take liquidity is refused at once with **10047** ``matching_engine_queue_full``;
past ``shed_all_at`` / ``shed_all_after_s`` every other new order is refused too, with
**10040** ``retry``. A shed order costs its parse and reply only, so shedding works the
backlog off and the wait falls back under the watermark: accepted orders wait about the
watermark, not seconds, at any offered load. Both carry ``data.reason = "overload"`` and
``data.class`` (``taking`` / ``passive``). ccxt raises ``DDoSProtection`` and
``ExchangeNotAvailable`` (both retryable network errors).

Never shed: reduce-only orders (closes), and everything that is not a new order: cancels,
cancel-all, edits, queries; liquidations are the engine's own and never queue here.

"Can take liquidity" is judged from the order alone and one look at the book, O(1): a
market order, an immediate-or-cancel or fill-or-kill order, or a limit order whose price
reaches the best opposite price (a buy at or above the best ask, a sell at or below the
best bid). Post-only orders never take.
"""

from __future__ import annotations

from typing import Any

from derivex.core import query
from derivex.core.records import OrderFlag, Side
from derivex.gateway.errors import QUEUE_FULL, RETRY, RpcError

TAKING = "taking"
PASSIVE = "passive"


def can_take(order: Any, state: Any) -> bool:
    """Whether ``order`` (a ``PlaceOrder``) can take liquidity now; see the module
    docstring. Reads the engine's best opposite price (``query.best_price_ticks``), O(1)."""
    if order.order_type != "limit" or order.time_in_force != "gtc":
        return True
    if order.flags & OrderFlag.POST_ONLY:
        return False
    best = query.best_price_ticks(state, order.instrument, 1 - order.side)
    if best == 0:  # an empty side (prices are positive)
        return False
    return order.price_ticks >= best if order.side == Side.BUY else order.price_ticks <= best


class Shedder:
    """The shedding decision for one gateway; counts what it shed by class. Two signals,
    either one sheds: ``queued`` new orders in the tick (``taking_at`` / ``all_at``), and
    ``delay_s``, how long requests have waited for their turn (``taking_after_s`` /
    ``all_after_s``; 0: that signal is off)."""

    def __init__(
        self,
        exchange: Any,
        taking_at: int,
        all_at: int,
        taking_after_s: float = 0.0,
        all_after_s: float = 0.0,
    ) -> None:
        # its engine's state is read at each decision (a pool growth replaces it); in
        # worker mode that is the replica's
        self.exchange = exchange
        self.taking_at = taking_at if taking_at > 0 else 1 << 62
        self.all_at = all_at if all_at > 0 else 1 << 62
        self.taking_after_s = taking_after_s if taking_after_s > 0 else float("inf")
        self.all_after_s = all_after_s if all_after_s > 0 else float("inf")
        self.shed = {TAKING: 0, PASSIVE: 0}

    def check(self, order: Any, queued: int, delay_s: float = 0.0) -> RpcError | None:
        """The error to answer ``order`` with when ``queued`` orders are already waiting
        for the engine and requests wait ``delay_s`` for their turn, or None to queue it.
        Called only once the first watermark is passed (``queued >= taking_at`` or
        ``delay_s >= taking_after_s``: the dispatcher checks that inline)."""
        if order.flags & OrderFlag.REDUCE_ONLY:
            return None
        if can_take(order, self.exchange.engine.state):
            self.shed[TAKING] += 1
            return RpcError(
                QUEUE_FULL, "matching_engine_queue_full", {"reason": "overload", "class": TAKING}
            )
        if queued >= self.all_at or delay_s >= self.all_after_s:
            self.shed[PASSIVE] += 1
            return RpcError(RETRY, "retry", {"reason": "overload", "class": PASSIVE})
        return None
