"""The limits an uploaded table is held to, and the checks that apply them before decoding.

A file's size says little about the table it holds: a 16 KB Parquet file can decode to one
512 MiB string, and an 888 KB CSV can hold 100,000 columns. So the table is measured where it
can be before any of it is decoded (a CSV's header, a Parquet file's footer), and every batch
is measured again once decoded, since a Parquet footer may lie about its pages. What neither can
catch is bounded by the ingest process's memory ceiling (`aiaas.core.data.ingest_processes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aiaas.core.data.tabular.read_options import refuse
from aiaas.core.errors import InputError


@dataclass(frozen=True)
class TableLimits:
    max_columns: int = 10_000
    max_rows: int = 1_000_000_000
    max_cell_bytes: int = 1 << 20
    max_uncompressed_bytes: int = 64 << 30
    """A Parquet file's whole table, as its footer declares it uncompressed."""
    max_row_group_bytes: int = 1 << 30
    """One Parquet row group, uncompressed: it is decoded whole, so it must fit in memory."""
    max_column_name_bytes: int = 256
    """A column's name is repeated in every preview row and statistic stored for it: at the
    widest table allowed, longer names would make a version's profile weigh megabytes."""

    def as_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TableLimits:
        return cls(**{name: int(value) for name, value in values.items()})


NO_LIMITS_GIVEN = TableLimits()


def check_width(width: int, limits: TableLimits) -> None:
    if width > limits.max_columns:
        raise refuse(f"the file has {width} columns, past the limit of {limits.max_columns}")


def check_names(names: list[str], limits: TableLimits) -> None:
    for name in names:
        if "\x00" in name:
            # PostgreSQL's text (and so the version's column list) cannot hold a NUL.
            raise refuse(f"the column named {name[:40]!r} holds a NUL character, which no name may")
        if len(name.encode("utf-8", "surrogatepass")) > limits.max_column_name_bytes:
            shown = repr(name[:40])
            raise refuse(
                f"the column named {shown}... is longer than the limit of "
                f"{limits.max_column_name_bytes} bytes for a column's name"
            )


def check_parquet_footer(metadata: pq.FileMetaData, limits: TableLimits) -> None:
    """Refuse a Parquet file whose footer declares a table past the limits. The footer is
    all that is read here: nothing of the data is decoded."""
    check_width(metadata.num_columns, limits)
    if metadata.num_rows > limits.max_rows:
        raise refuse(f"the file has {metadata.num_rows} rows, past the limit of {limits.max_rows}")
    if metadata.num_rows < 0:
        raise refuse("the file is not valid Parquet: its footer declares a negative row count")
    total = 0
    for group_index in range(metadata.num_row_groups):
        group = metadata.row_group(group_index)
        group_bytes = sum(
            max(group.column(index).total_uncompressed_size, 0)
            for index in range(group.num_columns)
        )
        total += group_bytes
        if group_bytes > limits.max_row_group_bytes:
            raise refuse(
                f"row group {group_index} decodes to {group_bytes} bytes, past the limit of "
                f"{limits.max_row_group_bytes}: write the file with smaller row groups"
            )
        for index in range(group.num_columns):
            _check_column_chunk(group.column(index), limits)
    if total > limits.max_uncompressed_bytes:
        raise refuse(
            f"the file decodes to {total} bytes, past the limit of {limits.max_uncompressed_bytes}"
        )


def _check_column_chunk(chunk: pq.ColumnChunkMetaData, limits: TableLimits) -> None:
    # The footer does not say how long the longest value is, but a chunk's values cannot
    # average more than the longest one: a chunk whose average is past the limit holds a cell
    # past it. The batches are measured exactly once decoded (`checked_cells`).
    values = max(chunk.num_values, 1)
    if chunk.total_uncompressed_size // values > limits.max_cell_bytes:
        raise cell_too_large(chunk.path_in_schema, limits)
    statistics = chunk.statistics
    if statistics is not None and statistics.has_min_max:
        for bound in (statistics.min_raw, statistics.max_raw):
            if isinstance(bound, bytes | str) and len(bound) > limits.max_cell_bytes:
                raise cell_too_large(chunk.path_in_schema, limits)


def cell_too_large(column: str, limits: TableLimits) -> InputError:
    return refuse(
        f"column {column!r} holds a value longer than the limit of {limits.max_cell_bytes} bytes"
    )


def checked_cells(
    batches: Iterator[pa.RecordBatch], limits: TableLimits
) -> Iterator[pa.RecordBatch]:
    """The batches as they come, each text column checked first: `InputError` at the first
    value longer than the limit, or that is not UTF-8."""
    for batch in batches:
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
                continue
            longest = pc.max(pc.binary_length(column)).as_py()
            if longest is not None and longest > limits.max_cell_bytes:
                raise cell_too_large(field.name, limits)
            # Parquet's reader takes a text column's bytes as written; Arrow checks their
            # encoding only when asked, and Python's decoder would fail later, mid-profile.
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                raise refuse(f"column {field.name!r} holds text that is not UTF-8") from None
        yield batch
