"""Client order ids: a caller's own name for an order, so that a cancel or an amend in the
same batch as the place can target it without the engine-assigned id.

A PLACE_ORDER with ``OrderFlag.CLIENT_ORDER_ID`` declares its ``label`` a client order id:
it must be non-zero (else ``BAD_CLIENT_ORDER_ID``) and no open order of the account may
carry the same label (else ``DUPLICATE_CLIENT_ORDER_ID``). A CANCEL_ORDER or AMEND_ORDER with
the flag names its target by ``label`` instead of ``order_id``: the one open order of the
account with that label (none: ``UNKNOWN_ORDER``; more than one, possible only for labels
placed without the flag: ``DUPLICATE_CLIENT_ORDER_ID``). See docs/core-semantics.md.

Cost: O(open orders of the account), bounded by ``max_open_orders_per_account``; only
commands with the flag pay it.
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account4, Counter, Order4, Pos4
from derivex.core.pools import order_slot_of
from derivex.core.records import OrderFlag, Reason


@kernel
def uses_client_id(flags):
    """Whether a command's ``flags`` name its order by client order id."""
    return (np.int64(flags) & OrderFlag.CLIENT_ORDER_ID) != 0


@kernel
def labelled_order(st, account, label):
    """``(slot, matches)``: an open order of ``account`` labelled ``label`` (NIL if none)
    and how many open orders of the account carry that label. ``account`` must exist."""
    found = NIL
    matches = 0
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        slot = st.pos_i4[position, Pos4.ORDER_HEAD]
        while slot != NIL:
            if st.ord_label[slot] == label:
                found = slot
                matches += 1
            slot = st.ord_i4[slot, Order4.POSITION_NEXT]
        position = st.pos_i4[position, Pos4.NEXT]
    return found, matches


@kernel
def new_client_id_reason(st, account, label):
    """Reason a PLACE_ORDER with the flag may not use ``label`` as its client order id,
    else OK."""
    if label == 0:
        return Reason.BAD_CLIENT_ORDER_ID
    _, matches = labelled_order(st, account, label)
    if matches > 0:
        return Reason.DUPLICATE_CLIENT_ORDER_ID
    return Reason.OK


@kernel
def client_order_slot(st, account, label):
    """``(slot, reason)`` of the account's one open order labelled ``label``."""
    if label == 0:
        return NIL, Reason.BAD_CLIENT_ORDER_ID
    slot, matches = labelled_order(st, account, label)
    if matches == 0:
        return NIL, Reason.UNKNOWN_ORDER
    if matches > 1:
        return NIL, Reason.DUPLICATE_CLIENT_ORDER_ID
    return slot, Reason.OK


@kernel
def target_slot(st, c):
    """Slot of the live order a CANCEL_ORDER / AMEND_ORDER record ``c`` names (by client
    order id when flagged, else by order id), or NIL; no ownership or account checks beyond
    the account existing (the engine's worst-case event count uses this)."""
    if uses_client_id(c["flags"]):
        account = np.int64(c["account"])
        if account >= st.counters[Counter.ACCOUNT_HWM]:
            return NIL
        slot, _ = client_order_slot(st, account, c["label"])
        return slot
    return order_slot_of(st, np.int64(c["order_id"]))
