"""Reading an uploaded file, CSV or Parquet, into normalized Parquet with its profile.

The file's bytes decide its format, never its name: Parquet starts with `PAR1`, and anything
else must decode as text (UTF-8, or the declared encoding) without NUL bytes to be read as CSV.
A CSV file is read in blocks, so memory stays bounded whatever its size, in two passes: the first
reads every field as text to work out each column's type from all its values (a type guessed from
the first block alone would break on a later one); the second parses the columns as those types,
profiles them, and writes the normalized file.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aiaas.core.errors import InputError
from aiaas.core.tabular.profile import TableProfile, json_value
from aiaas.core.tabular.types import logical_type

SNIFF_BYTES = 64 * 1024
BLOCK_BYTES = 4 << 20
PREVIEW_ROWS = 20
HASH_CHUNK_BYTES = 1 << 20
DELIMITERS = ",;\t|"
NULL_VALUES = ["", "NA", "N/A", "NULL", "null", "NaN", "nan", "None"]

SourceFormat = Literal["csv", "parquet"]


@dataclass(frozen=True)
class ReadOptions:
    """What the uploader may declare; anything left None is detected."""

    format: SourceFormat | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header: bool | None = None


@dataclass(frozen=True)
class NormalizedTable:
    path: Path
    source_format: SourceFormat | Literal["derived"]
    row_count: int
    columns: list[dict[str, str]]
    column_stats: dict[str, dict[str, Any]]
    preview: list[dict[str, Any]]
    size_bytes: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def refuse(message: str, field: str = "file") -> InputError:
    return InputError(message, field_errors={field: message})


# Detecting the format ----------------------------------------------------------------------


def detect_format(path: Path, declared: SourceFormat | None) -> SourceFormat:
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise refuse("the file is empty")
    if head.startswith(b"PAR1"):
        detected: SourceFormat = "parquet"
    elif b"\x00" in head:
        raise refuse("the file is neither CSV nor Parquet: it holds binary data")
    else:
        detected = "csv"
    if declared is not None and declared != detected:
        raise refuse(f"the file was declared {declared} but its content is {detected}")
    return detected


def _decoded_sample(path: Path, encoding: str) -> str:
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise refuse(f"unknown encoding {encoding!r}", "encoding") from None
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    try:
        # final=False: a character cut at the end of the sample is not an error.
        return str(decoder.decode(head, final=False))
    except UnicodeDecodeError as exc:
        raise refuse(
            f"the file is not valid {encoding}: bad byte at offset {exc.start}", "encoding"
        ) from None


def _sniff_dialect(sample: str, declared: str | None) -> str:
    if declared is not None:
        if len(declared) != 1 or declared in '\r\n"':
            raise refuse("the delimiter must be one character", "delimiter")
        return declared
    lines = [line for line in sample.splitlines()[:50] if line]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _has_header(rows: list[list[str]], declared: bool | None) -> bool:
    if declared is not None:
        return declared
    if len(rows) < 2:
        return True
    first, rest = rows[0], rows[1:]
    # A header row names columns: none of its fields is a number, while data rows have some.
    if any(_looks_numeric(value) for value in first):
        return False
    if any(_looks_numeric(value) for row in rest for value in row):
        return True
    try:
        return csv.Sniffer().has_header("\n".join(",".join(row) for row in rows))
    except csv.Error:
        return True  # nothing tells: most files have one


def _column_names(first_row: list[str], header: bool) -> list[str]:
    if not header:
        return [f"column_{index + 1}" for index in range(len(first_row))]
    names = [name.strip() or f"column_{index + 1}" for index, name in enumerate(first_row)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise refuse(f"duplicate column names: {', '.join(duplicates)}")
    return names


# Working out types -------------------------------------------------------------------------
# The candidates, from the narrowest type to text. A block is first screened on a few values, so
# that a column of words drops its numeric candidates without a full failed cast (slow: arrow
# formats an error for it); the full check runs only for a candidate the screen let through.

_CANDIDATES: list[pa.DataType] = [
    pa.int64(),
    pa.float64(),
    pa.bool_(),
    pa.timestamp("us"),
    pa.timestamp("us", tz="UTC"),
    pa.string(),
]
_SCREEN_VALUES = 64
_INTEGER_DIGITS = 18  # more may overflow an int64: such a column is read as float
_BOOLEAN_WORDS = pa.array(["true", "false", "True", "False", "TRUE", "FALSE"])


def _unsigned(values: pa.Array) -> pa.Array:
    # One leading minus at most; a plus sign is not something the CSV parser reads as a number.
    return pc.if_else(pc.starts_with(values, "-"), pc.utf8_slice_codeunits(values, 1), values)


def _has_leading_zero(unsigned: pa.Array) -> bool:
    # "007" or a zip code "02134" would lose its leading zero as a number: such values are text.
    second_is_digit = pc.utf8_is_digit(pc.utf8_slice_codeunits(unsigned, 1, 2))
    return bool(pc.any(pc.and_(pc.starts_with(unsigned, "0"), second_is_digit)).as_py())


def _casts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _all_fit(values: pa.Array, target: pa.DataType) -> bool:
    if pa.types.is_string(target):
        return True
    if pa.types.is_boolean(target):
        return bool(pc.all(pc.is_in(values, value_set=_BOOLEAN_WORDS)).as_py())
    if pa.types.is_timestamp(target):
        return _casts(values, target)
    unsigned = _unsigned(values)
    if _has_leading_zero(unsigned) or pc.any(pc.starts_with(values, "+")).as_py():
        return False
    if pa.types.is_integer(target):
        return bool(
            pc.all(pc.utf8_is_digit(unsigned)).as_py()
            and pc.max(pc.utf8_length(unsigned)).as_py() <= _INTEGER_DIGITS
        )
    return _casts(values, target)


def _fits(values: pa.Array, target: pa.DataType) -> bool:
    return _all_fit(values.slice(0, _SCREEN_VALUES), target) and _all_fit(values, target)


class TypeInference:
    """The narrowest type each column's every value fits, narrowed block by block."""

    def __init__(self, names: list[str]) -> None:
        self.choice = dict.fromkeys(names, 0)

    def update(self, batch: pa.RecordBatch) -> None:
        for name in batch.schema.names:
            values = pc.drop_null(batch.column(name))
            if len(values) == 0:
                continue
            while not _fits(values, _CANDIDATES[self.choice[name]]):
                self.choice[name] += 1

    def types(self) -> dict[str, pa.DataType]:
        return {name: _CANDIDATES[index] for name, index in self.choice.items()}


# Reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    encoding: str
    delimiter: str
    header: bool
    names: list[str]


def _csv_layout(path: Path, options: ReadOptions) -> _CsvLayout:
    encoding = options.encoding or "utf-8"
    sample = _decoded_sample(path, encoding)
    delimiter = _sniff_dialect(sample, options.delimiter)
    rows = [row for row in csv.reader(sample.splitlines()[:50], delimiter=delimiter) if row]
    if not rows:
        raise refuse("the file holds no rows")
    header = _has_header(rows, options.header)
    return _CsvLayout(encoding, delimiter, header, _column_names(rows[0], header))


def _csv_batches(
    path: Path, layout: _CsvLayout, types: dict[str, pa.DataType]
) -> Iterator[pa.RecordBatch]:
    """The file's rows, block by block, each column read as `types` says."""
    encoding = layout.encoding
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(
                encoding="utf8" if encoding.lower().replace("-", "") == "utf8" else encoding,
                block_size=BLOCK_BYTES,
                skip_rows=1 if layout.header else 0,
                column_names=layout.names,
            ),
            parse_options=pa_csv.ParseOptions(delimiter=layout.delimiter),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                null_values=NULL_VALUES,
                strings_can_be_null=True,
                true_values=["true", "True", "TRUE"],
                false_values=["false", "False", "FALSE"],
            ),
        )
        yield from reader
    except pa.ArrowInvalid as exc:
        raise _explain_csv_error(exc) from None


def _explain_csv_error(exc: Exception) -> InputError:
    text = str(exc)
    if "Expected" in text and "columns" in text:
        return refuse(f"ragged rows: {text.removeprefix('CSV parse error: ')}")
    if "UTF8" in text or "UTF-8" in text:
        return refuse("the file is not valid UTF-8", "encoding")
    return refuse(f"the file cannot be read as CSV: {text}")


def _infer_csv_types(path: Path, layout: _CsvLayout) -> dict[str, pa.DataType]:
    """The first pass: every field read as text, to find each column's type from all its
    values. It is also the pass that finds malformed input, before anything is written."""
    inference = TypeInference(layout.names)
    rows = 0
    for batch in _csv_batches(path, layout, dict.fromkeys(layout.names, pa.string())):
        rows += batch.num_rows
        inference.update(batch)
    if rows == 0:
        raise refuse("the file has a header but no rows")
    return inference.types()


def _normalized_schema(schema: pa.Schema) -> pa.Schema:
    fields = []
    for field in schema:
        arrow_type = field.type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if pa.types.is_large_string(arrow_type):
            arrow_type = pa.string()
        fields.append(pa.field(field.name, arrow_type))
    return pa.schema(fields)


def write_normalized(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    destination: Path,
    source_format: SourceFormat | Literal["derived"],
) -> NormalizedTable:
    """Write `batches` (cast to `schema`) as the normalized Parquet file, profiling as it goes."""
    profile = TableProfile(schema)
    preview: list[dict[str, Any]] = []
    with pq.ParquetWriter(destination, schema, compression="snappy") as writer:
        for batch in batches:
            typed = batch.cast(schema) if batch.schema != schema else batch
            profile.update(typed)
            if len(preview) < PREVIEW_ROWS:
                rows = typed.slice(0, PREVIEW_ROWS - len(preview)).to_pylist()
                preview += [{key: json_value(value) for key, value in row.items()} for row in rows]
            writer.write_batch(typed)
    return NormalizedTable(
        path=destination,
        source_format=source_format,
        row_count=profile.rows,
        columns=[{"name": field.name, "type": logical_type(field.type)} for field in schema],
        column_stats=profile.result(),
        preview=preview,
        size_bytes=destination.stat().st_size,
    )


def normalize_upload(path: Path, work_dir: Path, options: ReadOptions) -> NormalizedTable:
    """Read an uploaded file into `work_dir/normalized.parquet`, or raise `InputError`."""
    source_format = detect_format(path, options.format)
    destination = work_dir / "normalized.parquet"
    if source_format == "parquet":
        try:
            source = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise refuse(f"the file is not valid Parquet: {exc}") from None
        names = source.schema_arrow.names
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise refuse(f"duplicate column names: {', '.join(duplicates)}")
        if source.metadata.num_rows == 0:
            raise refuse("the file holds no rows")
        schema = _normalized_schema(source.schema_arrow)
        return write_normalized(source.iter_batches(), schema, destination, "parquet")
    layout = _csv_layout(path, options)
    types = _infer_csv_types(path, layout)
    schema = pa.schema(list(types.items()))
    return write_normalized(_csv_batches(path, layout, types), schema, destination, "csv")


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)
