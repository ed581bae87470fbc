"""The normalized Parquet file every dataset version is stored as: written from batches of a
known schema, profiled and previewed on the way, and read back whole.

Whatever made the batches (a CSV or Parquet upload, or a transformation of a stored version),
they are written here, so every version's file, profile and preview are made the same way.

The preview keeps a long text cut and marked (`cells`): the cut cell ends with the mark and the
text's full length, and its column's statistics list the preview rows cut, under
`PREVIEW_TRUNCATED_ROWS`, so a reader can tell a cut cell from a text that merely looks like
one. The key is there only for a column with a cut cell.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from aiaas.core.data.tabular.profile import TableProfile, json_cell
from aiaas.core.data.tabular.types import logical_type

PREVIEW_ROWS = 20
PREVIEW_TRUNCATED_ROWS = "preview_truncated_rows"

SourceFormat = Literal["csv", "parquet", "images"]


@dataclass(frozen=True)
class NormalizedTable:
    path: Path
    source_format: SourceFormat | Literal["derived"]
    row_count: int
    columns: list[dict[str, str]]
    column_stats: dict[str, dict[str, Any]]
    preview: list[dict[str, Any]]
    size_bytes: int
    ingest_summary: dict[str, Any] | None = None
    """What an archive of images held besides its rows (skipped files, DICOM files and whether
    their personal tags were kept): audited with the version, never stored in its row."""


class Preview:
    """The first `PREVIEW_ROWS` rows as JSON records, and which of their cells were cut."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.truncated_rows: dict[str, list[int]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        wanted = PREVIEW_ROWS - len(self.records)
        if wanted <= 0:
            return
        for row in batch.slice(0, wanted).to_pylist():
            record: dict[str, Any] = {}
            for name, value in row.items():
                record[name], full_length = json_cell(value)
                if full_length is not None:
                    self.truncated_rows.setdefault(name, []).append(len(self.records))
            self.records.append(record)

    def mark(self, column_stats: dict[str, dict[str, Any]]) -> None:
        """List the cut rows in the statistics of each column that has some."""
        for name, rows in self.truncated_rows.items():
            column_stats[name][PREVIEW_TRUNCATED_ROWS] = rows


def write_normalized(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    destination: Path,
    source_format: SourceFormat | Literal["derived"],
    known_column_stats: Mapping[str, dict[str, Any]] | None = None,
) -> NormalizedTable:
    """Write `batches` (cast to `schema`) as the normalized Parquet file, profiling as it goes.

    `known_column_stats` are the statistics of columns this file holds unchanged, every row in
    the same order, from a version profiled already (a batch prediction's input columns): those
    columns are not profiled again, their statistics being a function of their values alone.
    Profiling is most of the cost of writing a file of numbers, and a scored version adds a few
    columns to many."""
    given = known_column_stats or {}
    known = {
        field.name: _without_preview_marks(given[field.name])
        for field in schema
        # Of the same logical type, or they are not statistics of this column.
        if given.get(field.name, {}).get("type") == logical_type(field.type)
    }
    profile = TableProfile(schema, only=[field.name for field in schema if field.name not in known])
    preview = Preview()
    # A batch is written on a second thread while the next one is profiled: Arrow releases the
    # GIL in both, so they overlap on two cores. One batch in flight keeps memory bounded.
    with (
        pq.ParquetWriter(
            destination,
            schema,
            # Encoded images (PNG, JPEG) do not compress: snappy would spend time for nothing.
            compression={
                field.name: "none" if pa.types.is_binary(field.type) else "snappy"
                for field in schema
            },
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
            preview.add(typed)
        if in_flight is not None:
            in_flight.result()
    profile.measure_whole_columns(destination)
    profiled = profile.result()
    column_stats = {
        field.name: known[field.name] if field.name in known else profiled[field.name]
        for field in schema
    }
    preview.mark(column_stats)
    return NormalizedTable(
        path=destination,
        source_format=source_format,
        row_count=profile.rows,
        columns=[{"name": field.name, "type": logical_type(field.type)} for field in schema],
        column_stats=column_stats,
        preview=preview.records,
        size_bytes=destination.stat().st_size,
    )


def _without_preview_marks(stats: dict[str, Any]) -> dict[str, Any]:
    """A column's statistics less the preview's marks, which `Preview.mark` sets again from
    this file's own preview."""
    return {key: value for key, value in stats.items() if key != PREVIEW_TRUNCATED_ROWS}


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)
