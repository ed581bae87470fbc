"""Column statistics, computed batch by batch so that a file of any size profiles in bounded
memory: null fraction, distinct count, min/max/mean/std for numbers and times, top values for
strings and booleans. Distinct values are tracked exactly up to `DISTINCT_CAP`, and counted for
top values up to `COUNTED_CAP`; past those the figures are marked approximate."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.tabular.types import is_numeric, logical_type

DISTINCT_CAP = 100_000
COUNTED_CAP = 10_000
TOP_VALUES = 5


def json_value(value: Any) -> Any:
    """A Python value from Arrow, as JSON can hold it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


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
        self.uniques: pa.Array | None = None
        self.distinct_exact = True
        self.distinct_seen = 0
        self.counts: dict[Any, int] = {}
        self.counts_exact = True

    @property
    def _ordered(self) -> bool:
        return is_numeric(self.arrow_type) or logical_type(self.arrow_type) in {"timestamp", "date"}

    def update(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.rows += len(array)
        self.nulls += array.null_count
        present = pc.drop_null(array)
        if len(present) == 0:
            return
        if self._ordered:
            bounds = pc.min_max(present)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)
        if is_numeric(self.arrow_type):
            self._merge_moments(present)
        self._track_distinct(present)
        if not self._ordered:
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

    def _track_distinct(self, present: pa.Array) -> None:
        if not self.distinct_exact:
            return  # past the cap the count is a lower bound already: spare the work
        batch_uniques = pc.unique(present)
        merged = (
            batch_uniques
            if self.uniques is None
            else pa.concat_arrays([self.uniques, batch_uniques.cast(self.uniques.type)])
        )
        self.uniques = pc.unique(merged)
        if len(self.uniques) > DISTINCT_CAP:
            self.distinct_exact = False
            self.distinct_seen = len(self.uniques)
            self.uniques = None

    def _count_values(self, present: pa.Array) -> None:
        for entry in pc.value_counts(present).to_pylist():
            value = entry["values"]
            self.counts[value] = self.counts.get(value, 0) + entry["counts"]
        if len(self.counts) > COUNTED_CAP:
            # Keep the most frequent half: the top values stay right unless the data is very
            # evenly spread, which the `approximate` flag admits.
            kept = sorted(self.counts.items(), key=lambda item: -item[1])[: COUNTED_CAP // 2]
            self.counts = dict(kept)
            self.counts_exact = False

    def result(self) -> dict[str, Any]:
        distinct = len(self.uniques) if self.uniques is not None else self.distinct_seen
        stats: dict[str, Any] = {
            "type": logical_type(self.arrow_type),
            "null_fraction": self.nulls / self.rows if self.rows else 0.0,
            "distinct_count": distinct,
            "distinct_exact": self.distinct_exact,
        }
        if self._ordered:
            stats["min"] = json_value(self.minimum)
            stats["max"] = json_value(self.maximum)
        if is_numeric(self.arrow_type):
            stats["mean"] = json_value(self.mean) if self.values else None
            stats["std"] = (
                json_value(math.sqrt(self.sum_squares / self.values)) if self.values else None
            )
        if not self._ordered:
            top = sorted(self.counts.items(), key=lambda item: (-item[1], str(item[0])))
            stats["top_values"] = [
                {"value": json_value(value), "count": count} for value, count in top[:TOP_VALUES]
            ]
            stats["top_values_exact"] = self.counts_exact
        return stats


class TableProfile:
    """Profiles of every column of a table, fed batch by batch."""

    def __init__(self, schema: pa.Schema) -> None:
        self.columns = [ColumnProfile(field.name, field.type) for field in schema]
        self.rows = 0

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        for index, column in enumerate(self.columns):
            column.update(batch.column(index))

    def result(self) -> dict[str, dict[str, Any]]:
        return {column.name: column.result() for column in self.columns}
