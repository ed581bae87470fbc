"""Column statistics: the distinct count by sorting, and the moments merged batch by batch."""

from __future__ import annotations

import math
import statistics
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.core.data.tabular import profile as profile_module
from aiaas.core.data.tabular.profile import TableProfile, count_distinct_sorted


def chunked(values: list[object], arrow_type: pa.DataType, cut: int) -> pa.ChunkedArray:
    cut = min(cut, len(values))
    return pa.chunked_array(
        [pa.array(values[:cut], arrow_type), pa.array(values[cut:], arrow_type)], arrow_type
    )


def distinct_present(values: list[object]) -> int:
    present = [value for value in values if value is not None]
    nans = any(isinstance(value, float) and math.isnan(value) for value in present)
    others = {value for value in present if not (isinstance(value, float) and math.isnan(value))}
    return len(others) + nans


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=60),
    cut=st.integers(0, 60),
)
def test_the_distinct_integers_are_counted(values: list[int | None], cut: int) -> None:
    assert count_distinct_sorted(chunked(values, pa.int64(), cut)) == distinct_present(values)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(), st.sampled_from([0.0, -0.0])), max_size=60),
    cut=st.integers(0, 60),
)
def test_the_distinct_floats_are_counted_with_nan_once(
    values: list[float | None], cut: int
) -> None:
    assert count_distinct_sorted(chunked(values, pa.float64(), cut)) == distinct_present(values)


def test_times_and_dates_are_counted_by_their_instants() -> None:
    start = datetime(2024, 1, 1)
    instants = [start, start + timedelta(microseconds=1), start, None]
    days = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 1), None]

    assert count_distinct_sorted(chunked(instants, pa.timestamp("us"), 2)) == 2
    assert count_distinct_sorted(chunked(instants, pa.timestamp("us", tz="UTC"), 1)) == 2
    assert count_distinct_sorted(chunked(days, pa.date32(), 3)) == 2
    assert count_distinct_sorted(chunked(days, pa.date64(), 0)) == 2


def test_a_column_of_nulls_has_no_distinct_value() -> None:
    assert count_distinct_sorted(chunked([None, None], pa.int64(), 1)) == 0
    assert count_distinct_sorted(chunked([], pa.float64(), 0)) == 0


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_the_moments_merged_batch_by_batch_are_those_of_the_whole_column(
    batches: list[list[float]],
) -> None:
    profile = TableProfile(pa.schema([("x", pa.float64())]))
    for values in batches:
        profile.update(pa.table({"x": pa.array(values, pa.float64())}))

    stats = profile.result()["x"]
    every = [value for values in batches for value in values]
    assert stats["mean"] == pytest.approx(statistics.fmean(every), abs=1e-6)
    assert stats["std"] == pytest.approx(statistics.pstdev(every), abs=1e-5)
    assert (stats["min"], stats["max"]) == (min(every), max(every))


def test_distinct_counts_come_from_the_written_file(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([3, 1, 3, None, 2], pa.int64()),
            "score": pa.array([0.5, float("nan"), 0.5, float("nan"), None], pa.float64()),
            "word": pa.array(["a", "b", "a", None, "a"]),
        }
    )
    path = tmp_path / "table.parquet"
    pq.write_table(table, path)
    profile = TableProfile(table.schema)
    profile.update(table)

    profile.count_distinct_from(path)

    stats = profile.result()
    assert (stats["id"]["distinct_count"], stats["id"]["distinct_exact"]) == (3, True)
    assert stats["score"]["distinct_count"] == 2  # 0.5 and NaN
    assert stats["word"]["distinct_count"] == 2  # counted from the values, not the file


@pytest.mark.parametrize("cells_per_read", [1, 5, 12, 1 << 22])
def test_distinct_counts_are_the_same_however_many_columns_one_read_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cells_per_read: int
) -> None:
    # Wide tables are read several columns at a time (as many as fit CELLS_PER_READ): every
    # grouping, down to one column per read, must count each column exactly once and right.
    width = 7
    table = pa.table(
        {
            f"c{index}": pa.array([index, index + 1, index, None], pa.int64())
            for index in range(width)
        }
    )
    path = tmp_path / "wide.parquet"
    pq.write_table(table, path)
    monkeypatch.setattr(profile_module, "CELLS_PER_READ", cells_per_read)
    profile = TableProfile(table.schema)
    profile.update(table)

    profile.count_distinct_from(path)

    stats = profile.result()
    assert [stats[f"c{index}"]["distinct_count"] for index in range(width)] == [2] * width
