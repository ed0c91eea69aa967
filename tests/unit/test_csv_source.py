"""Reading CSV files as people export them."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.csv_source import CsvReadStats, read_ohlcv_csv, read_ohlcv_path
from tradingrl.data.errors import SourceError

YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700
2024-01-03,184.22,185.88,183.43,184.25,183.55,58414500
2024-01-04,182.15,183.09,180.88,181.91,181.22,71983600
"""


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_yahoo_export_with_symbol_from_file_name(tmp_path):
    frame = read_ohlcv_csv(write(tmp_path, "AAPL.csv", YAHOO))
    assert list(frame.columns[:7]) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert frame["symbol"].tolist() == ["AAPL"] * 3
    assert frame["timestamp"].dtype == "datetime64[ns, UTC]"
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert frame["close"].tolist() == [185.64, 184.25, 181.91]  # unadjusted by default
    assert frame["volume"].iloc[0] == 82488700.0
    assert frame["parse_error"].isna().all()


def test_adjust_scales_ohlc_by_adjusted_close(tmp_path):
    frame = read_ohlcv_csv(write(tmp_path, "AAPL.csv", YAHOO), adjust=True)
    assert frame["close"].iloc[0] == pytest.approx(184.94)
    assert frame["open"].iloc[0] == pytest.approx(187.15 * 184.94 / 185.64)


def test_adjust_without_adjusted_column_is_an_error(tmp_path):
    text = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n"
    with pytest.raises(SourceError, match="adjusted close"):
        read_ohlcv_csv(write(tmp_path, "X.csv", text), adjust=True)


def test_lower_case_timestamp_column_and_explicit_symbol(tmp_path):
    text = "timestamp,open,high,low,close,volume\n2024-01-02T14:30:00Z,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "data.csv", text), symbol="SPY")
    assert frame["symbol"].iloc[0] == "SPY"
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")


def test_datetime_column_and_naive_times_in_a_named_zone(tmp_path):
    text = "Datetime,Open,High,Low,Close,Volume\n2024-07-01 09:30:00,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "QQQ.csv", text), timezone="America/New_York")
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-07-01 13:30", tz="UTC")


def test_separate_date_and_time_columns(tmp_path):
    text = "Date,Time,Open,High,Low,Close,Volume\n2024-01-02,15:45,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "EURUSD.csv", text))
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 15:45", tz="UTC")


def test_long_file_with_symbol_column(tmp_path):
    text = (
        "ticker,date,open,high,low,close,volume\n"
        "MSFT,2024-01-03,2,3,1,2.5,20\nAAPL,2024-01-02,1,2,0.5,1.5,10\nAAPL,2024-01-03,1,2,0.5,1.5,10\n"
    )
    frame = read_ohlcv_path(write(tmp_path, "long.csv", text))
    assert frame["symbol"].tolist() == ["AAPL", "AAPL", "MSFT"]  # sorted by symbol, time
    assert frame.groupby("symbol")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()


def test_folder_of_files_one_per_symbol(tmp_path):
    write(tmp_path, "AAPL.csv", YAHOO)
    write(tmp_path, "MSFT.csv", YAHOO)
    write(tmp_path, "notes.md", "not data")
    stats = CsvReadStats()
    frame = read_ohlcv_path(tmp_path, stats=stats)
    assert frame["symbol"].value_counts().to_dict() == {"AAPL": 3, "MSFT": 3}
    assert stats.files == ["AAPL.csv", "MSFT.csv"]
    assert stats.rows == 6


def test_gzipped_csv(tmp_path):
    path = tmp_path / "AAPL.csv.gz"
    path.write_bytes(gzip.compress(YAHOO.encode()))
    assert len(read_ohlcv_path(path)) == 3


def test_semicolon_and_decimal_comma(tmp_path):
    text = "Date;Open;High;Low;Close;Volume\n02.01.2024;1.234,5;1.240,0;1.200,25;1.230,75;12.345\n"
    frame = read_ohlcv_csv(write(tmp_path, "DAX.csv", text), dayfirst=True)
    row = frame.iloc[0]
    assert row["timestamp"] == pd.Timestamp("2024-01-02", tz="UTC")
    assert (row["open"], row["high"], row["low"], row["close"]) == (1234.5, 1240.0, 1200.25, 1230.75)
    assert row["volume"] == 12345.0


def test_semicolon_file_with_german_date_header_is_missing_timestamp(tmp_path):
    # 'Datum' is not an alias we guess at: the error names what was found.
    text = "Datum;Open;High;Low;Close;Volume\n02.01.2024;1;2;0,5;1,5;10\n"
    with pytest.raises(SourceError, match="missing required columns: timestamp"):
        read_ohlcv_csv(write(tmp_path, "DAX.csv", text))


def test_day_first_dates(tmp_path):
    text = "date,open,high,low,close,volume\n02/01/2024,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text), dayfirst=True)
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text), dayfirst=False)
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-02-01", tz="UTC")


def test_nasdaq_style_close_last_with_dollar_signs(tmp_path):
    text = 'Date,Close/Last,Volume,Open,High,Low\n01/02/2024,"$185.64",82488700,"$187.15","$188.44","$183.89"\n'
    frame = read_ohlcv_csv(write(tmp_path, "AAPL.csv", text))
    assert frame.loc[0, ["open", "high", "low", "close"]].tolist() == [187.15, 188.44, 183.89, 185.64]


def test_volume_suffixes(tmp_path):
    text = "date,open,high,low,close,vol.\n2024-01-02,1,2,0.5,1.5,1.2M\n2024-01-03,1,2,0.5,1.5,350K\n"
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text))
    assert frame["volume"].tolist() == [1_200_000.0, 350_000.0]


def test_epoch_milliseconds(tmp_path):
    text = "timestamp,open,high,low,close,volume\n1704205800000,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "BTC.csv", text))
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")


def test_mixed_time_zone_offsets_become_utc(tmp_path):
    text = (
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02T09:00:00+01:00,1,2,0.5,1.5,10\n"
        "2024-01-02T09:00:00-05:00,1,2,0.5,1.5,10\n"
        "2024-01-03 09:00:00,1,2,0.5,1.5,10\n"
    )
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text))
    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2024-01-02 08:00", tz="UTC"),
        pd.Timestamp("2024-01-02 14:00", tz="UTC"),
        pd.Timestamp("2024-01-03 09:00", tz="UTC"),
    ]


def test_text_in_numeric_column_keeps_the_original_text(tmp_path):
    text = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,abc,10\n2024-01-03,1,2,0.5,1.5,10\n"
    stats = CsvReadStats()
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text), stats=stats)
    assert np.isnan(frame.loc[0, "close"])
    assert frame.loc[0, "parse_error"] == "X.csv line 2: close='abc'"
    assert frame.loc[1, "parse_error"] is None
    assert stats.cells_unparseable == 1


def test_unparseable_date_keeps_the_original_text(tmp_path):
    text = "date,open,high,low,close,volume\nnot-a-date,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text))
    assert frame["timestamp"].isna().all()
    assert "timestamp='not-a-date'" in frame.loc[0, "parse_error"]


def test_empty_cells_are_missing_not_unparseable(tmp_path):
    text = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,,10\n2024-01-03,1,2,0.5,NaN,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text))
    assert frame["close"].isna().all()
    assert frame["parse_error"].isna().all()


def test_blank_lines_are_skipped_and_counted_and_line_numbers_stay_true(tmp_path):
    text = "date,open,high,low,close,volume\n\n2024-01-02,1,2,0.5,1.5,10\n\n2024-01-03,1,2,0.5,x,10\n"
    stats = CsvReadStats()
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text), stats=stats)
    assert len(frame) == 2 and stats.blank_lines_skipped == 2
    assert frame.loc[1, "parse_error"] == "X.csv line 5: close='x'"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("   \n\n", "empty file"),
        ("Date,Open,High,Low,Close,Volume\n", "header only"),
        ("date,open,high,low,close\n2024-01-02,1,2,0.5,1.5\n", "missing required columns: volume"),
        ("date,price\n2024-01-02,1\n", "missing required columns: open, high, low, volume"),
        ("hello world\n", "no column separator"),
    ],
)
def test_file_level_problems_are_one_line_errors(tmp_path, content, message):
    with pytest.raises(SourceError, match=message) as info:
        read_ohlcv_csv(write(tmp_path, "X.csv", content))
    assert "\n" not in str(info.value)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "X.csv"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(SourceError, match="binary"):
        read_ohlcv_csv(path)


def test_parquet_file_named_csv_is_refused(tmp_path):
    path = tmp_path / "X.csv"
    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(SourceError, match="binary"):
        read_ohlcv_csv(path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        read_ohlcv_path(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="no CSV files"):
        read_ohlcv_path(tmp_path)


def test_ragged_rows_are_a_one_line_error_with_the_line(tmp_path):
    text = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10,7,8\n"
    with pytest.raises(SourceError, match="line 2"):
        read_ohlcv_csv(write(tmp_path, "X.csv", text))


def test_cp1252_file_is_read(tmp_path):
    text = "date,open,high,low,close,volume,note\n2024-01-02,1,2,0.5,1.5,10,caf\u00e9\n"
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text, encoding="cp1252"))
    assert frame["close"].iloc[0] == 1.5


def test_utf16_excel_export_is_read(tmp_path):
    path = tmp_path / "X.csv"
    path.write_bytes("date\topen\thigh\tlow\tclose\tvolume\n2024-01-02\t1\t2\t0.5\t1.5\t10\n".encode("utf-16"))
    frame = read_ohlcv_csv(path)
    assert frame["close"].tolist() == [1.5]


def test_symbol_from_file_name_keeps_share_class_dots(tmp_path):
    assert read_ohlcv_csv(write(tmp_path, "BRK.B.csv", YAHOO))["symbol"].iloc[0] == "BRK.B"
    path = tmp_path / "SPY.csv.gz"
    path.write_bytes(gzip.compress(YAHOO.encode()))
    assert read_ohlcv_csv(path)["symbol"].iloc[0] == "SPY"


def test_epoch_seconds_with_a_missing_cell(tmp_path):
    text = "timestamp,open,high,low,close,volume\n1704205800,1,2,0.5,1.5,10\n,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "BTC.csv", text))
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    assert pd.isna(frame["timestamp"].iloc[1]) and frame["parse_error"].isna().all()


def test_compact_yyyymmdd_dates(tmp_path):
    text = "date,open,high,low,close,volume\n20240102,1,2,0.5,1.5,10\n"
    assert read_ohlcv_csv(write(tmp_path, "X.csv", text))["timestamp"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")


def test_short_rows_are_missing_cells_not_unparseable(tmp_path):
    text = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5\n2024-01-03,1,2,0.5,1.5,10\n"
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text))
    assert frame.loc[0, ["close", "volume"]].isna().all()
    assert frame["parse_error"].isna().all()


def test_unparseable_count_is_per_cell_even_with_equals_signs(tmp_path):
    text = "symbol,date,open,high,low,close,volume\nEURUSD=X,2024-01-02,a=b,2,0.5,x,10\n"
    stats = CsvReadStats()
    frame = read_ohlcv_csv(write(tmp_path, "X.csv", text), stats=stats)
    assert stats.cells_unparseable == 2
    assert frame.loc[0, "parse_error"] == "X.csv line 2: open='a=b' close='x'"


def test_prices_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 2000)))
    frame = pd.DataFrame(
        {"date": pd.bdate_range("2010-01-01", periods=2000).strftime("%Y-%m-%d"),
         "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6}
    )
    frame.to_csv(tmp_path / "X.csv", index=False)  # repr: shortest exact decimal
    back = read_ohlcv_csv(tmp_path / "X.csv")
    np.testing.assert_array_equal(back["close"].to_numpy(), close)
