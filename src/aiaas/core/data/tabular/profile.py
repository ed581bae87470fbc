"""Column statistics, computed batch by batch so that a file of any size profiles in bounded
memory: null fraction, distinct count, min/max/mean/std for numbers and times, top values for
strings and booleans, and a histogram for numbers. A text longer than `cells.SHOWN_TEXT_CHARS`
characters is counted under a key of bounded size, and shown cut and marked, as `cells` says.

Text and boolean values are counted (for their top values, and so their distinct count) up to
`COUNTED_CAP` different values; past that the figures are marked approximate. Numbers and times
are counted distinct, and numbers binned into a histogram, once every batch is profiled (from
the values kept meanwhile, or read back from the written file one column at a time), for tables
of up to `EXACT_DISTINCT_ROWS` rows; larger ones report neither.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aiaas.core.data.tabular.cells import LongText, count_keys, shown_text
from aiaas.core.data.tabular.image_columns import ImageColumnProfile, is_image_type, thumbnail_cell
from aiaas.core.data.tabular.types import is_numeric, logical_type
from aiaas.core.serialization import finite_or_none

COUNTED_CAP = 10_000
EXACT_DISTINCT_ROWS = 20_000_000
DISTINCT_THREADS = 2
CELLS_PER_READ = 1 << 22
"""Values read from the written file at once to count distinct values: a whole narrow table's
worth of columns in one read, one column at a time of a tall one, so memory stays bounded."""
KEPT_COLUMN_BYTES = 128 << 20
"""The ordered columns of a table up to this size in all are kept as they are profiled, so that
their distinct counts and histograms need not read them back from the written file: a read of
every number column, a tenth of a narrow table's ingest. Larger tables are read back."""
DENSE_RANGE_PER_VALUE = 4
"""Integers (and times) spread over at most this many times as many possible values as there
are values are counted distinct in a table of flags, one per possible value, instead of sorted."""
TOP_VALUES = 5
HISTOGRAM_BINS = 20
ROW_VALUE_STATISTICS = frozenset({"min", "max", "top_values", "label_balance", "histogram"})
"""The statistics that are values of rows rather than aggregates of them: a minimum or maximum is
one row's value, and so are a histogram's outer edges; a top value (or an image dataset's label
balance) is a cell's text. A version
keeps them sealed; the others (counts, fractions, mean, std, flags) are aggregates and stay in
clear (`datasets.sealed_profile`)."""


def json_cell(value: Any) -> tuple[Any, int | None]:
    """A Python value from Arrow, as JSON can hold it and a version keeps it (a long text cut,
    `cells.shown_text`), and the full length of a text it cut (None when nothing was)."""
    value = finite_or_none(value)
    if hasattr(value, "isoformat"):
        return value.isoformat(), None
    if isinstance(value, bytes):
        # Bytes are an image column's (`types.IMAGE`): shown as a thumbnail, never as text.
        return thumbnail_cell(value), None
    if isinstance(value, str):
        return shown_text(value)
    return value, None


def json_value(value: Any) -> Any:
    """A Python value from Arrow, as JSON can hold it, a long text cut (`json_cell`)."""
    return json_cell(value)[0]


def top_value(key: Hashable, count: int) -> dict[str, Any]:
    """A top value's entry: a cut one says so, and how long the whole text is."""
    if isinstance(key, LongText):
        return {"value": str(key), "count": count, "truncated": True, "length": key.length}
    return {"value": json_value(key), "count": count}


def count_distinct_sorted(column: pa.ChunkedArray) -> int:
    """The distinct non-null values of a numeric or time column, counted by sorting: several
    times faster than hashing (Arrow's `unique`) once most values differ, as in keys, times
    and measurements; integers in a narrow range, faster still, by flags. NaN counts once."""
    present = pc.drop_null(column).combine_chunks()
    if pa.types.is_timestamp(present.type) or pa.types.is_date64(present.type):
        present = present.view(pa.int64())
    elif pa.types.is_date32(present.type):
        present = present.view(pa.int32())
    values = present.to_numpy(zero_copy_only=False)
    if values.dtype.kind in "iu" and len(values):
        dense = _count_distinct_dense(values)
        if dense is not None:
            return dense
    values = np.sort(values)
    nans = 0
    if values.dtype.kind == "f":
        nans = int(np.count_nonzero(np.isnan(values)))  # sorted to the end
        values = values[: len(values) - nans]
    changes = int(np.count_nonzero(values[1:] != values[:-1]))
    return (changes + 1 if len(values) else 0) + (1 if nans else 0)


def _count_distinct_dense(values: np.ndarray[Any, Any]) -> int | None:
    """The distinct count of integers within a narrow range (keys, codes, times in seconds):
    one pass setting flags, several times faster than a sort. None for a wide range."""
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    if span > DENSE_RANGE_PER_VALUE * len(values) + (1 << 16):
        return None
    seen = np.zeros(span, dtype=np.bool_)
    # Unsigned values less their minimum cannot wrap; signed ones are widened first, as a
    # narrow type's difference may not fit it (127 - -128 in int8).
    if values.dtype.kind == "u":
        seen[values - values.dtype.type(low)] = True
    else:
        seen[values.astype(np.int64, copy=False) - low] = True
    return int(np.count_nonzero(seen))


def histogram_of(column: pa.ChunkedArray) -> dict[str, list[float] | list[int]] | None:
    """`HISTOGRAM_BINS` equal-width bins from the column's finite minimum to its maximum:
    `edges` (one more than the bins) and `counts`. One bin around the values when they are all
    the same (or too close for floats to split); None without a finite value. NaN and
    infinities are left out: the null fraction, the minimum and the maximum tell of them."""
    present = pc.drop_null(column).combine_chunks()
    # Precision lost past 2**53 moves a value within its bin at most.
    numbers = pc.cast(present, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    finite = numbers[np.isfinite(numbers)]
    if len(finite) == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    try:
        if high > low:
            counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(low, high))
            return _histogram_json(counts, edges)
    except ValueError:
        pass  # a range too narrow for floats of its size to split: one bin, as for one value
    half = max(0.5, max(abs(low), abs(high)) * 1e-6)
    counts, edges = np.histogram(finite, bins=1, range=(low - half, high + half))
    return _histogram_json(counts, edges)


def _histogram_json(
    counts: np.ndarray[Any, Any], edges: np.ndarray[Any, Any]
) -> dict[str, list[float] | list[int]]:
    return {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]}


class ColumnProfile:
    def __init__(self, name: str, arrow_type: pa.DataType) -> None:
        self.name = name
        self.arrow_type = arrow_type
        self.rows = 0
        self.nulls = 0
        self.minimum: Any = None
        self.maximum: Any = None
        self.values = 0
        self.mean = 0.0
        self.sum_squares = 0.0  # of deviations from the mean (Chan's merge)
        self.distinct: int | None = None
        self.histogram: dict[str, list[float] | list[int]] | None = None
        self.counts: dict[Hashable, int] = {}
        self.counts_exact = True
        self.most_counted = 0

    @property
    def ordered(self) -> bool:
        return is_numeric(self.arrow_type) or logical_type(self.arrow_type) in {"timestamp", "date"}

    def update(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.rows += len(array)
        self.nulls += array.null_count
        present = pc.drop_null(array)
        if len(present) == 0:
            return
        if self.ordered:
            bounds = pc.min_max(present)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)
        if is_numeric(self.arrow_type):
            self._merge_moments(present)
        if not self.ordered:
            self._count_values(present)

    def _merge_moments(self, present: pa.Array) -> None:
        as_float = pc.cast(present, pa.float64())
        count = len(as_float)
        mean = pc.mean(as_float).as_py()
        squares = pc.variance(as_float, ddof=0).as_py() * count
        total = self.values + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.sum_squares += squares + delta * delta * self.values * count / total
        self.values = total

    def _count_values(self, present: pa.Array) -> None:
        counted = pc.value_counts(present)
        keys = count_keys(counted.field("values"))
        for key, count in zip(keys, counted.field("counts").to_pylist(), strict=True):
            self.counts[key] = self.counts.get(key, 0) + count
        self.most_counted = max(self.most_counted, len(self.counts))
        if len(self.counts) > COUNTED_CAP:
            # Keep the most frequent half: the top values stay right unless the data is very
            # evenly spread, which the `approximate` flag admits.
            kept = sorted(self.counts.items(), key=lambda item: -item[1])[: COUNTED_CAP // 2]
            self.counts = dict(kept)
            self.counts_exact = False

    def measure_whole(self, column: pa.ChunkedArray) -> None:
        """What only the whole column at once tells: the exact distinct count of an ordered
        column, and a number column's histogram (its bins need the final minimum and maximum)."""
        self.distinct = count_distinct_sorted(column)
        if is_numeric(self.arrow_type):
            self.histogram = histogram_of(column)

    def result(self) -> dict[str, Any]:
        if self.ordered:
            distinct, exact = self.distinct, self.distinct is not None
        else:
            distinct, exact = max(self.most_counted, len(self.counts)), self.counts_exact
        stats: dict[str, Any] = {
            "type": logical_type(self.arrow_type),
            "null_fraction": self.nulls / self.rows if self.rows else 0.0,
            "distinct_count": distinct,
            "distinct_exact": exact,
        }
        if self.ordered:
            stats["min"] = json_value(self.minimum)
            stats["max"] = json_value(self.maximum)
        if is_numeric(self.arrow_type):
            stats["mean"] = json_value(self.mean) if self.values else None
            stats["std"] = (
                json_value(math.sqrt(self.sum_squares / self.values)) if self.values else None
            )
            if self.histogram is not None:
                stats["histogram"] = self.histogram
        if not self.ordered:
            top = sorted(self.counts.items(), key=lambda item: (-item[1], str(item[0])))
            stats["top_values"] = [top_value(key, count) for key, count in top[:TOP_VALUES]]
            stats["top_values_exact"] = self.counts_exact
        return stats


class TableProfile:
    """Profiles of every column of a table, or of the columns named in `only`, fed batch by
    batch (each batch of the whole `schema`)."""

    def __init__(self, schema: pa.Schema, only: Collection[str] | None = None) -> None:
        profiled = [
            (index, field)
            for index, field in enumerate(schema)
            if only is None or field.name in only
        ]
        self._indexes = [index for index, _ in profiled]
        self.columns: list[ColumnProfile | ImageColumnProfile] = [
            (ImageColumnProfile if is_image_type(field.type) else ColumnProfile)(
                field.name, field.type
            )
            for _, field in profiled
        ]
        self.rows = 0
        self._kept: dict[str, list[pa.Array | pa.ChunkedArray]] | None = {
            column.name: []
            for column in self.columns
            if isinstance(column, ColumnProfile) and column.ordered
        }
        self._kept_bytes = 0

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        for index, column in zip(self._indexes, self.columns, strict=True):
            values = batch.column(index)
            column.update(values)
            self._keep(column.name, values)

    def _keep(self, name: str, values: pa.Array | pa.ChunkedArray) -> None:
        if self._kept is None or name not in self._kept:
            return
        self._kept_bytes += values.nbytes
        if self._kept_bytes > KEPT_COLUMN_BYTES:
            self._kept = None  # too large to keep: read back from the file instead
        else:
            self._kept[name].append(values)

    def measure_whole_columns(self, parquet_path: Path) -> None:
        """Count the distinct values of the ordered columns, and bin the numbers
        (`ColumnProfile.measure_whole`), from the values kept as they were profiled when they
        fit `KEPT_COLUMN_BYTES`, else from the written file, reading as many columns at a time
        as `CELLS_PER_READ` allows; skipped for tables too large to hold a column of."""
        if self.rows > EXACT_DISTINCT_ROWS:
            return
        ordered = [
            column
            for column in self.columns
            if isinstance(column, ColumnProfile) and column.ordered
        ]
        kept, self._kept = self._kept, None
        if kept is not None:
            with ThreadPoolExecutor(max_workers=DISTINCT_THREADS) as pool:
                values = [_whole(kept[column.name], column.arrow_type) for column in ordered]
                list(pool.map(ColumnProfile.measure_whole, ordered, values))
            return
        # One reader for the whole file: opening it per column parsed its footer, which grows
        # with the width, once per column, and made a wide file cost the square of its width.
        reader = pq.ParquetFile(parquet_path)
        per_read = max(1, CELLS_PER_READ // max(self.rows, 1))
        # Arrow's kernels release the GIL: two columns at a time use both cores of a small
        # machine.
        with ThreadPoolExecutor(max_workers=DISTINCT_THREADS) as pool:
            for start in range(0, len(ordered), per_read):
                columns = ordered[start : start + per_read]
                table = reader.read(columns=[column.name for column in columns])
                values = [table[column.name] for column in columns]
                list(pool.map(ColumnProfile.measure_whole, columns, values))

    def result(self) -> dict[str, dict[str, Any]]:
        return {column.name: column.result() for column in self.columns}


def _whole(pieces: list[pa.Array | pa.ChunkedArray], arrow_type: pa.DataType) -> pa.ChunkedArray:
    chunks = [
        chunk
        for piece in pieces
        for chunk in (piece.chunks if isinstance(piece, pa.ChunkedArray) else [piece])
    ]
    return pa.chunked_array(chunks, type=arrow_type)
