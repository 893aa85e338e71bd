"""Bounded micro-benchmark: one trade with N trigger orders resting, grouped (OCO pairs)
or not; and PLACE_LINKED vs PLACE_TRIGGER placement. Prints microseconds per command."""
import time
import numpy as np
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.records import CommandKind as K, command_array

def rec(rows):
    r = command_array(len(rows))
    for k, row in enumerate(rows):
        for name, v in row.items():
            r[k][name] = v
    r["seq"] = np.arange(1, len(rows) + 1) + rec.seq
    rec.seq += len(rows)
    return r
rec.seq = 0

def setup(grouped, n):
    e = Engine(EngineConfig(risk_checks=False, max_triggers=1 << 16, max_open_orders_per_account=1 << 20))
    rows = [{"kind": K.CREATE_ACCOUNT} for _ in range(3)] + [{"kind": K.DEPOSIT, "account": a, "amount_units": 10**15} for a in (3, 4, 5)]
    rows += [{"kind": K.ADD_INSTRUMENT, "instrument_kind": 1, "underlying": 1, "tick_size_ticks": 1, "min_trade_lots": 1, "contract_value_units": 1}]
    e.process(rec(rows))
    e.process(rec([{"kind": K.PLACE_ORDER, "account": 4, "side": 1, "price_ticks": 100, "qty_lots": 1}, {"kind": K.PLACE_ORDER, "account": 5, "side": 0, "price_ticks": 100, "qty_lots": 1}]))
    trig = lambda kind, ttype, price: {"kind": kind, "account": 3, "side": 1, "order_type": 1, "tif": 1, "trigger_type": ttype, "trigger_price_ticks": price, "qty_lots": 1}
    rows = []
    for j in range(n // 2):
        if grouped:
            rows += [{"kind": K.PLACE_LINKED, "account": 3, "link_type": 2, "count": 2}, trig(K.LINKED_TRIGGER, 2, 200 + j), trig(K.LINKED_TRIGGER, 1, 50)]
        else:
            rows += [trig(K.PLACE_TRIGGER, 2, 200 + j), trig(K.PLACE_TRIGGER, 1, 50)]
    t = time.perf_counter(); e.process(rec(rows)); place = (time.perf_counter() - t) / (n // 2)
    return e, place

for n in (1000, 10000):
    for grouped in (False, True):
        e, place = setup(grouped, n)
        best = 1e9
        for i in range(50):
            cmds = rec([{"kind": K.PLACE_ORDER, "account": 4, "side": 1, "price_ticks": 100, "qty_lots": 1}, {"kind": K.PLACE_ORDER, "account": 5, "side": 0, "price_ticks": 100, "qty_lots": 1}])
            t = time.perf_counter(); e.process(cmds); best = min(best, (time.perf_counter() - t) / 2)
        print(f"{n} triggers resting, grouped={grouped}: trade command {best*1e6:.1f} us (best of 50); placing a pair {place*1e6:.1f} us")
