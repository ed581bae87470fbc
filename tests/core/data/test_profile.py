"""Column statistics: the distinct count by sorting, the moments merged batch by batch, and long
texts cut where shown but counted by their whole value."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.core.data.tabular import profile as profile_module
from aiaas.core.data.tabular.cells import SHOWN_TEXT_CHARS, TRUNCATION_MARK, cut_text
from aiaas.core.data.tabular.normalized import PREVIEW_TRUNCATED_ROWS, write_normalized
from aiaas.core.data.tabular.profile import (
    TableProfile,
    count_distinct_sorted,
    json_cell,
    json_value,
)


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


@settings(max_examples=200, deadline=None)
@given(
    arrow_type=st.sampled_from([pa.int8(), pa.uint8(), pa.int32(), pa.uint64(), pa.int64()]),
    data=st.data(),
    cut=st.integers(0, 60),
)
def test_integers_in_a_narrow_range_are_counted_by_flags_exactly(
    arrow_type: pa.DataType, data: st.DataObject, cut: int
) -> None:
    # Narrow ranges take the flags (`_count_distinct_dense`), up to the type's own bounds.
    info = np.iinfo(arrow_type.to_pandas_dtype())
    low = data.draw(st.integers(int(info.min), int(info.max)))
    high = min(int(info.max), low + data.draw(st.integers(0, 300)))
    values = data.draw(st.lists(st.one_of(st.none(), st.integers(low, high)), max_size=60))
    assert count_distinct_sorted(chunked(values, arrow_type, cut)) == distinct_present(values)


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

    profile.measure_whole_columns(path)

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
    # Read back from the file, as a table too large to keep its columns is.
    monkeypatch.setattr(profile_module, "KEPT_COLUMN_BYTES", 0)
    profile = TableProfile(table.schema)
    profile.update(table)

    profile.measure_whole_columns(path)

    stats = profile.result()
    assert [stats[f"c{index}"]["distinct_count"] for index in range(width)] == [2] * width


def test_columns_kept_as_profiled_measure_as_the_written_file_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 5000
    table = pa.table(
        {
            "key": pa.array([n * 7919 % 1000 for n in range(rows)], pa.int64()),
            "wide": pa.array([n * 2654435761 for n in range(rows)], pa.int64()),
            "score": pa.array([None if n % 11 == 0 else n / 7 for n in range(rows)]),
            "day": pa.array([date(2024, 1, 1) + timedelta(days=n % 40) for n in range(rows)]),
        }
    )
    batches = iter(table.to_batches(max_chunksize=700))
    kept = write_normalized(batches, table.schema, tmp_path / "kept.parquet", "derived")
    monkeypatch.setattr(profile_module, "KEPT_COLUMN_BYTES", 0)
    batches = iter(table.to_batches(max_chunksize=700))
    read_back = write_normalized(batches, table.schema, tmp_path / "read.parquet", "derived")

    assert kept.column_stats == read_back.column_stats
    assert kept.column_stats["key"]["distinct_count"] == 1000
    assert kept.column_stats["day"]["distinct_count"] == 40
    assert kept.column_stats["score"]["histogram"]["counts"][0] > 0


def test_a_number_column_has_a_histogram_of_its_finite_values(tmp_path: Path) -> None:
    values = [float(value) for value in range(100)] + [float("nan"), float("inf"), None]
    table = pa.table(
        {
            "x": pa.array(values, pa.float64()),
            "n": pa.array([7, 7, 7, None], pa.int64()).take(pa.array([i % 4 for i in range(103)])),
            "word": pa.array(["a"] * 103),
        }
    )
    path = tmp_path / "table.parquet"
    pq.write_table(table, path)
    profile = TableProfile(table.schema)
    profile.update(table)

    profile.measure_whole_columns(path)

    stats = profile.result()
    spread = stats["x"]["histogram"]
    assert len(spread["edges"]) == profile_module.HISTOGRAM_BINS + 1
    assert (spread["edges"][0], spread["edges"][-1]) == (0.0, 99.0)
    assert spread["counts"] == [5] * profile_module.HISTOGRAM_BINS  # NaN and inf left out
    # One value only: one bin around it.
    assert stats["n"]["histogram"] == {"edges": [6.5, 7.5], "counts": [78]}
    assert "histogram" not in stats["word"]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62)), max_size=40))
def test_a_histogram_counts_every_present_integer_once(values: list[int | None]) -> None:
    histogram = profile_module.histogram_of(pa.chunked_array([pa.array(values, pa.int64())]))
    present = [value for value in values if value is not None]
    if not present:
        assert histogram is None
    else:
        assert histogram is not None
        assert sum(histogram["counts"]) == len(present)


def test_a_histogram_is_sealed_with_the_values_of_rows() -> None:
    # Its outer edges are the minimum and the maximum, which are one row's values each.
    assert "histogram" in profile_module.ROW_VALUE_STATISTICS


# Long texts: cut and marked where shown, counted apart by their whole value -------------------

TEXT_TYPES = [pa.string(), pa.large_string()]
"""Binary columns are not text: they hold images (tests/core/data/test_image_columns.py)."""


def arrow_values(texts: list[str], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_binary(arrow_type):
        return pa.array([text.encode() for text in texts], arrow_type)
    return pa.array(texts, arrow_type)


def text_stats(batches: list[list[str]], arrow_type: pa.DataType) -> dict[str, Any]:
    profile = TableProfile(pa.schema([("text", arrow_type)]))
    for texts in batches:
        profile.update(pa.table({"text": arrow_values(texts, arrow_type)}))
    return profile.result()["text"]


def test_texts_up_to_the_bound_are_kept_whole() -> None:
    whole = "é" * SHOWN_TEXT_CHARS  # counted in characters, not UTF-8 bytes

    assert json_cell(whole) == (whole, None)
    assert json_cell(7) == (7, None)
    assert json_cell(date(2024, 1, 2)) == ("2024-01-02", None)


def test_a_longer_text_is_cut_and_ends_with_the_mark_and_its_length() -> None:
    long = "é" * SHOWN_TEXT_CHARS + "tail"
    shown = "é" * SHOWN_TEXT_CHARS + f"{TRUNCATION_MARK} [{SHOWN_TEXT_CHARS + 4} characters]"

    assert json_cell(long) == (shown, SHOWN_TEXT_CHARS + 4)
    assert json_value(long) == shown == cut_text(long)


@pytest.mark.parametrize("arrow_type", TEXT_TYPES, ids=str)
def test_a_long_top_value_is_cut_and_says_so_and_a_short_one_is_untouched(
    arrow_type: pa.DataType,
) -> None:
    long = "ü" * 1000

    stats = text_stats([[long, "a", long], ["a", long]], arrow_type)

    assert stats["top_values"] == [
        {"value": cut_text(long), "count": 3, "truncated": True, "length": 1000},
        {"value": "a", "count": 2},
    ]
    assert (stats["distinct_count"], stats["distinct_exact"]) == (2, True)


@pytest.mark.parametrize("arrow_type", TEXT_TYPES, ids=str)
def test_long_texts_that_share_their_beginning_are_counted_apart(arrow_type: pa.DataType) -> None:
    beginning = "x" * (SHOWN_TEXT_CHARS + 50)
    first, second, third = beginning + "1", beginning + "2", beginning + "3"

    stats = text_stats([[first, second, first], [third, first, second]], arrow_type)

    assert stats["distinct_count"] == 3
    assert [entry["count"] for entry in stats["top_values"]] == [3, 2, 1]
    assert {entry["value"] for entry in stats["top_values"]} == {cut_text(first)}


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(
        st.tuples(
            st.integers(SHOWN_TEXT_CHARS - 2, SHOWN_TEXT_CHARS + 2), st.text("ab", max_size=2)
        ).map(lambda shape: "t" * shape[0] + shape[1]),
        min_size=1,
        max_size=30,
    ),
    cut=st.integers(0, 30),
)
def test_texts_around_the_bound_are_counted_as_the_values_they_are(
    texts: list[str], cut: int
) -> None:
    stats = text_stats([texts[:cut], texts[cut:]], pa.string())

    counts = Counter(texts)
    assert stats["distinct_count"] == len(counts)
    for entry in stats["top_values"]:
        # Several long texts share a shown form: the count is one of theirs.
        shown_as = [text for text in counts if json_value(text) == entry["value"]]
        assert entry["count"] in {counts[text] for text in shown_as}
        assert entry.get("truncated", False) == (len(shown_as[0]) > SHOWN_TEXT_CHARS)
    assert (
        sorted(entry["count"] for entry in stats["top_values"])
        == sorted(counts.values())[-len(stats["top_values"]) :]
    )


def test_counting_holds_only_the_beginning_of_each_long_text() -> None:
    texts = [f"{number:04d}" + "z" * 100_000 for number in range(50)]
    profile = TableProfile(pa.schema([("text", pa.string())]))

    profile.update(pa.table({"text": pa.array(texts)}))

    held = [str(key) for key in profile.columns[0].counts]
    assert len(held) == 50
    assert max(len(key) for key in held) < SHOWN_TEXT_CHARS + 30


def test_known_statistics_are_taken_as_they_are_and_the_other_columns_profiled(
    tmp_path: Path,
) -> None:
    # A scored version's input columns: their statistics are the scored version's.
    table = pa.table({"x": [1.0, 2.0, 2.0], "label": ["a", "b", "b"], "n": [1, 2, 3]})
    batches = table.to_batches(max_chunksize=2)
    full = write_normalized(iter(batches), table.schema, tmp_path / "full.parquet", "derived")
    known = {
        # Taken, not computed again: a mean no profile of this column would give shows it. The
        # preview's marks are this file's own, whatever the known statistics say.
        "x": {**full.column_stats["x"], "mean": 99.0, PREVIEW_TRUNCATED_ROWS: [1]},
        # Of another type: the statistics of some other column, not taken.
        "n": {**full.column_stats["n"], "type": "string", "mean": 99.0},
        "absent": {"type": "float"},
    }

    partly = write_normalized(
        iter(batches),
        table.schema,
        tmp_path / "partly.parquet",
        "derived",
        known_column_stats=known,
    )

    assert partly.column_stats == {
        "x": {**full.column_stats["x"], "mean": 99.0},
        "label": full.column_stats["label"],
        "n": full.column_stats["n"],
    }
    assert partly.preview == full.preview
    assert partly.row_count == 3
    assert pq.read_table(partly.path).equals(table)
