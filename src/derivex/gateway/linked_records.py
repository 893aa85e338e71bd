"""Linked orders in the gateway's records (docs/conditional-orders.md, "Linked orders over
the API"): the projection of the link events (ORDER_LINKED 33, LINK_ACTIVATED 34,
LINK_REDUCED 35) into ``OrderRecord.link``, the Deribit fields of those orders' objects
(``oto_order_ids``, ``primary_order_id``, ``oco_ref``, ``is_secondary_oto``,
``is_primary_otoco``, ``trigger_fill_condition``), the same links rebuilt from the engine
state (a gateway that starts late), and the ``Pending`` of a group (its legs' labels).

A leg's trigger order record is made by its TRIGGER_PLACED event as for any trigger order
(``trigger_orders``); its ORDER_LINKED then links it to the group's primary (which lists
it in ``oto_order_ids``) and to its OCO partner (``oco_ref``: the lower of the pair's two
ids, the same on both). A cancel by the group (``oco_other_closed``,
``oto_primary_closed``) is a TRIGGER_CANCELLED like any other. Cost: O(1) per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from derivex.core.records import CommandKind, EventKind, LinkType
from derivex.core.trigger_layout import ROLE_SECONDARY
from derivex.gateway.order_records import (
    ORDER_TYPE_NAMES,
    TIF_NAMES,
    TIF_NAMES_BY_CODE,
    OrderRecord,
    Pending,
    PlaceOrder,
    Update,
)

FILL_NAMES = {0: "first_hit", 1: "complete_fill", 2: "incremental"}
ORDER_LINKED, LINK_ACTIVATED = int(EventKind.ORDER_LINKED), int(EventKind.LINK_ACTIVATED)
LINK_REDUCED = int(EventKind.LINK_REDUCED)
_OTOCO = int(LinkType.OTOCO)
_LINKED_TRIGGER = int(CommandKind.LINKED_TRIGGER)


@dataclass(slots=True)
class Link:
    """What an order of a linked group knows of the group (``OrderRecord.link``)."""

    link_type: int  # LinkType
    fill_condition: int  # FillCondition
    secondary: bool = False  # an OTO / OTOCO secondary (``is_secondary_oto``)
    primary_order_id: int = 0  # a secondary: the group's primary
    oto_order_ids: list[int] = field(default_factory=list)  # the primary: its secondaries
    oco_ref: int = 0  # an OCO member: the lower id of the pair


@dataclass(slots=True)
class GroupPending(Pending):
    """The ``Pending`` of a PLACE_LINKED: the main order's terms (a plain primary's record
    reads them), and the labels of the group's trigger orders, handed out in placement
    order as their TRIGGER_PLACED events are walked."""

    labels: list[str] = field(default_factory=list)

    def trigger_label(self) -> str:
        return self.labels.pop(0) if self.labels else ""

    @classmethod
    def of(cls, order: PlaceOrder) -> GroupPending:
        """For a group the venue places (``order``: its main order)."""
        legs = (order, *order.secondaries)
        return cls(
            order.order_type,
            TIF_NAMES[order.time_in_force],
            order.flags,
            order.label,
            labels=[leg.label for leg in legs if leg.trigger_type],
        )


def frame_pending(commands: np.ndarray, k: int, name: Any) -> GroupPending:
    """The ``GroupPending`` of the PLACE_LINKED header ``commands[k]`` of a batch
    sequenced elsewhere (its legs follow it); ``name``: a label key's name (None: labels
    do not travel, they are "")."""
    count = int(commands["count"][k])
    legs = commands[k + 1 : k + 1 + count]
    labels = [int(key) for key in legs["label"]]
    main = legs[0] if len(legs) else None

    def label(key: int) -> str:
        return name(key) if name is not None and key else ""

    if main is None:
        return GroupPending()
    return GroupPending(
        ORDER_TYPE_NAMES.get(int(main["order_type"]), "limit"),
        TIF_NAMES_BY_CODE.get(int(main["tif"]), "good_til_cancelled"),
        int(main["flags"]),
        label(labels[0]),
        labels=[
            label(key)
            for key, kind in zip(labels, legs["kind"].tolist(), strict=True)
            if kind == _LINKED_TRIGGER
        ],
    )


def on_event(
    records: Any,
    update: Update,
    kind: int,
    account: int,
    order_id: int,
    price: int,
    qty: int,
    a: int,
    b: int,
    now: int,
) -> None:
    """Apply one ORDER_LINKED / LINK_ACTIVATED / LINK_REDUCED event (``order_id``: the
    leg's trigger order id) to ``records`` (an ``OrderRecords``)."""
    record = records.orders.get(order_id)
    if record is None:  # placed before this gateway's records began
        return
    record.updated_ms = now
    if kind == ORDER_LINKED:  # price: link spec; qty: full quantity; a: primary; b: partner
        record.link = _link(records, update, order_id, price, a, b)
    elif kind == LINK_ACTIVATED:  # a held secondary placed or grown: qty, trigger price
        record.amount_lots = qty
        record.trigger_price_ticks = price
        if record.trigger_offset_ticks:  # a trailing leg trails from the price now
            offset = record.trigger_offset_ticks
            record.trigger_reference_ticks = price + offset if record.side == 1 else price - offset
    elif kind == LINK_REDUCED:  # an OCO member reduced pro rata
        record.amount_lots = qty
    update.orders[order_id] = record
    update.accounts.add(account)


def _link(
    records: Any, update: Update, order_id: int, spec: int, primary: int, partner: int
) -> Link:
    """The ``Link`` of a leg (``spec``: type | condition << 2 | role << 4); lists the leg
    in its primary's ``oto_order_ids``."""
    link = Link(
        spec & 3,
        (spec >> 2) & 3,
        bool((spec >> 4) & ROLE_SECONDARY),
        primary,
        oco_ref=min(order_id, partner) if partner else 0,
    )
    if primary:
        record = records.orders.get(primary) or records.closed.get(primary)
        if record is not None:
            if record.link is None:
                record.link = Link(link.link_type, link.fill_condition)
            if order_id not in record.link.oto_order_ids:
                record.link.oto_order_ids.append(order_id)
            update.orders[primary] = record
    return link


def inherit(trigger: OrderRecord, record: OrderRecord) -> None:
    """The order a primary trigger order placed takes over its ``oto_order_ids`` (its
    secondaries now watch that order)."""
    link = trigger.link
    if link is not None and link.oto_order_ids:
        record.link = Link(link.link_type, link.fill_condition, oto_order_ids=link.oto_order_ids)


def rebuild_link(records: Any, record: OrderRecord, row: dict[str, int]) -> None:
    """The ``Link`` of a live trigger order rebuilt from its engine row
    (``query.trigger_orders``: ``link``, ``primary``, ``partner``), when the gateway did not
    walk the group's events; an activated secondary no longer watches its primary, so
    its ``primary_order_id`` is then unknown (0)."""
    spec = row.get("link", 0)
    if not spec:
        return
    record.link = Link(
        spec & 3,
        (spec >> 2) & 3,
        bool((spec >> 4) & ROLE_SECONDARY),
        row["primary"],
        oco_ref=min(record.order_id, row["partner"]) if row["partner"] else 0,
    )
    primary = records.orders.get(row["primary"]) if row["primary"] else None
    if primary is not None:
        if primary.link is None:
            primary.link = Link(spec & 3, (spec >> 2) & 3)
        if record.order_id not in primary.link.oto_order_ids:
            primary.link.oto_order_ids.append(record.order_id)


def add_fields(record: OrderRecord, data: dict[str, Any]) -> None:
    """Deribit's linked-order fields of an order object."""
    link: Link = record.link
    if link.oto_order_ids:
        data["oto_order_ids"] = [str(order_id) for order_id in link.oto_order_ids]
        if link.link_type == _OTOCO:
            data["is_primary_otoco"] = True
    if link.secondary:
        data["is_secondary_oto"] = True
        if link.primary_order_id:
            data["primary_order_id"] = str(link.primary_order_id)
    if link.oco_ref:
        data["oco_ref"] = str(link.oco_ref)
    data["trigger_fill_condition"] = FILL_NAMES.get(link.fill_condition, "first_hit")
