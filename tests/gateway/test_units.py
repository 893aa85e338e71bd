"""Gateway parts on their own: the reason table, unit conversions, signatures, keys, rate
limits, parameter readers, batched request metrics."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from decimal import Decimal

import ccxt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from derivex.core.records import Reason
from derivex.gateway import params as p
from derivex.gateway.auth import Authenticator, sign
from derivex.gateway.catalog import InstrumentSpec, option_name
from derivex.gateway.errors import REASON_ERRORS, RpcError, rpc_error_for
from derivex.gateway.keys import KeyStore, parse_scopes
from derivex.gateway.listing import default_specs, expiries
from derivex.gateway.ratelimit import RateLimiter
from derivex.gateway.telemetry import LATENCY_BUCKETS_NS, Metrics

NOW_MS = 1_795_000_000_000


def test_every_reason_maps_to_a_code_ccxt_knows() -> None:
    known = ccxt.deribit().describe()["exceptions"]
    assert set(REASON_ERRORS) == set(Reason)
    for reason, (code, _) in REASON_ERRORS.items():
        if reason != Reason.OK:
            assert str(code) in known, (reason, code)
    assert known[str(rpc_error_for(Reason.POST_ONLY_WOULD_TAKE).code)] is ccxt.InvalidOrder
    assert known[str(rpc_error_for(Reason.GAS_EXHAUSTED).code)] is ccxt.DDoSProtection
    assert known[str(rpc_error_for(Reason.INSUFFICIENT_MARGIN).code)] is ccxt.InsufficientFunds
    assert known[str(rpc_error_for(Reason.UNKNOWN_ORDER).code)] is ccxt.OrderNotFound
    assert rpc_error_for(9999).code == 11030


def test_conversions_are_exact_or_rejected() -> None:
    spec = InstrumentSpec(
        1,
        "BTC_USDC-PERPETUAL",
        "perpetual",
        "BTC",
        Decimal("0.01"),
        Decimal("0.0001"),
        tick_size_ticks=50,
    )
    assert spec.contract_value_units == 1
    assert spec.to_ticks("60000.5") == 6_000_050 and spec.to_ticks(0.1) == 10
    assert spec.to_lots("0.0003") == 3 and spec.to_lots(1) == 10_000
    for bad in ("60000.005", "nan", "inf", "1e", True, None, "--1"):
        with pytest.raises(RpcError):
            spec.to_ticks(bad)
    with pytest.raises(RpcError) as error:
        spec.to_lots("0.00005")
    assert error.value.code == 10021


@given(
    st.integers(-(10**18), 10**18),
    st.sampled_from(["0.01", "0.0001", "0.5", "1", "0.00025", "2.5", "0.1", "5"]),
)
def test_price_and_amount_floats_equal_the_decimal_products(count: int, unit: str) -> None:
    # price/amount divide integers (correctly rounded) instead of multiplying decimals:
    # the float must be the one float(count * unit) gives
    spec = InstrumentSpec(0, "X", "perpetual", "BTC", Decimal(unit), Decimal(unit))
    assert spec.price(count) == float(count * Decimal(unit))
    assert spec.amount(count) == float(count * Decimal(unit))


def test_option_names_and_default_chain() -> None:
    expiry = 1_798_790_400_000  # 2027-01-01 08:00 UTC
    assert option_name("BTC", expiry, Decimal(100000), "call") == "BTC_USDC-1JAN27-100000-C"
    assert option_name("BTC", expiry, Decimal("2.5"), "put") == "BTC_USDC-1JAN27-2d5-P"
    days = expiries(NOW_MS)
    assert len(days) == 4 and days == sorted(days) and days[0] > NOW_MS + 2 * 86_400_000
    specs = default_specs(NOW_MS)
    names = [s.name for s in specs]
    assert names[:2] == ["BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL"]
    assert len(names) == len(set(names)) == 2 + 4 * 7 * 2
    assert all("." not in name for name in names)  # channels split on dots


def test_rest_signature_checks() -> None:
    store = KeyStore(None)
    key = store.create(5)
    auth = Authenticator(store, clock_ms=lambda: NOW_MS)
    target = "/api/v2/private/get_positions?currency=BTC"
    ts = str(NOW_MS)
    sig = hmac.new(
        key.client_secret.encode(), f"{ts}\n{ts}\nGET\n{target}\n\n".encode(), hashlib.sha256
    ).hexdigest()
    header = f"deri-hmac-sha256 id={key.client_id},ts={ts},sig={sig},nonce={ts}"
    assert auth.from_header(header, "GET", target, "").account == 5
    with pytest.raises(RpcError) as replayed:  # a signature is accepted once
        auth.from_header(header, "GET", target, "")
    assert replayed.value.data == {"reason": "replayed signature"}
    for bad_header, bad_target in (
        (header, target + "&x=1"),
        (header.replace(ts, "1"), target),
        (header.replace(key.client_id, "nobody"), target),
        ("deri-hmac-sha256 id=x", target),
        ("basic abc", target),
    ):
        with pytest.raises(RpcError) as error:
            auth.from_header(bad_header, "GET", bad_target, "")
        assert error.value.code == 13009
    stale = Authenticator(store, clock_ms=lambda: NOW_MS + 120_000)
    with pytest.raises(RpcError):
        stale.from_header(header, "GET", target, "")


def test_public_auth_grants_and_tokens() -> None:
    store = KeyStore(None)
    key = store.create(7, ("read",))
    auth = Authenticator(store, clock_ms=lambda: NOW_MS)
    found, result = auth.auth(
        {
            "grant_type": "client_credentials",
            "client_id": key.client_id,
            "client_secret": key.client_secret,
        }
    )
    assert found.account == 7 and "trade:read" in result["scope"]
    assert auth.from_token(result["access_token"]).account == 7
    signature = sign(key.client_secret, f"{NOW_MS}\nabc\n")
    found, _ = auth.auth(
        {
            "grant_type": "client_signature",
            "client_id": key.client_id,
            "timestamp": NOW_MS,
            "nonce": "abc",
            "data": "",
            "signature": signature,
        }
    )
    assert found.account == 7
    _, renewed = auth.auth(
        {"grant_type": "refresh_token", "refresh_token": result["refresh_token"]}
    )
    assert auth.from_token(renewed["access_token"]).account == 7
    with pytest.raises(RpcError):  # a refresh token works once
        auth.auth({"grant_type": "refresh_token", "refresh_token": result["refresh_token"]})
    for params in (
        {"grant_type": "client_credentials", "client_id": key.client_id, "client_secret": "x"},
        {
            "grant_type": "client_signature",
            "client_id": key.client_id,
            "timestamp": NOW_MS,
            "nonce": "abc",
            "data": "",
            "signature": "00",
        },
        {"grant_type": "password"},
        {},
    ):
        with pytest.raises(RpcError):
            auth.auth(params)


def test_key_store_file_is_private_and_reloaded(tmp_path) -> None:
    store = KeyStore(tmp_path)
    key = store.create(3, parse_scopes("trade,read"), name="bot")
    mode = stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode)
    assert mode == 0o600
    assert key.client_secret not in repr(key)
    other = KeyStore(tmp_path)  # e.g. the server, while `derivex keys create` runs
    later = store.create(4, ("read",))
    assert other.lookup(later.client_id) is not None and other.lookup(key.client_id).account == 3
    assert store.revoke(key.client_id) and KeyStore(tmp_path).lookup(key.client_id) is None
    with pytest.raises(ValueError):
        parse_scopes("read,withdraw")
    assert parse_scopes("admin") == ("admin",)  # the operator dashboard's scope
    admin = store.create(5, ("admin",))
    assert admin.allows("admin") and not admin.allows("read") and not admin.allows("trade")
    assert not later.allows("admin")


def test_rate_limiter_from_engine_budget() -> None:
    from derivex.core.config import EngineConfig

    config = EngineConfig(gas_max=100, gas_refill_per_ms=1)
    now = [0.0]
    limiter = RateLimiter.from_engine(config)
    limiter._clock = lambda: now[0]
    assert sum(limiter.allow("a", config.gas_base) for _ in range(20)) == 10
    assert limiter.allow("b", config.gas_base)  # another key has its own bucket
    now[0] += 0.01  # 10 ms refill 10 units
    assert limiter.allow("a", config.gas_base) and not limiter.allow("a", config.gas_base)


def test_parameter_readers() -> None:
    assert p.integer({"n": "12"}, "n") == 12 and p.integer({"n": 3.0}, "n") == 3
    assert p.boolean({"b": "false"}, "b") is False and p.boolean({}, "b", True) is True
    assert p.clamped({"depth": "100000"}, "depth", 5, 1, 1000) == 1000
    assert p.order_id({"order_id": "42"}) == 42
    assert p.string_list({"c": "a,b"}, "c") == ["a", "b"]
    for reader, params in (
        (p.integer, {"n": "x"}),
        (p.integer, {"n": True}),
        (p.boolean, {"n": "yes"}),
        (p.text, {"n": 1}),
        (p.number, {"n": [1]}),
        (p.text, {}),
    ):
        with pytest.raises(RpcError):
            reader(params, "n")
    with pytest.raises(RpcError) as error:
        p.order_id({"order_id": "abc"})
    assert error.value.code == 10004


def test_batch_metrics_equal_one_request_at_a_time() -> None:
    # every latency near every bucket bound: the integer-nanosecond bisection of a batch
    # lands in the bucket of the float-second one, and the counts and sums agree
    out_ns = 1_795_000_000_000_000_000
    waits = sorted(
        {max(0, bound + step) for bound in LATENCY_BUCKETS_NS for step in (-2, -1, 0, 1, 2)}
        | {0, 7, 10**10}
    )
    started = [out_ns - wait for wait in waits] + [out_ns + 5]  # a clock step back: 0
    methods = ["private/buy", "private/sell", "no/such"] * len(started)
    one, batch = Metrics(), Metrics()
    for method, start in zip(methods, started, strict=False):
        one.request(method, "ws", True, max(0, out_ns - start) / 1e9)
    batch.answered("ws", methods[: len(started)], started, out_ns)
    assert batch._stats.counts == one._stats.counts
    assert batch._stats.latency == one._stats.latency
    assert sum(one._stats.latency["ws"][0]) == len(started)
    single, plain = Metrics(), Metrics()
    single.answered("ws", ["private/buy"], [out_ns - 123_456], out_ns)
    plain.request("private/buy", "ws", True, 123_456 / 1e9)
    assert single._stats.counts == plain._stats.counts
    assert single._stats.latency == plain._stats.latency
