"""The normalized Parquet file every dataset version is stored as: written from batches of a
known schema, profiled and previewed on the way, and read back whole.

Whatever made the batches (a CSV or Parquet upload, or a transformation of a stored version),
they are written here, so every version's file, profile and preview are made the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from aiaas.core.data.tabular.profile import TableProfile, json_value
from aiaas.core.data.tabular.types import logical_type

PREVIEW_ROWS = 20

SourceFormat = Literal["csv", "parquet"]


@dataclass(frozen=True)
class NormalizedTable:
    path: Path
    source_format: SourceFormat | Literal["derived"]
    row_count: int
    columns: list[dict[str, str]]
    column_stats: dict[str, dict[str, Any]]
    preview: list[dict[str, Any]]
    size_bytes: int


def write_normalized(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    destination: Path,
    source_format: SourceFormat | Literal["derived"],
) -> NormalizedTable:
    """Write `batches` (cast to `schema`) as the normalized Parquet file, profiling as it goes."""
    profile = TableProfile(schema)
    preview: list[dict[str, Any]] = []
    # A batch is written on a second thread while the next one is profiled: Arrow releases the
    # GIL in both, so they overlap on two cores. One batch in flight keeps memory bounded.
    with (
        pq.ParquetWriter(
            destination,
            schema,
            compression="snappy",
            # Dictionaries pay off on repeated text; on numbers and times they cost time (a
            # third of the write) and, once a column has many values, space too.
            use_dictionary=[field.name for field in schema if pa.types.is_string(field.type)],
        ) as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer") as pool,
    ):
        in_flight: Future[None] | None = None
        for batch in batches:
            typed = batch.cast(schema) if batch.schema != schema else batch
            if in_flight is not None:
                in_flight.result()
            in_flight = pool.submit(writer.write_batch, typed)
            profile.update(typed)
            if len(preview) < PREVIEW_ROWS:
                rows = typed.slice(0, PREVIEW_ROWS - len(preview)).to_pylist()
                preview += [{key: json_value(value) for key, value in row.items()} for row in rows]
        if in_flight is not None:
            in_flight.result()
    profile.count_distinct_from(destination)
    return NormalizedTable(
        path=destination,
        source_format=source_format,
        row_count=profile.rows,
        columns=[{"name": field.name, "type": logical_type(field.type)} for field in schema],
        column_stats=profile.result(),
        preview=preview,
        size_bytes=destination.stat().st_size,
    )


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)
