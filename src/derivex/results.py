"""Typed results of the embedded venue's commands (``derivex.Exchange``).

``OrderResult`` is what ``Exchange.place`` / ``cancel`` / ``amend`` return, on the fast
path (``derivex.door``) and the slow one alike: a summary row (outcome, order id, price,
lots ordered and filled, notional) and the command's events, neither copied. Everything else
(the reason, the fills as ``Fill`` objects, the average price) is computed when read.
"""

from __future__ import annotations

from abc import ABCMeta
from dataclasses import dataclass, field

import numpy as np

from derivex.core.records import EVENT_DTYPE, CommandKind, EventKind, Liquidity, Reason
from derivex.core.summary import ROW_WIDTH, Outcome, Row

_STATUS = {
    Outcome.REJECTED: "rejected",
    Outcome.RESTING: "resting",
    Outcome.FILLED: "filled",
    Outcome.EXPIRED: "expired",
    Outcome.CANCELLED: "cancelled",
}
STATUS_NAMES = tuple(_STATUS[Outcome(code)] for code in range(len(_STATUS)))


@dataclass(frozen=True)
class Fill:
    order_id: int
    price_ticks: int
    qty_lots: int
    fee_units: int
    liquidity: Liquidity
    remaining_lots: int


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command: accepted or the reject reason, and all its events."""

    accepted: bool
    reason: Reason
    events: np.ndarray = field(repr=False)


class ResultLog:
    """Summary rows and the event buffer they point into (``derivex.door`` fills them; a
    full log or buffer is replaced by a new one, never overwritten, so a result stays
    valid as long as it is referenced)."""

    __slots__ = ("events", "rows")

    def __init__(self, rows: np.ndarray, events: np.ndarray) -> None:
        self.rows = rows
        self.events = events


# ABCMeta only for ``register`` (the C result type of derivex.door_native): nothing abstract
class OrderResult(metaclass=ABCMeta):  # noqa: B024
    """Outcome of one order command: ``status`` (rejected | resting | filled | expired |
    cancelled), ``order_id``, ``price_ticks`` and ``ordered_lots`` as accepted,
    ``filled_lots``, ``remaining_lots``, ``notional`` (sum of price x lots of its fills),
    ``average_price_ticks``, ``fills`` (built when first read), ``reason`` and ``events``
    (a view, not a copy). Cost to create: two references; each property O(1) except
    ``fills``, O(events of the command). The C order methods (``derivex.door_native``)
    return instances of a C type with these same properties, registered as a subclass."""

    __slots__ = ("_log", "_row")

    def __init__(self, log: ResultLog, row: int) -> None:
        self._log = log
        self._row = row

    @classmethod
    def from_events(cls, events: np.ndarray) -> OrderResult:
        """The result of an order command from its events (the slow path). O(events)."""
        log = ResultLog(np.zeros((1, ROW_WIDTH), dtype=np.int64), events)
        summarise_events(events, log.rows[0])
        return cls(log, 0)

    def _get(self, column: int) -> int:
        return int(self._log.rows[self._row, column])

    @property
    def accepted(self) -> bool:
        return self._get(Row.OUTCOME) != Outcome.REJECTED

    @property
    def reason(self) -> Reason:
        return Reason(self._get(Row.REASON))

    @property
    def status(self) -> str:
        return STATUS_NAMES[self._get(Row.OUTCOME)]

    @property
    def order_id(self) -> int:
        return self._get(Row.ORDER_ID)

    @property
    def price_ticks(self) -> int:
        return self._get(Row.PRICE_TICKS)

    @property
    def ordered_lots(self) -> int:
        return self._get(Row.ORDERED_LOTS)

    @property
    def filled_lots(self) -> int:
        return self._get(Row.FILLED_LOTS)

    @property
    def remaining_lots(self) -> int:
        return self._get(Row.ORDERED_LOTS) - self._get(Row.FILLED_LOTS)

    @property
    def notional(self) -> int:
        return self._get(Row.NOTIONAL)

    @property
    def average_price_ticks(self) -> float | None:
        """Lots-weighted average fill price (None without fills)."""
        filled = self._get(Row.FILLED_LOTS)
        return self._get(Row.NOTIONAL) / filled if filled else None

    @property
    def events(self) -> np.ndarray:
        row = self._log.rows[self._row]
        return self._log.events[int(row[Row.START]) : int(row[Row.END])]

    @property
    def fills(self) -> tuple[Fill, ...]:
        if not self._get(Row.FILLED_LOTS):
            return ()
        events = self.events
        order_id = self._get(Row.ORDER_ID)
        own = events[(events["kind"] == EventKind.FILLED) & (events["order_id"] == order_id)]
        return tuple(
            Fill(
                order_id,
                int(e["price_ticks"]),
                int(e["qty_lots"]),
                int(e["fee_units"]),
                Liquidity(int(e["liquidity"])),
                int(e["remaining_lots"]),
            )
            for e in own
        )

    def __repr__(self) -> str:
        return (
            f"OrderResult(status={self.status!r}, order_id={self.order_id}, "
            f"filled_lots={self.filled_lots}, remaining_lots={self.remaining_lots}, "
            f"reason={self.reason.name})"
        )


def summarise_events(events: np.ndarray, row: np.ndarray) -> None:
    """Python twin of ``derivex.core.entry.summarise`` over a whole events array (the
    slow path and the tests use it). O(events)."""
    row[:] = 0
    row[Row.END] = len(events)
    if not len(events) or events["kind"][0] != EventKind.ACCEPTED:
        row[Row.OUTCOME] = Outcome.REJECTED
        row[Row.REASON] = int(events["reason"][0]) if len(events) else Reason.UNKNOWN_COMMAND
        return
    first = events[0]
    order_id = int(first["order_id"])
    ordered = int(first["qty_lots"])
    own = events[1:][events["order_id"][1:] == order_id]
    fills = own[own["kind"] == EventKind.FILLED]
    filled = int(fills["qty_lots"].sum())
    if int(first["command"]) == CommandKind.CANCEL_ORDER:
        outcome = Outcome.CANCELLED
    elif np.any(own["kind"] == EventKind.EXPIRED):
        outcome = Outcome.EXPIRED
    elif filled == ordered:
        outcome = Outcome.FILLED
    else:
        outcome = Outcome.RESTING
    row[Row.OUTCOME] = outcome
    row[Row.ORDER_ID] = order_id
    row[Row.PRICE_TICKS] = int(first["price_ticks"])
    row[Row.ORDERED_LOTS] = ordered
    row[Row.FILLED_LOTS] = filled
    row[Row.NOTIONAL] = int((fills["qty_lots"] * fills["price_ticks"]).sum())


__all__ = [
    "EVENT_DTYPE",
    "CommandResult",
    "Fill",
    "OrderResult",
    "ResultLog",
    "summarise_events",
]
