"""Bulk CSV import: the fast path matches the general one, re-imports store nothing, errors name lines."""

import gzip
import io

import numpy as np
import pandas as pd
import pytest

from accounts.tenancy import system_actor
from tests.watchlists.conftest import count_rows
from watchlists import importer, ingest
from watchlists.store.reader import read_raw

pytestmark = pytest.mark.django_db
TICKS_GZ = importer.Path(__file__).resolve().parents[2] / "watchlists/demo_data/ticks/SPY_trades_20131007.csv.gz"
NY = "America/New_York"
FAR = 4_102_444_800_000_000  # 2100-01-01 in µs


def _general_path(kind, header: bytes, body: bytes):
    frame = pd.read_csv(io.BytesIO(header + body), dtype={c: str for c in ingest.TIME_COLUMNS},
                        skipinitialspace=True)
    return ingest.validate(frame, kind, NY)


def _write(tmp_path, text: str, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_fast_path_gives_exactly_the_general_paths_points():
    header, body = gzip.decompress(TICKS_GZ.read_bytes()).split(b"\n", 1)
    header += b"\n"
    body = b"".join(body.splitlines(keepends=True)[:50_000])
    fast = importer._fast_points("trade", NY, header, body)
    general = _general_path("trade", header, body)
    assert fast is not None and len(fast) == len(general) == 50_000
    np.testing.assert_array_equal(fast.ts, general.ts)
    for column in ("price", "size"):
        np.testing.assert_array_equal(fast.values[column], general.values[column])


@pytest.mark.parametrize("stamp", [
    "2013-10-08T04:00:17.034-04:00", "2013-10-08T04:00:17Z", "2013-10-08 04:00:17.123456789+05:30",
    "2024-02-29T23:59:59.9Z", "1969-12-31T23:59:59.5Z", "2000-01-01T00:00:00-23:59",
])
def test_fast_times_equal_pandas(stamp):
    fast = ingest.fast_csv_times(f"{stamp},1,2\n{stamp},1,2".encode())
    np.testing.assert_array_equal(fast, ingest.parse_times(pd.Series([stamp, stamp]), NY))


@pytest.mark.parametrize("body", [
    "2023-02-29T00:00:00Z,1,1\n",  # no such day
    "2013-10-08T24:00:00Z,1,1\n",
    "2013-10-08T04:00:60Z,1,1\n",
    "2013-10-08 09:30:00,1,1\n",  # naive: exchange-local, DST rules are pandas' job
    "2013-10-08T04:00:17Z,1,1\n2013-10-08T04:00:17.5Z,1,1\n",  # widths differ
    "2013-10-08T04:00:17Z,1,1\n\n2013-10-08T04:00:18Z,1,1\n",  # a blank line
    "2013-10-08T04:00:17Z,1,1\n2013-10-08X04:00:18Z,1,1\n",
])
def test_irregular_times_leave_the_fast_path(body):
    assert ingest.fast_csv_times(body.encode()) is None


def test_reimporting_a_file_stores_nothing_more(tmp_path, spy):
    path = _write(tmp_path, "timestamp,price,size,exchange\n" + "".join(
        f"2013-10-07T09:30:{i % 60:02d}.{i:03d}-04:00,{100 + i / 100},{i + 1},Q\n" for i in range(500)))
    actor = system_actor(spy.organization_id)
    first = importer.import_csv(actor=actor, series=spy, path=path, chunk_rows=200)
    again = importer.import_csv(actor=actor, series=spy, path=path, chunk_rows=200)
    assert (first.stored, first.chunks, first.skipped_chunks) == (500, 3, 0)
    # (The parse-ahead thread has its own connection, which cannot see this test's transaction, so
    # here the keys are caught by services.ingest rather than skipped before parsing.)
    assert again.stored == 0
    assert count_rows("watchlists_tick", spy.pk) == 500
    stored = read_raw(spy.pk, "trade", 0, FAR)
    assert stored["ts"][0] == 1381152600_000000 and stored["size"].sum() == sum(range(1, 501))


def test_a_bad_value_names_its_file_line_on_the_fast_path(tmp_path, spy):
    rows = [f"2013-10-07T09:30:{i:02d}.000-04:00,100.5,{-5 if i == 7 else 10}\n" for i in range(20)]
    path = _write(tmp_path, "timestamp,price,size\n" + "".join(rows))
    with pytest.raises(ingest.BatchInvalid) as exc:
        importer.import_csv(actor=system_actor(spy.organization_id), series=spy, path=path, chunk_rows=5)
    (error,) = exc.value.details["errors"]
    assert (error["line"], error["column"], error["reason"]) == (9, "size", "size must not be negative")
    assert count_rows("watchlists_tick", spy.pk) == 5  # the chunk before the bad one stays stored


def test_a_bad_time_names_its_file_line(tmp_path, spy):
    rows = [f"2013-10-07T09:30:{i:02d}.000-04:00,100.5,10\n" for i in range(6)]
    rows[3] = "2013-10-07T09:30:61.000-04:00,100.5,10\n"
    path = _write(tmp_path, "timestamp,price,size\n" + "".join(rows))
    with pytest.raises(ingest.BatchInvalid) as exc:
        importer.import_csv(actor=system_actor(spy.organization_id), series=spy, path=path)
    (error,) = exc.value.details["errors"]
    assert (error["line"], error["column"]) == (5, "timestamp")
    assert count_rows("watchlists_tick", spy.pk) == 0


def test_unknown_columns_are_still_rejected(tmp_path, spy):
    path = _write(tmp_path, "timestamp,price,size,colour\n2013-10-07T09:30:00Z,1,1,red\n")
    with pytest.raises(ingest.BatchInvalid) as exc:
        importer.import_csv(actor=system_actor(spy.organization_id), series=spy, path=path)
    assert exc.value.details["errors"][0]["reason"] == "unknown column 'colour'"


def test_alpha_vantage_local_times_take_the_exchange_zone(tmp_path, bars):
    path = _write(tmp_path, "timestamp,open,high,low,close,volume\n"
                            "2024-03-08 09:31:00,190.1,190.5,190.0,190.4,1200\n"
                            "2024-03-11 09:30:00,191.0,191.2,190.9,191.1,900\n")
    report = importer.import_csv(actor=system_actor(bars.organization_id), series=bars, path=path)
    assert report.stored == 2
    assert read_raw(bars.pk, "bar", 0, FAR)["ts"].tolist() == [1709908260_000000, 1710163800_000000]


def test_a_line_with_extra_fields_is_a_clear_error_naming_the_file_line(tmp_path, spy):
    rows = [f"2013-10-07T09:30:{i:02d}.000-04:00,100.5,10\n" for i in range(6)]
    rows[4] = rows[4].rstrip() + ",9\n"
    path = _write(tmp_path, "timestamp,price,size\n" + "".join(rows))
    with pytest.raises(ingest.BatchInvalid) as exc:
        importer.import_csv(actor=system_actor(spy.organization_id), series=spy, path=path, chunk_rows=3)
    assert "Expected 3 fields in line 6, saw 4" in exc.value.message
    assert count_rows("watchlists_tick", spy.pk) == 3


def test_json_string_times_take_the_fast_path_only_when_regular():
    regular = pd.Series(["2013-10-07T09:30:00.001-04:00", "2013-10-07T13:30:00.250+00:00"])
    assert ingest._fast_string_times(regular).tolist() == [1381152600001000, 1381152600250000]
    for odd in (["2013-10-07T09:30:00Z", "2013-10-07T09:30:00.5Z"], ["2013-10-07T09:30:00Z\n2013-10-07T09:30:00Z"],
                [" 2013-10-07T09:30:00Z"], ["2013-10-07T09:30:00Z", 5], ["2013-10-07T09:30:00Zé"]):
        assert ingest._fast_string_times(pd.Series(odd, dtype=object)) is None
