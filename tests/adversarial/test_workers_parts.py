"""The parts worker mode shares state with, in one process: labels written by one worker
and read by another (any characters, a writer mid-line), and option views decoded from
sequenced RISK_ARRAY records as the pricing service made them, and read back from the
engine state once sequenced."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from derivex.gateway import serve as serving
from derivex.gateway.labels import SharedLabels
from derivex.gateway.option_views import option_views
from derivex.market import Market
from derivex.pricing.black import black76_greeks
from derivex.pricing.service import NS_PER_YEAR


def test_labels_written_by_one_worker_are_read_by_another(tmp_path: Path) -> None:
    writer = SharedLabels(tmp_path, "worker.0.0")
    reader = SharedLabels(tmp_path, "worker.1.0")
    labels = ["plain", "with space", 'quote " and \\ and\nnewline', "ünïcødé", "x" * 64]
    keys = [writer.key(label) for label in labels]
    assert writer.key("") == 0 and reader.name(0) == ""
    assert len(set(keys)) == len(keys) and all(keys)
    assert reader.name(keys[0]) == ""  # not flushed yet: nobody else can know it
    writer.flush()
    assert [reader.name(key) for key in keys] == labels
    # a line being written (no newline yet) is not read until it is whole
    with (tmp_path / "worker.2.0.labels").open("a") as partial:
        partial.write('00000000000000ff "half')
        partial.flush()
        assert reader.name(0xFF) == ""
        partial.write(' done"\n')
    assert reader.name(0xFF) == "half done"
    writer.close()
    reader.close()


def test_option_views_decode_the_sequenced_greeks(tmp_path: Path) -> None:
    opened = serving.open_venue(tmp_path, demo=False)
    venue = opened.venue
    market = Market.simulated(venue, 7)
    market.index_step()
    now = time.time_ns()
    base, service = next(iter(market.pricers.items()))
    index = venue.index_ticks(base)
    result = service.price(now, float(index))
    views = {
        instrument: (iv, greeks)
        for instrument, iv, greeks in option_views(venue.catalog, result.records)
    }
    assert set(views) == set(result.instrument.tolist())
    assert len(views) == len(service.options) > 0  # the loops below check every option
    specs = service.options
    unit = float(venue.catalog.by_id[specs[0].instrument].price_unit)
    strikes = np.array([s.strike_ticks for s in specs], dtype=float) * unit
    years = np.maximum(np.array([s.expiry_ns - now for s in specs]) / NS_PER_YEAR, 1e-9)
    calls = np.array([s.is_call for s in specs])
    floats = black76_greeks(index * unit, strikes, years, result.vol, 0.0, calls)
    for k, spec in enumerate(specs):
        iv, greeks = views[spec.instrument]
        assert iv == round(float(result.vol[k]) * 100, 2)
        assert abs(greeks["delta"] - floats.delta[k]) < 1e-4
        assert abs(greeks["vega"] - floats.vega[k] / 100) <= 1e-4 * max(1, abs(greeks["vega"]))
        assert abs(greeks["theta"] - floats.theta[k] / 365) <= 1e-4 * max(1, abs(greeks["theta"]))
    # once sequenced, the venue shows the engine's view: the records' exactly
    venue.submit_inputs(result.records)
    for instrument, (iv, greeks) in views.items():
        assert (venue.mark_iv(instrument), venue.greeks(instrument)) == (iv, greeks)
    assert opened.venue.exchange.journal is not None
    opened.venue.exchange.journal.close()


def test_a_token_spent_on_one_worker_is_spent_on_every_worker(tmp_path: Path) -> None:
    from derivex.gateway.spent_tokens import SpentTokens

    first, second = SpentTokens(tmp_path, "worker.0.0"), SpentTokens(tmp_path, "worker.1.0")
    assert "a.token" not in first and "a.token" not in second and 7 not in first
    first.add("a.token")
    assert "a.token" in second and "other" not in second
    second.add("other")
    assert "other" in first
    assert "a.token" not in (tmp_path / "worker.0.0.spent").read_text()  # digests only
    first.close()
    second.close()


def test_damaged_label_and_metrics_files_are_skipped_not_fatal(tmp_path: Path) -> None:
    """A label file with garbage lines (not hex, not JSON, not UTF-8, not a string) names
    no label for those lines and the good lines still read; a worker's metrics file that
    does not parse is left out of ``/metrics`` while the others render."""
    from derivex.gateway.shared_metrics import WorkerMetrics

    writer = SharedLabels(tmp_path / "labels", "worker.0.0")
    good = writer.key("kept")
    writer.flush()
    (tmp_path / "labels" / "worker.9.0.labels").write_bytes(
        b'zz "x"\n00000000000000aa {not json\n\xff\xfe "bad"\n00000000000000bb 5\n'
    )
    reader = SharedLabels(tmp_path / "labels", "worker.1.0")
    assert reader.name(0xAA) == "" and reader.name(0xBB) == ""
    assert reader.name(good) == "kept"
    writer.close()
    reader.close()

    one, two = WorkerMetrics(0, tmp_path / "metrics"), WorkerMetrics(1, tmp_path / "metrics")
    one.publish()
    (tmp_path / "metrics" / "worker.1.prom").write_bytes(b"\x00garbage{{{ not prometheus\n")
    text = WorkerMetrics(2, tmp_path / "metrics").render().decode()
    assert 'worker="0"' in text and 'worker="2"' in text and 'worker="1"' not in text
    assert two.worker == 1
