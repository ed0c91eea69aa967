"""Whatever a file holds, reading and validating it ends in a frame with every
row accounted for, or a one-line data error: never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tradingrl.data.csv_source import read_ohlcv_csv
from tradingrl.data.errors import DataError
from tradingrl.data.validation import ValidationThresholds, validate_ohlcv

HEADERS = ["Date", "timestamp", "Open", "High", "Low", "Close", "Adj Close", "Volume", "symbol", "x"]
CELLS = st.one_of(
    st.sampled_from(["", "NaN", "-", "abc", "1e400", "-1", "0", "1,5", "1.2M", "$3", "../x", '"q"']),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**12, max_value=10**18).map(str),
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat() + "+05:30"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)


@st.composite
def csv_texts(draw) -> str:
    full = ["Date", "Open", "High", "Low", "Close", "Volume"]
    columns = draw(
        st.one_of(
            st.just(full),  # most bad files have the right header and bad cells
            st.just(["symbol", *full]),
            st.lists(st.sampled_from(HEADERS), min_size=1, max_size=9),
        )
    )
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    width = st.integers(min_value=0, max_value=len(columns) + 1)
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(CELLS, min_size=n, max_size=n)), max_size=12))
    lines = [sep.join(columns)] + [sep.join(cell.replace("\n", " ") for cell in row) for row in rows]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


def read_and_validate(path) -> None:
    try:
        raw = read_ohlcv_csv(path)
    except DataError as error:
        assert "\n" not in str(error)
        return
    try:
        result = validate_ohlcv(raw, ValidationThresholds(max_quarantine_share=1.0))
    except DataError as error:
        assert "\n" not in str(error)
        return
    report = result.report
    assert report["rows_in"] == len(raw) == report["rows_valid"] + report["rows_quarantined"]
    assert len(result.quarantine) == report["rows_quarantined"]


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_texts())
@example(text="Date,Date,Date,Date\n,,,,0\r0")  # found by a run: a bare \r in the long-line check
def test_csv_like_text_never_crashes(tmp_path, text):
    path = tmp_path / "FUZZ.csv"
    path.write_text(text, encoding="utf-8")
    read_and_validate(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
@example(data=b";")  # found by CI: only empty unnamed columns left, then an IndexError
def test_arbitrary_bytes_never_crash(tmp_path, data):
    path = tmp_path / "FUZZ.csv"
    path.write_bytes(data)
    read_and_validate(path)
