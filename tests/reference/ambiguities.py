"""Where docs/core-semantics.md is silent or ambiguous, the reading the reference model
chose (numbered; the code refers to them as ``[A<n>]``)."""

from __future__ import annotations

AMBIGUITIES = [
    (
        "A1 gas clock: CREATE_ACCOUNT sets gas_ts_ns to the engine clock after this command's "
        "ts_ns is applied (max(clock, ts_ns)); refill follows the exact rule of the spec's Gas "
        "section and happens only for gas-charged commands (after the account checks)."
    ),
    (
        "A2 SET_ACCOUNT on a system account (0, 1, 2) is rejected with SYSTEM_ACCOUNT (system "
        "accounts never trade, so STP is meaningless). Checks: UNKNOWN_ACCOUNT, SYSTEM_ACCOUNT, "
        "BAD_STP_MODE."
    ),
    (
        "A3 CREATE_ACCOUNT checks BAD_STP_MODE before ACCOUNT_POOL_FULL; ADD_INSTRUMENT checks "
        "BAD_INSTRUMENT_PARAMS before INSTRUMENT_POOL_FULL. max_accounts counts the 3 system "
        "accounts."
    ),
    (
        "A4 ADD_INSTRUMENT: both maker and taker fee may be negative (only the [-1e5, 1e5] bound "
        "is checked); underlying must be a known Underlying (1..3); an instrument whose derived "
        "max_price_ticks is 0 is still accepted (every order on it is PRICE_TOO_LARGE). "
        "ADD/HALT/RESUME/CLOSE emit ACCEPTED then INSTRUMENT_STATUS(new status)."
    ),
    (
        "A5 CLOSE_INSTRUMENT of an already closed instrument: INSTRUMENT_NOT_ACTIVE (by "
        "analogy with HALT; the kernel's choice)."
    ),
    (
        "A6 Every accepted order (IOC/FOK/market too) takes an order slot (id) from the LIFO "
        "free stack, else the next never-used slot. A slot is pushed back on the free stack "
        "at the moment its order dies: a maker when its last lot fills or it is cancelled, "
        "the taker after matching ends (fully filled or expired). Rejected orders take no id."
    ),
    (
        "A7 Step 11 for PLACE_ORDER: GTC limit only: ACCOUNT_ORDER_LIMIT, BOOK_ORDER_LIMIT; "
        "every order (an IOC needs an order slot too): ORDER_POOL_FULL; GTC limit only: "
        "BOOK_LEVEL_LIMIT, LEVEL_POOL_FULL (only if no level at its price); every order: "
        "POSITION_POOL_FULL. (The kernel's reading; the spec's capacity section lists "
        "ORDER_POOL_FULL under GTC.)"
    ),
    (
        "A8 Gas in matching: every resting order reached costs gas_per_fill, including own "
        "orders cancelled by STP and reduce-only orders cancelled for zero capacity."
    ),
    (
        "A9 The liquidity scan walks until the quantity is exhausted or nothing more crosses, "
        "ignoring gas while walking; then: an own order reached (reject mode) -> "
        "SELF_TRADE_REJECTED (even beyond the point where matching would run out of gas); "
        "FOK: total gas matching would charge > budget -> GAS_EXHAUSTED; FOK not complete -> "
        "FOK_NOT_FILLED (the order the spec lists them in)."
    ),
    (
        "A10 Expiry reasons: remainder after a gas stop: EXPIRED(CANCEL_GAS) (GTC too); a market "
        "order that filled nothing (and did not stop for gas): EXPIRED(NO_LIQUIDITY), even if it "
        "reached own orders (STP-cancelled) or zero-capacity reduce-only orders; otherwise a "
        "non-resting remainder is EXPIRED(CANCEL_IOC_REMAINDER)."
    ),
    (
        "A11 'rest cancelled right after the fill' of a resting reduce-only order: the "
        "CANCELLED(CANCEL_REDUCE_ONLY) comes after the four fill events (FILLED, FILLED, "
        "POSITION, POSITION)."
    ),
    (
        "A12 FILLED.fee_units is the fee paid by the account (positive charge, negative rebate); "
        "balance -= fee, fee pool += fee."
    ),
    (
        "A13 Post-only 'would trade' compares with the opposite best price regardless of whose "
        "orders are there (own orders count)."
    ),
    (
        "A14 Amend keeps priority iff final price (after post-only repricing) == old price "
        "and final qty (after reduce-only clamp) <= old remaining (so an amend to the same "
        "price and quantity keeps priority, a=1). Level capacity (BOOK_LEVEL_LIMIT, "
        "LEVEL_POOL_FULL) is checked only when the price changes, with the current counts "
        "(the order's own old level still counts even if it is alone there). The STP scan "
        "runs only when priority is lost. Amend validation order: account, gas, "
        "UNKNOWN_ORDER, NOT_ORDER_OWNER, then steps 5-12 (no order/account/book capacity)."
    ),
    (
        "A15 Mass quote legs are numbered from 1 in events (leg 0 = header), as '0 for header "
        "problems' implies. A header is well formed when 1 <= count <= max_quote_legs and the "
        "next count records of the batch are all QUOTE_LEG: it then consumes them (they "
        "produce no events of their own and their ts_ns does not move the clock). Otherwise "
        "the header alone is BAD_MASS_QUOTE (leg 0, after the account and gas checks) and the "
        "records after it are processed normally (stray legs: ORPHAN_QUOTE_LEG)."
    ),
    (
        "A16 Mass quote validation order: account checks, gas_base, header, then per leg in "
        "order: UNKNOWN_INSTRUMENT, INSTRUMENT_HALTED/CLOSED, DUPLICATE_QUOTE_INSTRUMENT, "
        "QTY_NOT_POSITIVE (a quantity < 0), bid side then ask side (if qty > 0): QTY_TOO_LARGE, "
        "QTY_OFF_STEP, PRICE_NOT_POSITIVE, PRICE_TOO_LARGE, PRICE_OFF_TICK; CROSSED_QUOTE "
        "(both sides > 0 and bid >= ask); POSITION_LIMIT (bid then ask, replaced quote of that "
        "side counted as gone). Then capacity: ACCOUNT_ORDER_LIMIT (leg 0), BOOK_ORDER_LIMIT "
        "(first failing leg), ORDER_POOL_FULL (leg 0), BOOK_LEVEL_LIMIT (first failing leg), "
        "LEVEL_POOL_FULL (leg 0), POSITION_POOL_FULL (leg 0; counts legs with a non-zero side "
        "and no live slot). Then the extra gas (leg 0)."
    ),
    (
        "A17 Mass quote execution per leg: cancel old quote bid, then old quote ask "
        "(CANCELLED reason CANCEL_QUOTE_REPLACED, leg = new leg, label = old order's label), "
        "then place bid, then ask. Quote orders store flags QUOTE|POST_ONLY and the header's "
        "label. 'Previous quote' = any live order of the account on that instrument with the "
        "QUOTE flag (amended quotes included)."
    ),
    (
        "A18 CANCEL_ALL / CANCEL_ALL_INSTRUMENT cancel with reason CANCEL_ALL; "
        "CANCEL_ALL_INSTRUMENT of an unknown instrument is UNKNOWN_INSTRUMENT (after gas); "
        "closed/halted instruments are fine (0 or more orders)."
    ),
    (
        "A19 Overflow: the spec bounds trade values but not balances, fee pool, clearing account "
        "or deposit/withdrawal totals; the model raises UnspecifiedOverflow if any of those "
        "leaves int64 (tests discard such streams)."
    ),
    (
        "A20 SET_INSTRUMENT flags: 0 means FUNDING_CAP (the only setting before the bits "
        "existed, so older logs replay unchanged); unknown bits, a cap on a non-perpetual or a "
        "band outside [0, 1e6] reject the whole command; ACCEPTED carries the cap and band as "
        "now set (price_ticks, qty_lots)."
    ),
    (
        "A21 [R5] price band: applied after the price format checks and before reduce-only "
        "capping; a repriced post-only order is checked again (refused, never clamped); an "
        "amend is banded only if it moves the price or adds lots (compared with the raw "
        "command quantity); a mass-quote side outside the band is REJECTED on its own at "
        "placement (after the replaced quotes are cancelled, before the post-only check)."
    ),
    (
        "A22 [L9] a takeover / deleveraging transfer releases at once every position slot it "
        "leaves flat with no resting orders, the receiver's (the fund's) included."
    ),
    (
        "A23 BLOCK_ACCOUNT (kill switch): UNKNOWN_ACCOUNT, then SYSTEM_ACCOUNT, then "
        "ACCOUNT_BLOCKED if already blocked; no gas; ACCEPTED (qty_lots = orders) then every "
        "resting order CANCELLED with CANCEL_ACCOUNT_BLOCKED in cancel-all's order (A18). "
        "While blocked, every command that checks the trader (place, amend, cancel, cancel-all, "
        "mass quote, set-account) is ACCOUNT_BLOCKED before SYSTEM_ACCOUNT and liquidation "
        "checks; deposits, withdrawals, funding, settlement and liquidation are unaffected. "
        "UNBLOCK_ACCOUNT: the same checks, ACCOUNT_NOT_BLOCKED if not blocked. The canonical "
        "state lists blocked accounts under 'blocked_accounts' only when there is one."
    ),
]
