"""Subaccounts and transfers: CREATE_SUBACCOUNT and TRANSFER. Mirrors core/subaccounts.py
(its module docstring is the spec: validation order, events)."""

from __future__ import annotations

from derivex.core.records import (
    AccountState,
    EventKind,
    IndexStatus,
    Reason,
    SystemAccount,
)
from derivex.core.subaccounts import MAX_SUBACCOUNTS
from tests.reference.entities import Reject

SYSTEM = len(SystemAccount)


class SubaccountsModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _create_subaccount(self, cmd) -> None:
        parent_id = int(cmd["account"])
        if parent_id not in self.accounts:
            raise Reject(Reason.UNKNOWN_ACCOUNT)
        if parent_id < SYSTEM:
            raise Reject(Reason.SYSTEM_ACCOUNT)
        parent = self.accounts[parent_id]
        if parent.blocked:
            raise Reject(Reason.ACCOUNT_BLOCKED)
        if parent.parent:
            raise Reject(Reason.PARENT_IS_SUBACCOUNT)
        if sum(1 for a in self.accounts.values() if a.parent == parent_id) >= MAX_SUBACCOUNTS:
            raise Reject(Reason.SUBACCOUNT_LIMIT)
        self._create_account(cmd)  # its events carry this command's kind (``_emit``)
        child_id = max(self.accounts)
        self.accounts[child_id].parent = parent_id
        self._emit(EventKind.SUBACCOUNT_LINKED, account=child_id, status=parent_id)

    def _transfer_reason(self, source: int, target: int, amount: int) -> Reason | None:
        if source not in self.accounts:
            return Reason.UNKNOWN_ACCOUNT
        if source < SYSTEM:
            return Reason.SYSTEM_ACCOUNT
        if target not in self.accounts:
            return Reason.UNKNOWN_RECIPIENT
        if target < SYSTEM:
            return Reason.SYSTEM_ACCOUNT
        if source == target:
            return Reason.SAME_ACCOUNT
        if amount <= 0:
            return Reason.AMOUNT_NOT_POSITIVE
        paying, receiving = self.accounts[source], self.accounts[target]
        if paying.blocked:
            return Reason.ACCOUNT_BLOCKED
        if receiving.blocked:
            return Reason.RECIPIENT_BLOCKED
        if paying.state == AccountState.IN_LIQUIDATION:
            return Reason.ACCOUNT_IN_LIQUIDATION
        if receiving.state == AccountState.IN_LIQUIDATION:
            return Reason.RECIPIENT_IN_LIQUIDATION
        if amount > paying.balance:
            return Reason.INSUFFICIENT_FUNDS
        if receiving.balance + amount > self.cfg.max_balance_units:
            return Reason.BALANCE_LIMIT
        if self.cfg.risk_checks and any(a == source for a, _ in self.positions):
            for a, inst_id in self.positions:
                und = self.instruments[inst_id].underlying
                if a == source and self._index_status(und) != IndexStatus.VALID:
                    return Reason.INDEX_STALE
            equity, im, _ = self.margins(source)
            if equity - amount < im:
                return Reason.INSUFFICIENT_MARGIN
        return None

    def _transfer_command(self, cmd) -> None:
        source, target = int(cmd["account"]), int(cmd["to_account"])
        amount = int(cmd["amount_units"])
        reason = self._transfer_reason(source, target, amount)
        if reason is not None:
            raise Reject(reason)
        paying, receiving = self.accounts[source], self.accounts[target]
        paying.balance -= amount
        receiving.balance += amount
        self._emit(EventKind.ACCEPTED, account=source, price_ticks=target, qty_lots=amount)
        self._emit(
            EventKind.BALANCE,
            account=source,
            counterpart=target,
            cash_units=-amount,
            balance_units=paying.balance,
        )
        self._emit(
            EventKind.BALANCE,
            account=target,
            counterpart=source,
            cash_units=amount,
            balance_units=receiving.balance,
        )
        if receiving.state == AccountState.BANKRUPT:
            receiving.state = int(AccountState.NORMAL)
            self._emit(EventKind.ACCOUNT_STATE, account=target, status=0)

    def _subaccount_links(self) -> list[tuple[int, int]]:
        return [(a, acct.parent) for a, acct in sorted(self.accounts.items()) if acct.parent]

    def _check_subaccounts(self) -> None:
        for child, parent in self._subaccount_links():
            assert parent >= SYSTEM and parent != child, "subaccount of a system account"
            assert not self.accounts[parent].parent, "two levels of subaccounts"
