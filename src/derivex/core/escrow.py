"""Cross-domain transfers (issue 17): TRANSFER_OUT, TRANSFER_IN and TRANSFER_REFUND, the
escrow accounts and the processed-transfer set.

A venue runs several risk domains, each with its own log and engine; collateral moves
between them in two phases that always complete (docs/cluster.md, "Transfers"):

1. ``TRANSFER_OUT(account, amount, domain=B)`` in the source domain A checks free
   collateral as a withdrawal would, debits the account and credits A's escrow-out account
   for B. The transfer gets the number ``n`` = A's count of transfers to B so far, plus one:
   ``(A, B, n)`` names it everywhere (the relay, the destination's dedupe, the refund).
2. ``TRANSFER_IN(account, amount, domain=A, transfer_id=n)`` in B, published by the relay
   from A's committed events. A new ``n`` is *processed*: credited to the account (B's
   escrow-in account for A is debited: it may go negative, it is the counterpart), or, if
   it cannot be (unknown or system account, balance limit), *refused*: nothing is credited
   and the refusal, numbered ``k`` (B's count of refusals of A's transfers, plus one), is an
   event the relay turns into
3. ``TRANSFER_REFUND(account, amount, domain=B, transfer_id=k, refund_of=n)`` in A, which
   moves the amount from A's escrow-out account for B back to the account. Refunds are
   keyed by ``k``, not ``n``: refusals are rare, so their transfer numbers are sparse,
   and a dense key keeps the processed-refund set as small as the transfer one.

Escrow accounts are rows of the transfer table ``st.xfr`` (one row per peer domain), not
account slots, so account ids do not move. Per domain, at every command boundary:
Σ balances + Σ escrow_out − Σ credited_in = deposits − withdrawals (``escrow_totals``).

**The processed-transfer set** (per peer domain, in the state, so dedupe does not depend on
the stream's time window): ``IN_MARK`` (every ``n`` ≤ it is processed) and ``IN_WINDOW``
(bit ``k - 1`` set: ``IN_MARK + k`` is processed, k = 1..WINDOW). A processed ``n`` is
refused as DUPLICATE_TRANSFER and changes nothing. The bound is ``WINDOW`` (62) transfers
ahead of the first unprocessed one per peer: ``n > IN_MARK + WINDOW`` is refused as
TRANSFER_AHEAD, changes nothing and is not processed, so the relay delivers it again later.
The relay delivers in ``n`` order, so this never happens unless 62 transfers in a row are
lost on the way; the state stays O(domains) whatever the number of transfers. Refunds are
deduplicated the same way by their number ``k`` (``REFUND_MARK`` / ``REFUND_WINDOW``).

Costs: O(1) per command. Errors: rejections with a reason; nothing raises.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from derivex.core.arena import unpack
from derivex.core.batch_symbol import COMMAND_SIGNATURE, register
from derivex.core.config import P_MAX_BALANCE_UNITS
from derivex.core.emit import accepted
from derivex.core.fixed import VALUE_LIMIT
from derivex.core.jit import cold_kernel, inline_kernel, kernel
from derivex.core.layout import NIL, Account4, Account8, Counter
from derivex.core.order_checks import reject
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    AccountState,
    CommandKind,
    EventKind,
    Liquidity,
    Reason,
)
from derivex.core.risk import exposed_to_stale_index, margins, risk_on

#: peer domains a state can hold rows for (domain ids 0..MAX_DOMAINS-1)
MAX_DOMAINS = 16
#: transfers a destination accepts ahead of the first unprocessed one (bits of IN_WINDOW)
WINDOW = 62


class Xfer(IntEnum):
    """Columns of ``st.xfr`` (int64[MAX_DOMAINS, XFER_FIELDS]); row = the peer domain."""

    OUT_COUNT = 0  # transfers sent to the peer (the last transfer number given)
    OUT_UNITS = 1  # units sent to the peer (gross)
    REFUND_UNITS = 2  # units refunded by the peer (gross); escrow-out = OUT - REFUND
    REFUND_MARK = 3  # every refund number (the peer's refusal count) <= this is processed
    REFUND_WINDOW = 4  # bit k-1: refund REFUND_MARK + k processed
    IN_MARK = 5  # every transfer number <= this from the peer is processed
    IN_WINDOW = 6  # bit k-1: transfer IN_MARK + k processed
    IN_UNITS = 7  # units credited from the peer; escrow-in balance = -IN_UNITS
    REFUSED_UNITS = 8  # units of processed transfers refused (to be refunded by the peer)
    REFUSED_COUNT = 9  # refusals of the peer's transfers: the last refusal number given


XFER_FIELDS = len(Xfer)


def transfer_table() -> np.ndarray:
    """The transfer table of a fresh state (all zero)."""
    return np.zeros((MAX_DOMAINS, XFER_FIELDS), dtype=np.int64)


@kernel
def _transfer_event(
    ev, n, seq, command, kind, reason, account, peer, number, refusal, amount, balance
):
    """A TRANSFER_* event: ``instrument`` = the peer domain, ``order_id`` = the transfer
    number, ``price_ticks`` = the refusal (refund) number for TRANSFER_REFUSED and
    TRANSFER_REFUNDED (else 0), ``cash_units`` = the amount (signed as it moves the
    account), ``balance_units`` = the account's balance after it."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = kind
    e["command"] = command
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = reason
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = peer
    e["order_id"] = number
    e["price_ticks"] = refusal
    e["qty_lots"] = 0
    e["cash_units"] = amount
    e["balance_units"] = balance
    return n + 1


@kernel
def _seen(mark, window, number):
    """Whether ``number`` is in the processed set ``(mark, window)``."""
    if number <= mark:
        return True
    offset = number - mark
    return offset <= WINDOW and (window >> (offset - 1)) & 1 == 1


@kernel
def _mark_seen(st, peer, mark_field, window_field, number):
    """Add ``number`` (unprocessed, within the window) and slide the mark over every
    processed number that now follows it."""
    mark = st.xfr[peer, mark_field]
    window = st.xfr[peer, window_field] | (np.int64(1) << (number - mark - 1))
    while window & 1 == 1:
        window >>= 1
        mark += 1
    st.xfr[peer, mark_field] = mark
    st.xfr[peer, window_field] = window


@kernel
def _check_out(st, account, amount):
    """The checks of a withdrawal of ``amount`` (admin.move_money), as a reason code."""
    balance = st.acc_i8[account, Account8.BALANCE]
    if amount > balance:
        return Reason.INSUFFICIENT_FUNDS
    if st.acc_i4[account, Account4.STATE] == AccountState.IN_LIQUIDATION:
        return Reason.ACCOUNT_IN_LIQUIDATION
    if risk_on(st) and st.acc_i4[account, Account4.POSITION_HEAD] != NIL:
        if exposed_to_stale_index(st, account):
            return Reason.INDEX_STALE
        equity, im, _ = margins(st, account)
        if equity - amount < im:
            return Reason.INSUFFICIENT_MARGIN
    return Reason.OK


@kernel
def _transfer_out(st, ev, n, cmds, i):
    c = cmds[i]
    account = np.int64(c["account"])
    peer = np.int64(c["domain"])
    amount = c["amount_units"]
    if peer >= MAX_DOMAINS:
        return reject(st, ev, n, cmds, i, Reason.BAD_DOMAIN, 0)
    if account >= st.counters[Counter.ACCOUNT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_ACCOUNT, 0)
    if account < SYSTEM_ACCOUNTS:
        return reject(st, ev, n, cmds, i, Reason.SYSTEM_ACCOUNT, 0)
    if amount <= 0:
        return reject(st, ev, n, cmds, i, Reason.AMOUNT_NOT_POSITIVE, 0)
    reason = _check_out(st, account, amount)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    if amount > VALUE_LIMIT - st.xfr[peer, Xfer.OUT_UNITS]:
        return reject(st, ev, n, cmds, i, Reason.TRANSFER_LIMIT, 0)
    balance = st.acc_i8[account, Account8.BALANCE] - amount
    st.acc_i8[account, Account8.BALANCE] = balance
    number = st.xfr[peer, Xfer.OUT_COUNT] + 1
    st.xfr[peer, Xfer.OUT_COUNT] = number
    st.xfr[peer, Xfer.OUT_UNITS] += amount
    kind = CommandKind.TRANSFER_OUT
    n = accepted(ev, n, c["seq"], kind, account, peer, 0, 0, 0)
    return _transfer_event(
        ev, n, c["seq"], kind, EventKind.TRANSFER_SENT, 0, account, peer, number, 0, -amount,
        balance,
    )  # fmt: skip


@kernel
def _transfer_in(st, ev, n, cmds, i):
    c = cmds[i]
    account = np.int64(c["account"])
    peer = np.int64(c["domain"])
    amount = c["amount_units"]
    number = np.int64(c["transfer_id"])
    if peer >= MAX_DOMAINS:
        return reject(st, ev, n, cmds, i, Reason.BAD_DOMAIN, 0)
    if amount <= 0:
        return reject(st, ev, n, cmds, i, Reason.AMOUNT_NOT_POSITIVE, 0)
    if number <= 0:
        return reject(st, ev, n, cmds, i, Reason.BAD_TRANSFER_ID, 0)
    mark = st.xfr[peer, Xfer.IN_MARK]
    if _seen(mark, st.xfr[peer, Xfer.IN_WINDOW], number):
        return reject(st, ev, n, cmds, i, Reason.DUPLICATE_TRANSFER, 0)
    if number - mark > WINDOW:
        return reject(st, ev, n, cmds, i, Reason.TRANSFER_AHEAD, 0)
    # the source sends at most VALUE_LIMIT in all, so only a forged transfer exceeds this
    if amount > VALUE_LIMIT - st.xfr[peer, Xfer.IN_UNITS] - st.xfr[peer, Xfer.REFUSED_UNITS]:
        return reject(st, ev, n, cmds, i, Reason.TRANSFER_LIMIT, 0)
    # processed from here on: credited, or refused (to be refunded by the source)
    refusal = Reason.OK
    balance = np.int64(0)
    if account >= st.counters[Counter.ACCOUNT_HWM]:
        refusal = Reason.UNKNOWN_ACCOUNT
    elif account < SYSTEM_ACCOUNTS:
        refusal = Reason.SYSTEM_ACCOUNT
    else:
        balance = st.acc_i8[account, Account8.BALANCE]
        if amount > st.params[P_MAX_BALANCE_UNITS] - balance:
            refusal = Reason.BALANCE_LIMIT
    _mark_seen(st, peer, Xfer.IN_MARK, Xfer.IN_WINDOW, number)
    kind = CommandKind.TRANSFER_IN
    n = accepted(ev, n, c["seq"], kind, account, peer, 0, 0, 0)
    if refusal != Reason.OK:
        st.xfr[peer, Xfer.REFUSED_UNITS] += amount
        st.xfr[peer, Xfer.REFUSED_COUNT] += 1
        return _transfer_event(
            ev, n, c["seq"], kind, EventKind.TRANSFER_REFUSED, refusal, account, peer, number,
            st.xfr[peer, Xfer.REFUSED_COUNT], amount, 0,
        )  # fmt: skip
    balance += amount
    st.acc_i8[account, Account8.BALANCE] = balance
    st.xfr[peer, Xfer.IN_UNITS] += amount
    return _transfer_event(
        ev, n, c["seq"], kind, EventKind.TRANSFER_RECEIVED, 0, account, peer, number, 0, amount,
        balance,
    )  # fmt: skip


@kernel
def _transfer_refund(st, ev, n, cmds, i):
    c = cmds[i]
    account = np.int64(c["account"])
    peer = np.int64(c["domain"])
    amount = c["amount_units"]
    number = np.int64(c["transfer_id"])  # the refund's (refusal's) number
    original = np.int64(c["refund_of"])  # the transfer refunded
    if peer >= MAX_DOMAINS:
        return reject(st, ev, n, cmds, i, Reason.BAD_DOMAIN, 0)
    if amount <= 0:
        return reject(st, ev, n, cmds, i, Reason.AMOUNT_NOT_POSITIVE, 0)
    sent = st.xfr[peer, Xfer.OUT_COUNT]  # at most one refusal per transfer sent
    if number <= 0 or number > sent or original <= 0 or original > sent:
        return reject(st, ev, n, cmds, i, Reason.BAD_TRANSFER_ID, 0)
    mark = st.xfr[peer, Xfer.REFUND_MARK]
    if _seen(mark, st.xfr[peer, Xfer.REFUND_WINDOW], number):
        return reject(st, ev, n, cmds, i, Reason.DUPLICATE_TRANSFER, 0)
    if number - mark > WINDOW:
        return reject(st, ev, n, cmds, i, Reason.TRANSFER_AHEAD, 0)
    if amount > st.xfr[peer, Xfer.OUT_UNITS] - st.xfr[peer, Xfer.REFUND_UNITS]:
        return reject(st, ev, n, cmds, i, Reason.TRANSFER_LIMIT, 0)
    if account >= st.counters[Counter.ACCOUNT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_ACCOUNT, 0)
    if account < SYSTEM_ACCOUNTS:
        return reject(st, ev, n, cmds, i, Reason.SYSTEM_ACCOUNT, 0)
    balance = st.acc_i8[account, Account8.BALANCE]
    if amount > st.params[P_MAX_BALANCE_UNITS] - balance:
        return reject(st, ev, n, cmds, i, Reason.BALANCE_LIMIT, 0)
    _mark_seen(st, peer, Xfer.REFUND_MARK, Xfer.REFUND_WINDOW, number)
    st.xfr[peer, Xfer.REFUND_UNITS] += amount
    balance += amount
    st.acc_i8[account, Account8.BALANCE] = balance
    kind = CommandKind.TRANSFER_REFUND
    n = accepted(ev, n, c["seq"], kind, account, peer, 0, 0, 0)
    return _transfer_event(
        ev, n, c["seq"], kind, EventKind.TRANSFER_REFUNDED, 0, account, peer, original, number,
        amount, balance,
    )  # fmt: skip


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def transfer_command(st, ev, n, cmds, i):
    """Apply the TRANSFER_OUT / TRANSFER_IN / TRANSFER_REFUND at ``cmds[i]``; returns the
    event count. At most 2 events. A call of its own: transfers are rare."""
    kind = cmds[i]["kind"]
    if kind == CommandKind.TRANSFER_OUT:
        return _transfer_out(st, ev, n, cmds, i)
    if kind == CommandKind.TRANSFER_IN:
        return _transfer_in(st, ev, n, cmds, i)
    return _transfer_refund(st, ev, n, cmds, i)


@cold_kernel
def _transfer_command_symbol(arena, layout, ev, n, cmds, i):
    """``transfer_command`` on the State over ``arena`` (the caller's memory)."""
    return transfer_command(unpack(arena, layout), ev, n, cmds, i)


#: what the batch kernel calls: ``transfer_command`` by its C symbol (core/batch_symbol.py)
call_transfer_command = register(
    "derivex_transfer_command",
    _transfer_command_symbol,
    COMMAND_SIGNATURE,
    __file__,
)


def escrow_totals(xfr: np.ndarray) -> tuple[int, int]:
    """``(escrow_out, credited_in)`` over all peers: the units held in escrow for transfers
    sent and not refunded, and the units credited from other domains. Conservation of one
    domain: Σ balances + escrow_out − credited_in = deposits − withdrawals."""
    out = int(xfr[:, Xfer.OUT_UNITS].astype(object).sum())
    refunded = int(xfr[:, Xfer.REFUND_UNITS].astype(object).sum())
    credited = int(xfr[:, Xfer.IN_UNITS].astype(object).sum())
    return out - refunded, credited


def transfer_rows(xfr: np.ndarray) -> dict[int, tuple[int, ...]]:
    """The non-zero rows of the table by peer domain (the canonical view and the root's
    digest; empty for a state that never transferred, which keeps old hashes)."""
    return {
        peer: tuple(int(v) for v in xfr[peer])
        for peer in range(xfr.shape[0])
        if bool(np.any(xfr[peer] != 0))
    }


def check_transfer_invariants(xfr: np.ndarray) -> list[str]:
    """What is wrong with the table (empty when nothing): escrow never negative, windows
    within their bits, marks never behind what they count."""
    problems = []
    for peer, row in transfer_rows(xfr).items():
        if row[Xfer.OUT_UNITS] < row[Xfer.REFUND_UNITS]:
            problems.append(f"domain {peer}: refunded more than sent")
        if row[Xfer.REFUND_MARK] > row[Xfer.OUT_COUNT]:
            problems.append(f"domain {peer}: refunds beyond the transfers sent")
        for field in (Xfer.IN_WINDOW, Xfer.REFUND_WINDOW):
            if row[field] < 0 or row[field] >> WINDOW or (row[field] & 1):
                problems.append(f"domain {peer}: window {field.name} malformed")
    return problems
