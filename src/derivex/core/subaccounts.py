"""Subaccounts and transfers: CREATE_SUBACCOUNT (a new account linked to a main account)
and TRANSFER (collateral moved from one account to another in one command).

The link lives in ``st.sub_i4`` (``layout.Link4``): a subaccount's ``PARENT`` is its main
account (0: none; no system account can be a main account) and a main account's
``CHILDREN`` counts its subaccounts. One level only, as on Deribit: a subaccount has no
subaccounts. The link is permanent, journaled like any command, replayed, and committed by
the state root's globals leaf (``subaccount_links``). Each subaccount is margined on its own:
nothing here pools margin across a family.

TRANSFER moves ``amount_units`` from ``account`` to ``to_account`` atomically (any two user
accounts: which pairs a client may use is the gateway's policy). Conservation holds by
construction (one balance goes down by what the other goes up; deposits and withdrawals
are untouched). Validation, in this order, each a REJECTED event that changes nothing:
UNKNOWN_ACCOUNT, SYSTEM_ACCOUNT (source); UNKNOWN_RECIPIENT, SYSTEM_ACCOUNT (recipient);
SAME_ACCOUNT; AMOUNT_NOT_POSITIVE; ACCOUNT_BLOCKED, RECIPIENT_BLOCKED;
ACCOUNT_IN_LIQUIDATION, RECIPIENT_IN_LIQUIDATION; INSUFFICIENT_FUNDS (more than the
balance); BALANCE_LIMIT (the recipient's balance would pass the configured maximum); then,
with risk checks on and the source holding positions or orders, INDEX_STALE and
INSUFFICIENT_MARGIN (equity after the transfer below the initial margin), as WITHDRAW.
Events: ACCEPTED (account = source, price_ticks = recipient, qty_lots = amount), then one
BALANCE_CHANGED per side (source first) whose ``counterpart`` is the other account, and
ACCOUNT_STATE_CHANGED to NORMAL if the recipient was bankrupt (a transfer in reopens it, as
a deposit does). No gas is charged (as DEPOSIT and WITHDRAW).

Cost: O(1) each. The readers of the links are in ``core/subaccount_query.py``.
"""

from __future__ import annotations

import numpy as np

from derivex.core.admin import create_account
from derivex.core.arena import unpack
from derivex.core.batch_symbol import COMMAND_SIGNATURE, register
from derivex.core.config import P_MAX_BALANCE_UNITS
from derivex.core.emit import (
    accepted,
    account_state_changed,
    account_status_event,
    balance_changed,
)
from derivex.core.jit import cold_kernel, inline_kernel, kernel
from derivex.core.layout import ACCOUNT_BLOCKED, NIL, Account4, Account8, Counter, Link4
from derivex.core.order_checks import reject
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    AccountState,
    CommandKind,
    EventKind,
    Reason,
)
from derivex.core.risk import exposed_to_stale_index, margins, risk_on

#: most subaccounts of one main account (Deribit's limit)
MAX_SUBACCOUNTS = 20


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def create_subaccount(st, ev, n, cmds, i):
    """CREATE_SUBACCOUNT: validate the main account (``account``: UNKNOWN_ACCOUNT,
    SYSTEM_ACCOUNT, ACCOUNT_BLOCKED, PARENT_IS_SUBACCOUNT, SUBACCOUNT_LIMIT), then create the
    account as CREATE_ACCOUNT does (same checks and events, ``command`` CREATE_SUBACCOUNT)
    and link it: SUBACCOUNT_LINKED (account = the new one, ``status`` = the main)."""
    c = cmds[i]
    parent = np.int64(c["account"])
    if parent >= st.counters[Counter.ACCOUNT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_ACCOUNT, 0)
    if parent < SYSTEM_ACCOUNTS:
        return reject(st, ev, n, cmds, i, Reason.SYSTEM_ACCOUNT, 0)
    if st.acc_i4[parent, Account4.STATUS] == ACCOUNT_BLOCKED:
        return reject(st, ev, n, cmds, i, Reason.ACCOUNT_BLOCKED, 0)
    if st.sub_i4[parent, Link4.PARENT] != 0:
        return reject(st, ev, n, cmds, i, Reason.PARENT_IS_SUBACCOUNT, 0)
    if st.sub_i4[parent, Link4.CHILDREN] >= MAX_SUBACCOUNTS:
        return reject(st, ev, n, cmds, i, Reason.SUBACCOUNT_LIMIT, 0)
    first = n
    n = create_account(st, ev, n, cmds, i)
    if ev[first]["kind"] != EventKind.ACCEPTED:
        return n  # rejected by create_account (its reject echoes this command's kind)
    for k in range(first, n):
        ev[k]["command"] = CommandKind.CREATE_SUBACCOUNT
    child = np.int64(ev[first]["account"])
    st.sub_i4[child, Link4.PARENT] = parent
    st.sub_i4[parent, Link4.CHILDREN] += 1
    return account_status_event(
        ev, n, c["seq"], EventKind.SUBACCOUNT_LINKED, CommandKind.CREATE_SUBACCOUNT, child, parent
    )


@kernel
def _parties_check(st, source, target, amount):
    """The checks of the two accounts and the amount (the first part of the order)."""
    hwm = st.counters[Counter.ACCOUNT_HWM]
    if source >= hwm:
        return Reason.UNKNOWN_ACCOUNT
    if source < SYSTEM_ACCOUNTS:
        return Reason.SYSTEM_ACCOUNT
    if target >= hwm:
        return Reason.UNKNOWN_RECIPIENT
    if target < SYSTEM_ACCOUNTS:
        return Reason.SYSTEM_ACCOUNT
    if source == target:
        return Reason.SAME_ACCOUNT
    if amount <= 0:
        return Reason.AMOUNT_NOT_POSITIVE
    if st.acc_i4[source, Account4.STATUS] == ACCOUNT_BLOCKED:
        return Reason.ACCOUNT_BLOCKED
    if st.acc_i4[target, Account4.STATUS] == ACCOUNT_BLOCKED:
        return Reason.RECIPIENT_BLOCKED
    if st.acc_i4[source, Account4.STATE] == AccountState.IN_LIQUIDATION:
        return Reason.ACCOUNT_IN_LIQUIDATION
    if st.acc_i4[target, Account4.STATE] == AccountState.IN_LIQUIDATION:
        return Reason.RECIPIENT_IN_LIQUIDATION
    return Reason.OK


@kernel
def transfer_check(st, source, target, amount):
    """The reason a TRANSFER of ``amount`` from ``source`` to ``target`` is refused, or OK
    (the order of the module docstring). Changes nothing."""
    reason = _parties_check(st, source, target, amount)
    if reason != Reason.OK:
        return reason
    if amount > st.acc_i8[source, Account8.BALANCE]:
        return Reason.INSUFFICIENT_FUNDS
    if amount > st.params[P_MAX_BALANCE_UNITS] - st.acc_i8[target, Account8.BALANCE]:
        return Reason.BALANCE_LIMIT
    if risk_on(st) and st.acc_i4[source, Account4.POSITION_HEAD] != NIL:
        if exposed_to_stale_index(st, source):
            return Reason.INDEX_STALE
        equity, im, _ = margins(st, source)
        if equity - amount < im:
            return Reason.INSUFFICIENT_MARGIN
    return Reason.OK


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def transfer(st, ev, n, cmds, i):
    """TRANSFER: see the module docstring. At most four events."""
    c = cmds[i]
    source = np.int64(c["account"])
    target = np.int64(c["to_account"])
    amount = c["amount_units"]
    reason = transfer_check(st, source, target, amount)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    seq = c["seq"]
    paid = st.acc_i8[source, Account8.BALANCE] - amount
    received = st.acc_i8[target, Account8.BALANCE] + amount
    st.acc_i8[source, Account8.BALANCE] = paid
    st.acc_i8[target, Account8.BALANCE] = received
    n = accepted(ev, n, seq, CommandKind.TRANSFER, source, 0, target, amount, 0)
    n = balance_changed(ev, n, seq, CommandKind.TRANSFER, source, -amount, paid)
    ev[n - 1]["counterpart"] = target
    n = balance_changed(ev, n, seq, CommandKind.TRANSFER, target, amount, received)
    ev[n - 1]["counterpart"] = source
    if st.acc_i4[target, Account4.STATE] == AccountState.BANKRUPT:
        st.acc_i4[target, Account4.STATE] = AccountState.NORMAL
        n = account_state_changed(
            ev, n, seq, CommandKind.TRANSFER, target, np.int64(AccountState.NORMAL)
        )
    return n


# rare commands: each a call of its own by its C symbol (``core/batch_symbol.py``) on the
# caller's arena, so the batch kernel neither contains them nor builds the State for them


@cold_kernel
def _create_subaccount_symbol(arena, layout, ev, n, cmds, i):
    return create_subaccount(unpack(arena, layout), ev, n, cmds, i)


@cold_kernel
def _transfer_symbol(arena, layout, ev, n, cmds, i):
    return transfer(unpack(arena, layout), ev, n, cmds, i)


call_create_subaccount = register(
    "derivex_create_subaccount", _create_subaccount_symbol, COMMAND_SIGNATURE, __file__
)
call_transfer = register("derivex_transfer", _transfer_symbol, COMMAND_SIGNATURE, __file__)
