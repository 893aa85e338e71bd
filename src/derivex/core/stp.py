"""Self-trade prevention: which resting orders count as an incoming order's own.

An account's setting (``Account4.STP``, set by CREATE_ACCOUNT, CREATE_SUBACCOUNT and
SET_ACCOUNT from their ``stp`` field) holds the mode in bit 0 (``SelfTradePrevention``:
CANCEL_RESTING or REJECT_INCOMING) and the scope in bit 7 (``SelfTradeScope``):

- ACCOUNT (0, the default): only the account's own resting orders count, the behaviour from
  before scopes existed, so an older command log replays to the same events and state root;
- FAMILY (128): a resting order of the account's main account or of any subaccount of that
  main counts as its own too (a main account's family: itself and its subaccounts).

The scope of the *incoming* order's owner decides (a family member with ACCOUNT scope still
trades against the others); the mode then applies as to own orders: CANCEL_RESTING cancels
the family member's resting order (``CANCEL_SELF_TRADE``) and matching goes on,
REJECT_INCOMING rejects the incoming order whole (``SELF_TRADE_REJECTED``). Engine orders
(a liquidation through the book) take their account's setting like any order.

The family id of an account is its main account's id (``Link4.PARENT``), or its own id when
it has none: one array read, never a walk over links, and read only when the incoming
order's owner has FAMILY scope, so the ACCOUNT-scope hot path compares one id per resting
order as before. The setting lives in the account arena (so the state hash, the state
root's account leaves and every snapshot carry it with no new array).

Cost: O(1) each. Any other value of the field: BAD_STP_MODE (validation only).
"""

from __future__ import annotations

import numpy as np

from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account4, Link4
from derivex.core.records import SelfTradePrevention, SelfTradeScope

_MODE = 1  # bit 0: SelfTradePrevention
_FAMILY = int(SelfTradeScope.FAMILY)  # bit 7
_REJECT = int(SelfTradePrevention.REJECT_INCOMING)


@kernel
def stp_valid(stp):
    """Whether ``stp`` is a mode with a scope (0, 1, 128 or 129)."""
    return stp >= 0 and (stp & ~(_MODE | _FAMILY)) == 0


@kernel
def rejects_incoming(st, account):
    """Whether ``account``'s mode is REJECT_INCOMING (else CANCEL_RESTING)."""
    return (st.acc_i4[account, Account4.STP] & _MODE) == _REJECT


@kernel
def family_of(st, account):
    """The family id of ``account``: its main account, or itself when it has none."""
    parent = np.int64(st.sub_i4[account, Link4.PARENT])
    return parent if parent != 0 else np.int64(account)


@kernel
def stp_family(st, account):
    """The family whose resting orders count as ``account``'s own (its scope is FAMILY), or
    NIL (its scope is ACCOUNT: own orders only)."""
    if st.acc_i4[account, Account4.STP] & _FAMILY:
        return family_of(st, account)
    return np.int64(NIL)


@kernel
def counts_as_own(st, maker, account, family):
    """Whether a resting order of ``maker`` counts as ``account``'s own for self-trade
    prevention; ``family`` is ``stp_family(st, account)``, computed once per match."""
    return maker == account or (family != NIL and family_of(st, maker) == family)
