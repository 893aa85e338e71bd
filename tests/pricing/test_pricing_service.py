"""PricingService: marks, smiles and RISK_ARRAY records for one underlying."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql

from derivex.core import records as rec
from derivex.core.config import span_grid
from derivex.pricing import SviParams, black76_price
from derivex.pricing.risk import GREEK_SCALE, SpanVolShock
from derivex.pricing.service import DEFAULT_SMILE, NS_PER_YEAR, OptionSpec, PricingService

NOW = 1_790_000_000 * 1_000_000_000
DAY = 86_400 * 1_000_000_000
S = 10_000_000.0


def book(tick: int = 50) -> list[OptionSpec]:
    specs, ident = [], 100
    for days in (2, 9, 30, 120):
        for strike in range(8_000_000, 12_000_001, 1_000_000):
            for call in (True, False):
                specs.append(OptionSpec(ident, strike, NOW + days * DAY, call, 2, tick))
                ident += 1
    return specs


def test_marks_are_rounded_theoretical_prices_on_the_tick():
    specs = book()
    result = PricingService(specs).price(NOW, S)
    assert result.instrument.tolist() == [s.instrument for s in specs]
    assert np.all(result.mark_ticks % 50 == 0) and np.all(result.mark_ticks >= 50)
    for i, spec in enumerate(specs):
        years = (spec.expiry_ns - NOW) / NS_PER_YEAR
        log_k = math.log(spec.strike_ticks / S)
        vol = math.sqrt(DEFAULT_SMILE.total_variance(log_k))
        assert result.vol[i] == pytest.approx(vol, rel=1e-12)
        opt = ql.Option.Call if spec.is_call else ql.Option.Put
        theo = ql.blackFormula(opt, spec.strike_ticks, S, vol * math.sqrt(years), 1.0)
        assert result.theo_ticks[i] == pytest.approx(theo, rel=1e-9, abs=1e-6)
        expect = max(50 * math.floor(theo / 50 + 0.5), 50)
        assert result.mark_ticks[i] == expect
        assert result.mark_iv_ppm[i] == round(vol * 1e6)


def test_records_carry_every_option_in_order():
    specs = book()
    service = PricingService(specs)
    result = service.price(NOW, S)
    rows = 2 + 7  # 35 scenarios in legs of five
    assert len(result.records) == len(specs) * rows
    assert result.records.dtype == rec.COMMAND_DTYPE
    headers = result.records[0::rows]
    assert np.all(headers["kind"] == rec.CommandKind.RISK_ARRAY)
    assert headers["instrument"].tolist() == [s.instrument for s in specs]
    assert headers["price_ticks"].tolist() == result.mark_ticks.tolist()
    assert np.array_equal(result.records[1::rows]["delta_nano"], result.greeks[:, 0])
    # relative to the mark: the unshocked, unmoved scenario (row 13 of the Deribit grid:
    # move 0, vol same) is the rounding of the mark, at most half a tick of value unless the
    # one-tick floor lifted the mark
    flat = result.values[:, 13]
    gap = (result.theo_ticks - result.mark_ticks) * 2
    assert np.all(np.abs(flat - np.floor(gap)) <= 1)
    lifted = result.theo_ticks < 25
    assert np.all(np.abs(flat[~lifted]) <= 25 * 2 + 1) and np.all(flat[lifted] < 0)
    assert service.records(NOW, S).tobytes() == result.records.tobytes()  # deterministic


def test_put_call_parity_and_delta_signs():
    result = PricingService(book(tick=1)).price(NOW, S)
    calls, puts = result.theo_ticks[0::2], result.theo_ticks[1::2]
    strikes = np.array([s.strike_ticks for s in book()][0::2], dtype=float)
    assert np.allclose(calls - puts, S - strikes, atol=1e-6)
    delta = result.greeks[:, 0]
    assert np.all(delta[0::2] > 0) and np.all(delta[1::2] < 0)
    assert np.all(np.abs(delta) <= 2 * GREEK_SCALE)


def test_fitted_smile_reproduces_quotes_and_falls_back_to_default():
    specs = book()
    service = PricingService(specs)
    expiry = NOW + 30 * DAY
    strikes = np.linspace(7_000_000, 13_000_000, 25)
    k = np.log(strikes / S)
    quotes = 0.55 - 0.15 * k + 0.4 * k * k
    params = service.fit_smile(expiry, NOW, S, strikes, quotes)
    assert isinstance(params, SviParams) and service.smile(expiry) == params
    vols = service.vols(NOW, S)
    for i, spec in enumerate(specs):
        kk = math.log(spec.strike_ticks / S)
        if spec.expiry_ns == expiry:
            assert vols[i] == pytest.approx(0.55 - 0.15 * kk + 0.4 * kk * kk, abs=2e-3)
        else:
            assert vols[i] == pytest.approx(math.sqrt(DEFAULT_SMILE.total_variance(kk)))
    # later, the slice keeps its implied volatility per log-moneyness
    later = service.vols(NOW + 5 * DAY, S)
    alive = np.array([spec.expiry_ns > NOW + 5 * DAY for spec in specs])
    assert np.allclose(later[alive], vols[alive], rtol=1e-12)
    assert np.all(later[~alive] == 0.0)
    service.clear_smile(expiry)
    assert service.smile(expiry) is None


def test_fit_smile_from_prices_round_trip():
    service = PricingService(book())
    expiry = NOW + 9 * DAY
    years = 9 * DAY / NS_PER_YEAR
    strikes = np.linspace(8_500_000, 11_500_000, 13)
    vols = 0.6 + 0.2 * np.log(strikes / S) ** 2
    calls = strikes >= S
    prices = black76_price(S, strikes, years, vols, 0.0, calls)
    service.fit_smile_from_prices(expiry, NOW, S, strikes, prices, calls)
    entry = service.smile(expiry)
    fitted = np.sqrt(entry.total_variance(np.log(strikes / S)) / years)
    assert np.allclose(fitted, vols, atol=2e-3)


def test_expired_options_mark_at_intrinsic():
    specs = [
        OptionSpec(1, 9_000_000, NOW, True, 1, 10),
        OptionSpec(2, 9_000_000, NOW, False, 1, 10),
    ]
    result = PricingService(specs).price(NOW + DAY, S)
    assert result.mark_ticks.tolist() == [1_000_000, 0]
    assert result.vol.tolist() == [0.0, 0.0]
    # at expiry the call moves one for one with the index
    assert result.greeks[0, 0] == GREEK_SCALE and result.greeks[1, 0] == 0


def test_span_configuration_and_validation():
    service = PricingService(book(), scenarios=span_grid(), shock=SpanVolShock(0.1))
    result = service.price(NOW, S)
    assert result.values.shape == (len(book()), 16)
    assert len(result.records) == len(book()) * (2 + 4)
    with pytest.raises(ValueError):
        service.add_options([book()[0]])  # duplicate id
    with pytest.raises(ValueError):
        service.price(NOW, 0.0)
    with pytest.raises(ValueError):
        service.fit_smile(NOW + DAY, NOW, S, [1.0, 2.0], [0.5, 0.5])
