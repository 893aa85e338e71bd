"""Accounts and gas: create, deposit, withdraw, set; the gas refill and charge. Mirrors
core/accounting.py."""

from __future__ import annotations

from derivex.core.records import (
    AccountState,
    CommandKind,
    EventKind,
    IndexStatus,
    Reason,
    SelfTradePrevention,
    SelfTradeScope,
    SystemAccount,
)
from tests.reference.entities import (
    NS_PER_MS,
    Account,
    Reject,
    ceil_div,
)

#: every valid ``stp`` value: a mode (bit 0) with a scope (bit 7), core/stp.py
STP_SETTINGS = {mode | scope for mode in SelfTradePrevention for scope in SelfTradeScope}


class AccountsModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _account(self, cmd) -> tuple[int, Account]:
        acct_id = int(cmd["account"])
        if acct_id not in self.accounts:
            raise Reject(Reason.UNKNOWN_ACCOUNT)
        return acct_id, self.accounts[acct_id]

    def _user_account(self, cmd) -> tuple[int, Account]:
        acct_id, acct = self._account(cmd)
        if acct.blocked:
            raise Reject(Reason.ACCOUNT_BLOCKED)  # [A23]
        if acct_id < len(SystemAccount):
            raise Reject(Reason.SYSTEM_ACCOUNT)
        if acct.state == AccountState.IN_LIQUIDATION:
            raise Reject(Reason.ACCOUNT_IN_LIQUIDATION)
        return acct_id, acct

    def _block(self, cmd) -> None:
        """BLOCK_ACCOUNT / UNBLOCK_ACCOUNT: the kill switch (see [A23])."""
        acct_id, acct = self._account(cmd)
        if acct_id < len(SystemAccount):
            raise Reject(Reason.SYSTEM_ACCOUNT)
        block = self._kind == CommandKind.BLOCK_ACCOUNT
        if block and acct.blocked:
            raise Reject(Reason.ACCOUNT_BLOCKED)
        if not block and not acct.blocked:
            raise Reject(Reason.ACCOUNT_NOT_BLOCKED)
        acct.blocked = block
        if not block:
            self._emit(EventKind.ACCEPTED, account=acct_id)
            return
        victims = sorted((self.orders[oid] for oid in acct.orders), key=lambda o: o.instrument)
        self._emit(EventKind.ACCEPTED, account=acct_id, qty_lots=len(victims))
        for order in victims:
            self._cancel_resting(order, Reason.CANCEL_ACCOUNT_BLOCKED)

    def _create_account(self, cmd) -> None:
        stp = int(cmd["stp"])
        if stp not in STP_SETTINGS:
            raise Reject(Reason.BAD_STP_MODE)
        mode = int(cmd["margin_mode"])
        if mode not in (0, 1):
            raise Reject(Reason.BAD_MARGIN_MODE)
        if len(self.accounts) >= self.cfg.max_accounts:
            raise Reject(Reason.ACCOUNT_POOL_FULL)
        acct_id = len(self.accounts)
        self.accounts[acct_id] = Account(
            stp=stp, gas=self.cfg.gas_max, gas_ts_ns=self.clock, margin_mode=mode
        )
        self._emit(EventKind.ACCEPTED, account=acct_id)
        self._emit(EventKind.ACCOUNT_CREATED, account=acct_id, status=stp)

    @staticmethod
    def _money_allowed(acct_id: int) -> None:
        # the P&L clearing account is a counterpart, not money anybody may move
        if acct_id == SystemAccount.PNL_CLEARING:
            raise Reject(Reason.SYSTEM_ACCOUNT)

    def _deposit(self, cmd) -> None:
        acct_id, acct = self._account(cmd)
        self._money_allowed(acct_id)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
        if acct.balance + amount > self.cfg.max_balance_units:
            raise Reject(Reason.BALANCE_LIMIT)
        if self.total_deposits + amount > (1 << 62):
            raise Reject(Reason.BALANCE_LIMIT)
        acct.balance += amount
        self.total_deposits += amount
        self._emit(EventKind.ACCEPTED, account=acct_id)
        self._emit(
            EventKind.BALANCE, account=acct_id, cash_units=amount, balance_units=acct.balance
        )
        if acct.state == AccountState.BANKRUPT:
            acct.state = int(AccountState.NORMAL)
            self._emit(EventKind.ACCOUNT_STATE, account=acct_id, status=0)

    def _withdraw(self, cmd) -> None:
        acct_id, acct = self._account(cmd)
        self._money_allowed(acct_id)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
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
        acct.balance -= amount
        self.total_withdrawals += amount
        self._emit(EventKind.ACCEPTED, account=acct_id)
        self._emit(
            EventKind.BALANCE, account=acct_id, cash_units=-amount, balance_units=acct.balance
        )

    def _set_account(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)  # [A2]
        stp = int(cmd["stp"])
        if stp not in STP_SETTINGS:
            raise Reject(Reason.BAD_STP_MODE)
        mode = int(cmd["margin_mode"])
        if mode not in (0, 1):
            raise Reject(Reason.BAD_MARGIN_MODE)
        if mode != acct.margin_mode and any(a == acct_id for a, _ in self.positions):
            raise Reject(Reason.MARGIN_MODE_OPEN)
        acct.stp = stp
        acct.margin_mode = mode
        self._emit(EventKind.ACCEPTED, account=acct_id, status=stp)

    # ------------------------------------------------------------------ gas

    def _refill(self, acct: Account) -> None:
        """The exact rule of the spec's Gas section."""
        now, rate, gas_max = self.clock, self.cfg.gas_refill_per_ms, self.cfg.gas_max
        if now <= acct.gas_ts_ns:
            return
        if acct.gas >= gas_max:
            acct.gas_ts_ns = now
            return
        ms = (now - acct.gas_ts_ns) // NS_PER_MS
        if ms == 0:
            return
        if rate == 0:
            acct.gas_ts_ns += ms * NS_PER_MS
        elif ms >= ceil_div(gas_max - acct.gas, rate):
            acct.gas = gas_max
            acct.gas_ts_ns = now
        else:
            acct.gas += ms * rate
            acct.gas_ts_ns += ms * NS_PER_MS

    def _charge_base(self, acct: Account) -> None:
        self._refill(acct)
        if acct.gas < self.cfg.gas_base:
            raise Reject(Reason.GAS_EXHAUSTED)
        acct.gas -= self.cfg.gas_base
