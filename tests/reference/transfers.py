"""Cross-domain transfers: TRANSFER_OUT, TRANSFER_IN, TRANSFER_REFUND, the escrow and the
processed-transfer sets. Mirrors core/escrow.py with plain Python sets: a transfer number
is processed iff it is in the set; the kernel's (mark, window) encoding is derived from the
set only for the canonical view."""

from __future__ import annotations

from derivex.core.records import AccountState, CommandKind, EventKind, IndexStatus, Reason
from tests.reference.entities import Reject

MAX_DOMAINS = 16
WINDOW = 62
LIMIT = 1 << 62
FIELDS = (
    "out_count",
    "out_units",
    "refund_units",
    "refund_mark",
    "refund_window",
    "in_mark",
    "in_window",
    "in_units",
    "refused_units",
    "refused_count",
)


def _mark_and_window(numbers: set[int]) -> tuple[int, int]:
    mark = 0
    while mark + 1 in numbers:
        mark += 1
    window = sum(1 << (k - mark - 1) for k in numbers if k > mark)
    return mark, window


class PeerRow:
    def __init__(self) -> None:
        self.out_count = 0
        self.out_units = 0
        self.refund_units = 0
        self.refunds: set[int] = set()
        self.received: set[int] = set()
        self.in_units = 0
        self.refused_units = 0
        self.refused_count = 0

    def row(self) -> tuple[int, ...]:
        refund_mark, refund_window = _mark_and_window(self.refunds)
        in_mark, in_window = _mark_and_window(self.received)
        return (
            self.out_count,
            self.out_units,
            self.refund_units,
            refund_mark,
            refund_window,
            in_mark,
            in_window,
            self.in_units,
            self.refused_units,
            self.refused_count,
        )


class TransfersModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _peers(self) -> dict[int, PeerRow]:
        if not hasattr(self, "_transfer_peers"):
            self._transfer_peers: dict[int, PeerRow] = {}
        return self._transfer_peers

    def _peer(self, cmd) -> PeerRow:
        peer = int(cmd["domain"])
        if peer >= MAX_DOMAINS:
            raise Reject(Reason.BAD_DOMAIN)
        return self._peers().setdefault(peer, PeerRow())

    @staticmethod
    def _is_new(numbers: set[int], number: int) -> None:
        if number in numbers:
            raise Reject(Reason.DUPLICATE_TRANSFER)
        first_missing = 1
        while first_missing in numbers:
            first_missing += 1
        if number - (first_missing - 1) > WINDOW:
            raise Reject(Reason.TRANSFER_AHEAD)

    def _transfer_event(
        self, kind, acct_id, peer, number, amount, balance, reason=0, refusal=0
    ) -> None:
        self._emit(
            kind,
            reason=int(reason),
            account=acct_id,
            instrument=peer,
            order_id=number,
            price_ticks=refusal,
            cash_units=amount,
            balance_units=balance,
        )

    def _transfer_out(self, cmd) -> None:
        # the rows are created only once a command is accepted, like the kernel's zero rows
        peer = int(cmd["domain"])
        if peer >= MAX_DOMAINS:
            raise Reject(Reason.BAD_DOMAIN)
        acct_id, acct = self._account(cmd)
        if acct_id < 3:
            raise Reject(Reason.SYSTEM_ACCOUNT)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
        # the checks of a withdrawal
        if amount > acct.balance:
            raise Reject(Reason.INSUFFICIENT_FUNDS)
        if acct.state == AccountState.IN_LIQUIDATION:
            raise Reject(Reason.ACCOUNT_IN_LIQUIDATION)
        if self.cfg.risk_checks and any(a == acct_id for a, _ in self.positions):
            for a, inst_id in self.positions:
                und = self.instruments[inst_id].underlying
                if a == acct_id and self._index_status(und) != IndexStatus.VALID:
                    raise Reject(Reason.INDEX_STALE)
            equity, im, _ = self.margins(acct_id)
            if equity - amount < im:
                raise Reject(Reason.INSUFFICIENT_MARGIN)
        row = self._peers().get(peer) or PeerRow()
        if row.out_units + amount > LIMIT:
            raise Reject(Reason.TRANSFER_LIMIT)
        self._peers()[peer] = row
        acct.balance -= amount
        row.out_count += 1
        row.out_units += amount
        self._emit(EventKind.ACCEPTED, account=acct_id, instrument=peer)
        self._transfer_event(
            EventKind.TRANSFER_SENT, acct_id, peer, row.out_count, -amount, acct.balance
        )

    def _transfer_in(self, cmd) -> None:
        peer = int(cmd["domain"])
        if peer >= MAX_DOMAINS:
            raise Reject(Reason.BAD_DOMAIN)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
        number = int(cmd["transfer_id"])
        if number <= 0 or number >= 1 << 63:
            raise Reject(Reason.BAD_TRANSFER_ID)
        row = self._peers().get(peer) or PeerRow()
        self._is_new(row.received, number)
        if row.in_units + row.refused_units + amount > LIMIT:
            raise Reject(Reason.TRANSFER_LIMIT)
        self._peers()[peer] = row
        acct_id = int(cmd["account"])
        refusal = Reason.OK
        if acct_id not in self.accounts:
            refusal = Reason.UNKNOWN_ACCOUNT
        elif acct_id < 3:
            refusal = Reason.SYSTEM_ACCOUNT
        else:
            balance = self.accounts[acct_id].balance
            if balance + amount > self.cfg.max_balance_units:
                refusal = Reason.BALANCE_LIMIT
        row.received.add(number)
        self._emit(EventKind.ACCEPTED, account=acct_id, instrument=peer)
        if refusal != Reason.OK:
            row.refused_units += amount
            row.refused_count += 1
            self._transfer_event(
                EventKind.TRANSFER_REFUSED,
                acct_id,
                peer,
                number,
                amount,
                0,
                refusal,
                row.refused_count,
            )
            return
        acct = self.accounts[acct_id]
        acct.balance += amount
        row.in_units += amount
        self._transfer_event(
            EventKind.TRANSFER_RECEIVED, acct_id, peer, number, amount, acct.balance
        )

    def _transfer_refund(self, cmd) -> None:
        peer = int(cmd["domain"])
        if peer >= MAX_DOMAINS:
            raise Reject(Reason.BAD_DOMAIN)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
        row = self._peers().get(peer) or PeerRow()
        number = int(cmd["transfer_id"])  # the refusal's number: refunds are keyed by it
        original = int(cmd["refund_of"])  # the transfer refunded
        if not (0 < number <= row.out_count and 0 < original <= row.out_count):
            raise Reject(Reason.BAD_TRANSFER_ID)
        self._is_new(row.refunds, number)
        if amount > row.out_units - row.refund_units:
            raise Reject(Reason.TRANSFER_LIMIT)
        acct_id, acct = self._account(cmd)
        if acct_id < 3:
            raise Reject(Reason.SYSTEM_ACCOUNT)
        if acct.balance + amount > self.cfg.max_balance_units:
            raise Reject(Reason.BALANCE_LIMIT)
        row.refunds.add(number)
        row.refund_units += amount
        acct.balance += amount
        self._emit(EventKind.ACCEPTED, account=acct_id, instrument=peer)
        self._transfer_event(
            EventKind.TRANSFER_REFUNDED, acct_id, peer, original, amount, acct.balance, 0, number
        )

    def _transfer_handlers(self) -> dict:
        return {
            CommandKind.TRANSFER_OUT: self._transfer_out,
            CommandKind.TRANSFER_IN: self._transfer_in,
            CommandKind.TRANSFER_REFUND: self._transfer_refund,
        }

    def canonical_transfers(self) -> dict[int, tuple[int, ...]]:
        rows = {peer: row.row() for peer, row in sorted(self._peers().items())}
        return {peer: row for peer, row in rows.items() if any(row)}

    def escrow_balance(self) -> int:
        """Σ escrow-out − Σ credited-in: what conservation adds to the balances."""
        return sum(r.out_units - r.refund_units - r.in_units for r in self._peers().values())
