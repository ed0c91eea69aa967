"""Tests for the Great Expectations stage (tradingrl.data.expectations)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.columns import OHLCV_COLUMNS, PRICE_COLUMNS
from tradingrl.data.errors import ContractError
from tradingrl.data.expectations import (
    BAR_RANGE,
    BAR_RANGE_LOG,
    CALENDAR_GAP,
    COMPLETENESS,
    GAP_DAYS,
    MISSING_BARS_BEFORE,
    NOT_NULL,
    PRICE_SPIKE,
    QUARANTINE,
    RETURN_OUTLIER,
    ROW_COUNT,
    SPIKE_LOG_MOVE,
    WARN,
    ExpectationOutcome,
    ExpectationReport,
    ExpectationsError,
    _outcome,
    add_derived_columns,
    run_expectations,
)

THRESHOLDS = {
    "max_spike_log_move": 0.5,
    "max_bar_range_log": 0.5,
    "max_gap_days": 5.0,
    "min_completeness": 0.999,
}
SYMBOLS = ("AAA", "BBB", "CCC")
BARS = 120


def make_frame(
    symbols=SYMBOLS, bars=BARS, seed=0, index_start=1000, index_step=3, start="2021-01-04"
):
    """A clean random walk per symbol on business days, sorted by (symbol, timestamp),
    with a non-default unique integer index."""
    rng = np.random.default_rng(seed)
    stamps = pd.bdate_range(start, periods=bars, tz="UTC")
    parts = []
    for symbol in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, bars)))
        open_ = close * np.exp(rng.normal(0.0, 0.003, bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.003, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.003, bars)))
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": stamps,
                    "symbol": symbol,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": rng.uniform(1e3, 1e6, bars),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame.index = index_start + index_step * np.arange(len(frame))
    return frame


def labels_of(frame, symbol):
    return list(frame.index[frame["symbol"] == symbol])


def by_name(report: ExpectationReport, name: str) -> ExpectationOutcome:
    (outcome,) = [o for o in report.outcomes if o.name == name]
    return outcome


@pytest.fixture(scope="module")
def clean():
    return make_frame()


@pytest.fixture(scope="module")
def clean_report(clean):
    return run_expectations(clean, **THRESHOLDS)


@pytest.fixture(scope="module")
def spiked(clean):
    frame = clean.copy()
    label = labels_of(frame, "BBB")[60]
    frame.loc[label, list(PRICE_COLUMNS)] *= 1000.0
    return frame, label


@pytest.fixture(scope="module")
def spiked_report(spiked):
    frame, _ = spiked
    return run_expectations(frame, **THRESHOLDS)


@pytest.fixture(scope="module")
def gapped(clean):
    """Ten business days removed from the middle of BBB."""
    bbb = labels_of(clean, "BBB")
    removed = bbb[50:60]
    return clean.drop(index=removed), bbb[60]


@pytest.fixture(scope="module")
def gapped_report(gapped):
    frame, _ = gapped
    return run_expectations(frame, **THRESHOLDS)


# ----------------------------------------------------------------------------- derived columns


def test_derived_columns_on_a_hand_made_frame():
    stamps = pd.to_datetime(
        ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-08"], utc=True
    )
    a_close = [100.0, 101.0, 101000.0, 102.0, 103.0]  # spike on the 3rd bar
    # B trades on the 1st, 2nd and 5th stamp: it misses two union-calendar bars.
    b_stamps = stamps[[0, 1, 4]]
    b_close = [50.0, 51.0, 52.0]
    frame = pd.DataFrame(
        {
            "timestamp": list(stamps) + list(b_stamps),
            "symbol": ["A"] * 5 + ["B"] * 3,
            "close": a_close + b_close,
        }
    )
    frame["open"] = frame["close"]
    frame["high"] = frame["close"] * 1.01
    frame["low"] = frame["close"] / 1.02
    frame["volume"] = 1.0
    frame = frame[list(OHLCV_COLUMNS)]
    frame.index = [10, 11, 12, 13, 14, 20, 21, 22]

    out = add_derived_columns(frame)

    assert list(out.index) == list(frame.index)
    pd.testing.assert_frame_equal(out[list(OHLCV_COLUMNS)], frame)
    spike = out[SPIKE_LOG_MOVE]
    assert spike[12] == pytest.approx(math.log(101000 / 102))  # the smaller of the two moves
    assert spike[12] > 6.0
    assert spike[11] == 0.0  # up, then up again: no reversal
    assert spike[13] == pytest.approx(math.log(103 / 102))  # down, then up: the smaller move
    assert spike[[10, 14, 20, 22]].eq(0.0).all()  # first / last bar of each symbol
    assert out[BAR_RANGE_LOG].to_numpy() == pytest.approx(np.full(8, math.log(1.01 * 1.02)))
    gap = out[GAP_DAYS]
    assert math.isnan(gap[10]) and math.isnan(gap[20])  # first bar: no previous bar
    assert list(gap[[11, 12, 13, 14, 21, 22]]) == [1.0, 1.0, 1.0, 4.0, 1.0, 6.0]
    assert list(out[MISSING_BARS_BEFORE]) == [0, 0, 0, 0, 0, 0, 0, 2]


def test_spike_neighbours_get_only_the_small_move():
    close = np.array([100.0, 101.0, 101000.0, 102.0, 103.0])
    frame = pd.DataFrame(
        {
            "timestamp": pd.bdate_range("2024-01-01", periods=5, tz="UTC"),
            "symbol": "A",
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1.0,
        }
    )
    spike = add_derived_columns(frame)[SPIKE_LOG_MOVE].to_numpy()
    # bar 1: r1 = +0.01, r2 = +6.9 (same sign) -> 0; bar 3: r3 = -6.9, r4 = +0.01 -> 0.0097
    assert spike[1] == 0.0
    assert spike[2] == pytest.approx(math.log(101000 / 102))
    assert spike[3] == pytest.approx(math.log(103 / 102))


def test_derived_columns_never_mix_symbols():
    """A's last bar and B's first bar are a x1000 apart and a year apart; C trades
    throughout, so the union calendar has many bars between them."""
    a = make_frame(symbols=("A",), bars=30, seed=1)
    b = make_frame(symbols=("B",), bars=30, seed=2, start="2022-01-03")
    b[list(PRICE_COLUMNS)] *= 1000.0
    c = make_frame(symbols=("C",), bars=400, seed=3)
    assert c["timestamp"].max() > b["timestamp"].max()
    frame = pd.concat([a, b, c], ignore_index=True)
    out = add_derived_columns(frame)
    last_a, first_b, last_b, first_c = 29, 30, 59, 60
    for label in (last_a, first_b, last_b, first_c):
        assert out.loc[label, SPIKE_LOG_MOVE] == 0.0
    for label in (first_b, first_c):
        assert math.isnan(out.loc[label, GAP_DAYS])
        assert out.loc[label, MISSING_BARS_BEFORE] == 0
    assert out[SPIKE_LOG_MOVE].max() < 0.1
    assert out[MISSING_BARS_BEFORE].max() == 0
    report = run_expectations(frame, **THRESHOLDS)
    assert report.success
    assert report.quarantine_reasons() == {}


def test_derived_columns_do_not_depend_on_row_order(clean):
    shuffled = clean.sample(frac=1.0, random_state=3)
    expected = add_derived_columns(clean)
    got = add_derived_columns(shuffled).loc[clean.index]
    pd.testing.assert_frame_equal(got, expected)


def test_derived_columns_of_an_empty_frame():
    empty = make_frame().iloc[:0]
    out = add_derived_columns(empty)
    assert len(out) == 0
    assert set(out.columns) >= {SPIKE_LOG_MOVE, BAR_RANGE_LOG, GAP_DAYS, MISSING_BARS_BEFORE}


def test_input_problems_raise(clean):
    with pytest.raises(ContractError, match="missing"):
        add_derived_columns(clean.drop(columns=["volume"]))
    duplicated = clean.copy()
    duplicated.index = [0] * len(duplicated)
    with pytest.raises(ContractError, match="unique"):
        run_expectations(duplicated, **THRESHOLDS)
    with pytest.raises(ValueError, match="min_completeness"):
        run_expectations(clean, **{**THRESHOLDS, "min_completeness": 1.5})


# ----------------------------------------------------------------------------- the suite


def test_clean_frame_passes_everything(clean_report):
    assert clean_report.success
    assert clean_report.quarantine_reasons() == {}
    names = [o.name for o in clean_report.outcomes]
    assert names[:5] == [PRICE_SPIKE, BAR_RANGE, RETURN_OUTLIER, COMPLETENESS, CALENDAR_GAP]
    assert names.count(NOT_NULL) == len(OHLCV_COLUMNS)
    assert names[-1] == ROW_COUNT
    severities = {o.name: o.severity for o in clean_report.outcomes}
    assert severities[PRICE_SPIKE] == severities[BAR_RANGE] == QUARANTINE
    assert {severities[n] for n in (COMPLETENESS, CALENDAR_GAP, NOT_NULL, ROW_COUNT)} == {WARN}
    assert by_name(clean_report, ROW_COUNT).details["observed"] == len(SYMBOLS) * BARS
    assert by_name(clean_report, COMPLETENESS).details["share"] == 1.0


def test_spike_is_quarantined_on_exactly_its_row(spiked, spiked_report):
    frame, label = spiked
    assert spiked_report.quarantine_reasons() == {label: [PRICE_SPIKE]}
    spike = by_name(spiked_report, PRICE_SPIKE)
    assert not spike.success
    assert spike.unexpected_count == 1
    assert spike.unexpected_index == [label]
    assert spike.details["max_observed"] == pytest.approx(math.log(1000), abs=0.1)
    # Scaling all of O/H/L/C keeps the bar's own range: not a bar_range failure.
    assert by_name(spiked_report, BAR_RANGE).success
    # Nothing about the dataset is wrong.
    # The jump into the spike is also a one-way outlier: warned, not quarantined twice.
    assert [o.name for o in spiked_report.failed(WARN)] == [RETURN_OUTLIER]
    derived = add_derived_columns(frame)
    position = frame.index.get_loc(label)
    neighbours = frame.index[[position - 1, position + 1]]
    assert (derived.loc[neighbours, SPIKE_LOG_MOVE] < 0.1).all()


def test_one_way_drop_is_not_a_spike(clean):
    frame = clean.copy()
    ccc = labels_of(frame, "CCC")
    frame.loc[ccc[70:], list(PRICE_COLUMNS)] *= 0.5  # a genuine 50 % drop that stays
    derived = add_derived_columns(frame)
    assert derived.loc[ccc[70], SPIKE_LOG_MOVE] < 0.1
    report = run_expectations(frame, **THRESHOLDS)
    assert by_name(report, PRICE_SPIKE).success
    assert report.quarantine_reasons() == {}
    # ...but a 50 % one-way move is worth a warning (unadjusted split?).
    outlier = by_name(report, RETURN_OUTLIER)
    assert not outlier.success and outlier.unexpected_count == 1


def test_wide_bar_is_quarantined_by_bar_range(clean):
    frame = clean.copy()
    label = labels_of(frame, "AAA")[33]
    low = frame.loc[label, "low"]
    frame.loc[label, "high"] = 10.0 * low
    report = run_expectations(frame, **THRESHOLDS)
    assert report.quarantine_reasons() == {label: [BAR_RANGE]}
    bar_range = by_name(report, BAR_RANGE)
    assert bar_range.unexpected_index == [label]
    assert bar_range.details["max_observed"] == pytest.approx(math.log(10.0))
    assert by_name(report, PRICE_SPIKE).success


def test_missing_stretch_warns_but_quarantines_nothing(gapped, gapped_report):
    frame, first_after_gap = gapped
    assert gapped_report.quarantine_reasons() == {}
    assert not gapped_report.success
    failed = {o.name for o in gapped_report.failed()}
    assert failed == {COMPLETENESS, CALENDAR_GAP}
    assert {o.severity for o in gapped_report.failed()} == {WARN}
    completeness = by_name(gapped_report, COMPLETENESS)
    assert completeness.unexpected_count == 1
    assert completeness.details["missing_bars"] == 10
    assert completeness.details["share"] < THRESHOLDS["min_completeness"]
    gap = by_name(gapped_report, CALENDAR_GAP)
    assert gap.unexpected_count == 1
    stamps = frame["timestamp"][frame["symbol"] == "BBB"]
    expected_gap = (stamps.loc[first_after_gap] - stamps.shift(1).loc[first_after_gap]).days
    assert expected_gap >= 14
    assert gap.details["max_observed"] == expected_gap
    assert add_derived_columns(frame).loc[first_after_gap, MISSING_BARS_BEFORE] == 10


def test_completeness_uses_mostly(gapped):
    frame, _ = gapped
    report = run_expectations(frame, **{**THRESHOLDS, "min_completeness": 0.99})
    assert by_name(report, COMPLETENESS).success
    assert not by_name(report, CALENDAR_GAP).success


def test_named_index_and_several_failures(clean):
    frame = clean.copy()
    frame.index = frame.index.rename("row_id")
    wide = labels_of(frame, "AAA")[10]
    spike = labels_of(frame, "CCC")[90]
    both = labels_of(frame, "BBB")[20]
    frame.loc[wide, "high"] = frame.loc[wide, "low"] * 5.0
    frame.loc[spike, list(PRICE_COLUMNS)] *= 20.0
    frame.loc[both, list(PRICE_COLUMNS)] *= 50.0
    frame.loc[both, "high"] = frame.loc[both, "low"] * 4.0
    report = run_expectations(frame, **THRESHOLDS)
    assert report.quarantine_reasons() == {
        spike: [PRICE_SPIKE],
        both: [PRICE_SPIKE, BAR_RANGE],
        wide: [BAR_RANGE],
    }
    assert all(isinstance(label, int) for label in report.quarantine_reasons())


def test_empty_frame_warns_on_row_count():
    report = run_expectations(make_frame().iloc[:0], **THRESHOLDS)
    assert not by_name(report, ROW_COUNT).success
    assert [o.name for o in report.failed()] == [ROW_COUNT]


def test_report_is_json_serialisable(spiked, spiked_report):
    _, label = spiked
    data = json.loads(json.dumps(spiked_report.to_dict(), allow_nan=False))
    assert data["suite"] == "ohlcv_distribution"
    assert data["quarantined_rows"] == 1
    (spike,) = [o for o in data["outcomes"] if o["name"] == PRICE_SPIKE]
    assert spike["unexpected_index"] == [label]


def test_docs_are_built_into_docs_dir_only(clean, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    docs = tmp_path / "out" / "docs"
    report = run_expectations(clean.iloc[:60], **THRESHOLDS, docs_dir=docs)
    assert (docs / "index.html").is_file()
    assert report.docs_index == docs / "index.html"
    assert list((docs / "validations").rglob("*.html"))
    assert list(cwd.iterdir()) == []  # no gx/ (or anything else) in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "out"]


def _loaded(page: Path) -> list[str]:
    """What a Data Docs page loads: script and image sources, link targets."""
    text = page.read_text()
    return [a or b for a, b in re.findall(
        r"<(?:script|img)\b[^>]*\bsrc=[\"']([^\"']+)[\"']|<link\b[^>]*\bhref=[\"']([^\"']+)[\"']",
        text, flags=re.IGNORECASE)]


def test_the_docs_load_nothing_from_the_network(clean, tmp_path):
    docs = tmp_path / "docs"
    run_expectations(clean.iloc[:60], **THRESHOLDS, docs_dir=docs)
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) >= 3  # the index, the suite, a validation result
    for page in pages:
        loaded = _loaded(page)
        assert any("jquery" in url for url in loaded) and any("vega" in url for url in loaded)
        assert not [url for url in loaded if "://" in url], page
        missing = [url for url in loaded if not (page.parent / url).resolve().is_file()]
        assert missing == [], (page, missing)


def test_a_page_asking_for_an_unknown_url_is_refused_by_name(tmp_path):
    from tradingrl.data.data_docs import OFFLINE_ASSETS, UnknownAsset, make_offline

    known = next(iter(OFFLINE_ASSETS))
    (tmp_path / "index.html").write_text(
        f'<script src="{known}"></script><a href="https://example.org/x">a link stays</a>')
    assert make_offline(tmp_path) == 1
    assert "https://example.org/x" in (tmp_path / "index.html").read_text()
    (tmp_path / "new.html").write_text('<link rel="stylesheet" href="https://cdn.example/x.css">')
    with pytest.raises(UnknownAsset, match=r"new\.html loads https://cdn\.example/x\.css"):
        make_offline(tmp_path)


@pytest.mark.browser
def test_the_docs_index_lists_the_suite_and_its_validation_offline(clean, tmp_path):
    from tests.browser import NO_CHROMIUM, chromium, dump_dom, visible_text

    binary = chromium()
    if binary is None:
        pytest.skip(NO_CHROMIUM)
    docs = tmp_path / "docs"
    run_expectations(clean.iloc[:60], **THRESHOLDS, docs_dir=docs)
    # Every http(s) request goes to a closed port: the tables can only be
    # drawn by the files the site carries.
    dom = dump_dom(binary, (docs / "index.html").as_uri(), tmp_path / "profile", offline=True,
                   budget_ms=8000)
    text = visible_text(dom)
    assert "ohlcv_distribution" in text and "tradingrl_frames-ohlcv" in text
    assert dom.count("<tr") >= 2


def test_relative_docs_dir_is_taken_from_the_cwd(clean, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_expectations(clean.iloc[:60], **THRESHOLDS, docs_dir=Path("site"))
    assert (tmp_path / "site" / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_without_docs_dir_nothing_is_written(clean, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = run_expectations(clean.iloc[:60], **THRESHOLDS)
    assert report.docs_index is None
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- GX failures


def _fake_result(exception_info, meta=None):
    if meta is None:
        meta = {"tradingrl_check": PRICE_SPIKE, "tradingrl_severity": QUARANTINE}
    return SimpleNamespace(
        success=False,
        result={},
        exception_info=exception_info,
        expectation_config=SimpleNamespace(
            type="expect_column_values_to_be_between",
            kwargs={"column": SPIKE_LOG_MOVE, "max_value": 1.0},
            meta=meta,
        ),
    )


def test_an_exception_caught_by_gx_is_raised(clean):
    derived = add_derived_columns(clean)
    direct = {"raised_exception": True, "exception_message": "boom", "exception_traceback": ""}
    with pytest.raises(ExpectationsError, match="boom"):
        _outcome(_fake_result(direct), derived)
    per_metric = {
        "column_values.between.unexpected_count": {
            "metric_configuration": {},
            "num_failures": 3,
            "exception_info": {"raised_exception": True, "exception_message": "metric broke"},
        }
    }
    with pytest.raises(ExpectationsError, match="metric broke"):
        _outcome(_fake_result(per_metric), derived)
    with pytest.raises(ExpectationsError, match="meta"):
        _outcome(_fake_result({"raised_exception": False}, meta={}), derived)


def test_a_failing_gx_expectation_is_not_reported_as_success(clean, monkeypatch):
    """Make a real GX metric raise (GX catches it per expectation): the run must raise,
    not return a success-shaped report."""
    import tradingrl.data.expectations as module

    real = module._assign_derived

    def corrupted(frame):
        real(frame)
        frame[SPIKE_LOG_MOVE] = frame[SPIKE_LOG_MOVE].astype(object)
        frame.iloc[0, frame.columns.get_loc(SPIKE_LOG_MOVE)] = "not a number"

    monkeypatch.setattr(module, "_assign_derived", corrupted)
    with pytest.raises(ExpectationsError, match=PRICE_SPIKE):
        run_expectations(clean, **THRESHOLDS)


def test_a_data_docs_rendering_error_is_raised(clean, tmp_path, monkeypatch):
    """GX logs and swallows exceptions raised while rendering Data Docs."""
    from great_expectations.render.renderer.site_index_page_renderer import (
        SiteIndexPageRenderer,
    )

    def broken(cls, index_links_dict):
        raise RuntimeError("index page exploded")

    monkeypatch.setattr(SiteIndexPageRenderer, "render", classmethod(broken))
    with pytest.raises(ExpectationsError, match="index page exploded"):
        run_expectations(clean.iloc[:60], **THRESHOLDS, docs_dir=tmp_path / "docs")


def test_import_does_not_load_great_expectations():
    code = (
        "import sys, tradingrl.data.expectations; "
        "sys.exit(1 if 'great_expectations' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
