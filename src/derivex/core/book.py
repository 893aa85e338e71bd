"""Order books: price ladders, FIFO levels and the bookkeeping of resting orders.

Each book side is a row of the ladder arrays holding the prices and level slots of its
levels, sorted so that the best level is *last* (bids ascending, asks descending): new
levels near the touch insert and delete with short moves. Levels keep their orders in a FIFO
doubly linked list; each order is also linked into its position's list (placement order).

Costs: level lookup O(log levels); insert/delete of a level O(distance from the end of the
row); linking/unlinking an order O(1).
"""

from __future__ import annotations

from derivex.core.jit import kernel
from derivex.core.layout import NIL, Account4, Ins4, Level4, Level8, Order4, Order8, Pos4, Pos8
from derivex.core.pools import level_alloc, level_free, order_free
from derivex.core.risk import risk_in, risk_out


@kernel
def ladder_row(instrument, side):
    return instrument * 2 + side


@kernel
def _key(price, side):
    # ascending keys toward the best level: bids by price, asks by -price
    return price if side == 0 else -price


@kernel
def ladder_search(st, row, side, price):
    """Index of the first ladder entry whose key is >= key(price) (insertion point)."""
    key = _key(price, side)
    hi = st.ladder_len[row]
    # most prices are near the touch (the end of the row): a short linear probe first
    probe = hi - 1
    stop = hi - 8 if hi > 8 else 0
    while probe >= stop and _key(st.ladder_price[row, probe], side) >= key:
        probe -= 1
    if probe >= stop or stop == 0:
        return probe + 1
    lo = 0
    hi = probe + 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if _key(st.ladder_price[row, mid], side) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def level_at(st, row, side, price):
    """Level slot at ``price`` on this book side, or NIL."""
    index = ladder_search(st, row, side, price)
    if index < st.ladder_len[row] and st.ladder_price[row, index] == price:
        return st.ladder_level[row, index]
    return NIL


@kernel
def best_level(st, row):
    n = st.ladder_len[row]
    if n == 0:
        return NIL
    return st.ladder_level[row, n - 1]


@kernel
def _ladder_insert(st, row, index, price, level):
    n = st.ladder_len[row]
    j = n
    while j > index:
        st.ladder_price[row, j] = st.ladder_price[row, j - 1]
        st.ladder_level[row, j] = st.ladder_level[row, j - 1]
        j -= 1
    st.ladder_price[row, index] = price
    st.ladder_level[row, index] = level
    st.ladder_len[row] = n + 1


@kernel
def _ladder_delete(st, row, index):
    n = st.ladder_len[row] - 1
    for j in range(index, n):
        st.ladder_price[row, j] = st.ladder_price[row, j + 1]
        st.ladder_level[row, j] = st.ladder_level[row, j + 1]
    st.ladder_len[row] = n


@kernel
def _open_change(st, position, side, dq, price):
    """Resting lots (and their value) of a position change by ``dq`` at ``price``; the
    position's margin terms follow."""
    if dq == 0:
        return
    risk_out(st, position)
    if side == 0:
        st.pos_i8[position, Pos8.OPEN_BUY] += dq
        st.pos_i8[position, Pos8.BUY_VALUE] += dq * price
        risk_in(st, position, 0, dq, 0)
    else:
        st.pos_i8[position, Pos8.OPEN_SELL] += dq
        st.pos_i8[position, Pos8.SELL_VALUE] += dq * price
        risk_in(st, position, 0, 0, dq)


@kernel
def order_rest(st, slot, instrument, side):
    """Append a prepared order (price, qty, position, meta set) to the back of its level and
    to its position's list, and count it everywhere. Capacity was checked by the caller."""
    price = st.ord_i8[slot, Order8.PRICE_TICKS]
    qty = st.ord_i8[slot, Order8.QTY_LOTS]
    row = ladder_row(instrument, side)
    index = ladder_search(st, row, side, price)
    if index < st.ladder_len[row] and st.ladder_price[row, index] == price:
        level = st.ladder_level[row, index]
    else:
        level = level_alloc(st, price)
        _ladder_insert(st, row, index, price, level)
    tail = st.lvl_i4[level, Level4.TAIL]
    st.ord_i4[slot, Order4.PREV] = tail
    st.ord_i4[slot, Order4.NEXT] = NIL
    if tail == NIL:
        st.lvl_i4[level, Level4.HEAD] = slot
    else:
        st.ord_i4[tail, Order4.NEXT] = slot
    st.lvl_i4[level, Level4.TAIL] = slot
    st.lvl_i4[level, Level4.COUNT] += 1
    st.lvl_i8[level, Level8.QTY_LOTS] += qty
    position = st.ord_i4[slot, Order4.POSITION]
    ptail = st.pos_i4[position, Pos4.ORDER_TAIL]
    st.ord_i4[slot, Order4.POSITION_PREV] = ptail
    st.ord_i4[slot, Order4.POSITION_NEXT] = NIL
    if ptail == NIL:
        st.pos_i4[position, Pos4.ORDER_HEAD] = slot
    else:
        st.ord_i4[ptail, Order4.POSITION_NEXT] = slot
    st.pos_i4[position, Pos4.ORDER_TAIL] = slot
    st.pos_i4[position, Pos4.ORDERS] += 1
    _open_change(st, position, side, qty, price)
    account = st.pos_i4[position, Pos4.ACCOUNT]
    st.acc_i4[account, Account4.OPEN_ORDERS] += 1
    st.ins_i4[instrument, Ins4.RESTING] += 1


@kernel
def order_shrink(st, slot, instrument, side, qty):
    """Take ``qty`` off a resting order (fill or in-place amend) without unlinking it."""
    st.ord_i8[slot, Order8.QTY_LOTS] -= qty
    row = ladder_row(instrument, side)
    level = level_at(st, row, side, st.ord_i8[slot, Order8.PRICE_TICKS])
    st.lvl_i8[level, Level8.QTY_LOTS] -= qty
    position = st.ord_i4[slot, Order4.POSITION]
    _open_change(st, position, side, -qty, st.ord_i8[slot, Order8.PRICE_TICKS])


@kernel
def order_unlink(st, slot, instrument, side):
    """Remove a resting order from its level (deleting an emptied level) and from every
    count, keeping the slot allocated (amend re-rests it)."""
    price = st.ord_i8[slot, Order8.PRICE_TICKS]
    qty = st.ord_i8[slot, Order8.QTY_LOTS]
    row = ladder_row(instrument, side)
    index = ladder_search(st, row, side, price)
    level = st.ladder_level[row, index]
    prev = st.ord_i4[slot, Order4.PREV]
    nxt = st.ord_i4[slot, Order4.NEXT]
    if prev == NIL:
        st.lvl_i4[level, Level4.HEAD] = nxt
    else:
        st.ord_i4[prev, Order4.NEXT] = nxt
    if nxt == NIL:
        st.lvl_i4[level, Level4.TAIL] = prev
    else:
        st.ord_i4[nxt, Order4.PREV] = prev
    st.lvl_i4[level, Level4.COUNT] -= 1
    st.lvl_i8[level, Level8.QTY_LOTS] -= qty
    if st.lvl_i4[level, Level4.COUNT] == 0:
        _ladder_delete(st, row, index)
        level_free(st, level)
    position = st.ord_i4[slot, Order4.POSITION]
    pprev = st.ord_i4[slot, Order4.POSITION_PREV]
    pnext = st.ord_i4[slot, Order4.POSITION_NEXT]
    if pprev == NIL:
        st.pos_i4[position, Pos4.ORDER_HEAD] = pnext
    else:
        st.ord_i4[pprev, Order4.POSITION_NEXT] = pnext
    if pnext == NIL:
        st.pos_i4[position, Pos4.ORDER_TAIL] = pprev
    else:
        st.ord_i4[pnext, Order4.POSITION_PREV] = pprev
    st.pos_i4[position, Pos4.ORDERS] -= 1
    _open_change(st, position, side, -qty, price)
    account = st.pos_i4[position, Pos4.ACCOUNT]
    st.acc_i4[account, Account4.OPEN_ORDERS] -= 1
    st.ins_i4[instrument, Ins4.RESTING] -= 1


@kernel
def order_remove(st, slot, instrument, side):
    """Unlink a resting order and free its slot."""
    order_unlink(st, slot, instrument, side)
    order_free(st, slot)
