"""Reading an uploaded file, CSV or Parquet, into normalized Parquet with its profile.

The file's bytes decide its format, never its name: Parquet starts with `PAR1`, and anything
else must decode as text (UTF-8, or the declared encoding) without NUL bytes to be read as CSV.
A CSV file is read in blocks, so memory stays bounded whatever its size, in two passes: the first
reads every field as text to work out each column's type from all its values (a type guessed from
the first block alone would break on a later one); the second parses the columns as those types,
profiles them, and writes the normalized file.

This module reads and checks the upload; `type_inference.py` works out the column types and
`normalized.py` writes the file.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc

from aiaas.core.data.images.archives import archive_kind, sniff_archive
from aiaas.core.data.images.ingest import normalize_image_archive
from aiaas.core.data.tabular.arriving import BINARY, UploadSource
from aiaas.core.data.tabular.ingest_parquet import normalize_parquet
from aiaas.core.data.tabular.limits import (
    NO_LIMITS_GIVEN,
    TableLimits,
    check_names,
    check_width,
    checked_cells,
)
from aiaas.core.data.tabular.normalized import NormalizedTable, SourceFormat, write_normalized
from aiaas.core.data.tabular.read_options import WIDE_ENCODINGS, ReadOptions, refuse
from aiaas.core.data.tabular.type_inference import TypeInference
from aiaas.core.errors import InputError

SNIFF_BYTES = 64 * 1024
BLOCK_BYTES = 4 << 20
# The first rows (for the header and the column count) are read in a smaller block: Arrow reads
# ahead, and a full block costs a tenth of a second for nothing.
SAMPLE_BLOCK_BYTES = 1 << 20
NUL_SEARCH_CHUNK_BYTES = 1 << 20
DELIMITERS = ",;\t|"
NULL_VALUES = ["", "NA", "N/A", "NULL", "null", "NaN", "nan", "None"]


# Detecting the format ----------------------------------------------------------------------


def detect_format(
    path: Path | UploadSource, declared: SourceFormat | None, encoding: str | None = None
) -> SourceFormat:
    """The file's format from its bytes. Of a file still arriving (`arriving`), only the
    head is read when it is text in a narrow encoding: its other bytes are searched for NUL as
    they are parsed (`UploadSource.refuse_if_binary`); anything else is waited for whole."""
    source = path if isinstance(path, UploadSource) else UploadSource(path)
    source.wait_for(SNIFF_BYTES)
    with source.path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        if not head:
            raise refuse("the file is empty")
        if head.startswith(b"PAR1") or archive_kind(head) is not None:
            source.wait_until_complete()
        if encoding in WIDE_ENCODINGS:
            source.wait_until_complete()
            source.nul_is_binary = False  # searched in its characters, whole, below
        if head.startswith(b"PAR1"):
            detected: SourceFormat = "parquet"
        elif archive_kind(head) is not None and sniff_archive(source.path) is not None:
            detected = "images"  # an archive of images (`images.ingest`)
        elif _holds_nul(head, handle, encoding, whole=not source.arriving):
            raise refuse(BINARY)
        else:
            detected = "csv"
    if declared is not None and declared != detected:
        raise refuse(f"the file was declared {declared} but its content is {detected}")
    return detected


def _holds_nul(
    head: bytes, rest: BinaryIO, encoding: str | None = None, *, whole: bool = True
) -> bool:
    # The whole file, not a sample: text never holds NUL, and a NUL read into a value would
    # end it early in most tools downstream. Searching bytes costs little next to parsing them;
    # UTF-16 and UTF-32 text holds NUL bytes, so there the decoded characters are searched.
    # Not `whole`: the rest is searched as it is parsed (`ArrivingFile`).
    if encoding in WIDE_ENCODINGS:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        chunk = head
        try:
            while chunk:
                if "\x00" in decoder.decode(chunk):
                    return True
                chunk = rest.read(NUL_SEARCH_CHUNK_BYTES)
            decoder.decode(b"", final=True)
        except UnicodeError as exc:
            # errors="replace" does not cover a UTF-16 file without a byte order mark, nor
            # one whose length is not a whole number of characters.
            raise refuse(f"the file is not valid {encoding}: {exc}", "encoding") from None
        return False
    if b"\x00" in head:
        return True
    while whole and (chunk := rest.read(NUL_SEARCH_CHUNK_BYTES)):
        if b"\x00" in chunk:
            return True
    return False


def _arrow_encoding(encoding: str) -> str:
    return "utf8" if _is_utf8(encoding) else encoding


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def _decoded_sample(path: Path, encoding: str) -> str:
    try:
        decoder = codecs.getincrementaldecoder(
            # A UTF-8 byte order mark is no part of the first column's name.
            "utf-8-sig" if _is_utf8(encoding) else encoding
        )()
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
        return declared  # checked when the options were made (`ReadOptions`)
    # Only CR and LF end a CSV line (str.splitlines would also break at \v, \f, U+2028...).
    lines = [line for line in re.split(r"\r\n|\r|\n", sample)[:50] if line]
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
    # A header row names columns, and no name is a number. Past that the rows cannot tell (a
    # file of text columns looks the same either way), and most files have a header: the
    # uploader declares `header: false` for one without.
    return not any(_looks_numeric(value) for value in rows[0])


def _column_names(first_row: list[str], header: bool) -> list[str]:
    if not header:
        return [f"column_{index + 1}" for index in range(len(first_row))]
    names = [name.strip() or f"column_{index + 1}" for index, name in enumerate(first_row)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise refuse(
            f"duplicate column names: {', '.join(duplicates)} "
            "(declare header: false if the first row is data)"
        )
    return names


# Reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    encoding: str
    delimiter: str
    header: bool
    names: list[str]


SAMPLE_ROWS = 50


def _open_text_csv(
    source: UploadSource,
    encoding: str,
    delimiter: str,
    width: int | None,
    *,
    with_nulls: bool = True,
    block_size: int = BLOCK_BYTES,
    use_threads: bool = True,
) -> pa_csv.CSVStreamingReader:
    """Arrow's reader of the file, every field as text, the header (if any) as the first row:
    Arrow parses it like any row, quoted line breaks and blank lines included. With `width`
    unknown, only the reader's schema is of use: it tells the number of columns."""
    generated = [f"f{index}" for index in range(width or 0)]
    try:
        return pa_csv.open_csv(
            source.open(),
            read_options=pa_csv.ReadOptions(
                encoding=_arrow_encoding(encoding),
                block_size=block_size,
                use_threads=use_threads,
                autogenerate_column_names=True,
            ),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(generated, pa.string()),
                null_values=NULL_VALUES if with_nulls else [],
                strings_can_be_null=with_nulls,
            ),
        )
    except (pa.ArrowInvalid, UnicodeError) as exc:
        raise _explain_csv_error(exc) from None


@contextmanager
def _reading(
    source: UploadSource, *args: Any, **kwargs: Any
) -> Iterator[pa_csv.CSVStreamingReader]:
    """`_open_text_csv`, closed at the end of the block, however far it read."""
    reader = None
    try:
        reader = _open_text_csv(source, *args, **kwargs)
        yield reader
    finally:
        # Arrow reads ahead on threads of its own (from its opening on, which may fail), and
        # closing waits for those reads: of a file still arriving, they would wait for bytes
        # this reader no longer wants.
        source.let_go()
        if reader is not None:
            reader.close()


def _csv_layout(source: UploadSource, options: ReadOptions, limits: TableLimits) -> _CsvLayout:
    encoding = options.encoding or "utf-8"
    sample = _decoded_sample(source.path, encoding)
    delimiter = _sniff_dialect(sample, options.delimiter)
    if not sample.strip():
        raise refuse("the file holds no rows")
    try:
        rows = _first_rows(source, encoding, delimiter, SAMPLE_BLOCK_BYTES, limits)
    except InputError as exc:
        if "straddles" not in exc.message:
            raise
        rows = _first_rows(source, encoding, delimiter, BLOCK_BYTES, limits)  # longer rows
    header = _has_header(rows, options.header)
    names = _column_names(rows[0], header)
    check_names(names, limits)
    return _CsvLayout(encoding, delimiter, header, names)


def _first_rows(
    source: UploadSource, encoding: str, delimiter: str, block_size: int, limits: TableLimits
) -> list[list[str]]:
    """The file's first rows as Arrow parses them, every field as written; `InputError` for a
    file wider than the limit, told from its first row before any row is typed."""
    try:
        # Without threads: they read and parse blocks ahead, a third of a second for rows
        # no one reads here.
        with _reading(
            source, encoding, delimiter, None, block_size=block_size, use_threads=False
        ) as probe:
            width = len(probe.schema)
    except InputError as exc:
        if "Empty CSV" not in exc.message:
            raise
        # Arrow reads no row from one line without a line break after it: a lone header.
        raise refuse("the file has a header but no rows") from None
    check_width(width, limits)
    with _reading(
        source,
        encoding,
        delimiter,
        width,
        with_nulls=False,
        block_size=block_size,
        use_threads=False,
    ) as reader:
        try:
            first = reader.read_next_batch().slice(0, SAMPLE_ROWS)
        except StopIteration:
            raise refuse("the file holds no rows") from None
        except (pa.ArrowInvalid, UnicodeError) as exc:
            raise _explain_csv_error(exc) from None
    return [list(row.values()) for row in first.to_pylist()]


def _text_batches(source: UploadSource, layout: _CsvLayout) -> Iterator[pa.RecordBatch]:
    """The file's data rows, block by block, as text columns named as the layout says."""
    names = layout.names
    skip_header = layout.header
    try:
        with _reading(source, layout.encoding, layout.delimiter, len(names)) as reader:
            for batch in reader:
                rows = batch
                if skip_header:
                    rows, skip_header = batch.slice(1), batch.num_rows == 0
                yield pa.RecordBatch.from_arrays(rows.columns, names=names)
    except (pa.ArrowInvalid, UnicodeError) as exc:
        raise _explain_csv_error(exc) from None


def _explain_csv_error(exc: Exception) -> InputError:
    text = str(exc)
    if isinstance(exc, UnicodeError):
        # Arrow decodes a declared encoding other than UTF-8 through Python's codec.
        return refuse(f"the file is not valid text in its declared encoding: {text}", "encoding")
    if "Expected" in text and "columns" in text:
        return refuse(f"ragged rows: {text.removeprefix('CSV parse error: ')}")
    if "UTF8" in text or "UTF-8" in text:
        return refuse("the file is not valid UTF-8", "encoding")
    if "straddles" in text:
        return refuse(
            f"a row is longer than {BLOCK_BYTES >> 20} MiB, or a quote is never closed "
            "(the file straddles a read block)"
        )
    return refuse(f"the file cannot be read as CSV: {text}")


def _read_csv_as_text(
    source: UploadSource, layout: _CsvLayout, spill: Path, limits: TableLimits
) -> dict[str, pa.DataType]:
    """The first pass: every field read as text, to find each column's type from all its
    values, and kept in an Arrow stream on disk so that the second pass casts it rather than
    parsing the CSV again. It is also the pass that finds malformed input. Arrow parses a
    block while the one before is typed and spilled on a second thread (both release the
    GIL); one block in flight keeps memory bounded."""
    inference = TypeInference(layout.names)
    text_schema = pa.schema([(name, pa.string()) for name in layout.names])
    rows = 0

    def absorb(batch: pa.RecordBatch) -> None:
        inference.update(batch)
        stream.write_batch(batch)

    with (
        pa.OSFile(str(spill), "wb") as sink,
        pa.ipc.new_stream(sink, text_schema) as stream,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-types") as pool,
    ):
        in_flight: Future[None] | None = None
        for batch in checked_cells(_text_batches(source, layout), limits):
            rows += batch.num_rows
            if in_flight is not None:
                in_flight.result()
            in_flight = pool.submit(absorb, batch)
        if in_flight is not None:
            in_flight.result()
    if rows == 0:
        raise refuse("the file has a header but no rows")
    return inference.types()


def _cast_spilled(spill: Path, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    # Read with plain reads, not a memory map: mapped pages would count as the process's memory
    # for as long as the mapping lives, and a large upload would look like a large process.
    with pa.OSFile(str(spill), "rb") as source, pa.ipc.open_stream(source) as stream:
        for batch in stream:
            yield batch.cast(schema)


# The way in -------------------------------------------------------------------------


def normalize_upload(
    path: Path,
    work_dir: Path,
    options: ReadOptions,
    limits: TableLimits = NO_LIMITS_GIVEN,
    *,
    arriving: bool = False,
) -> NormalizedTable:
    """Read an uploaded file into `work_dir/normalized.parquet`, or raise `InputError`; one
    still `arriving` is read as its bytes come (`arriving.py`)."""
    source = UploadSource(path, arriving=arriving)
    source_format = detect_format(source, options.format, options.encoding)
    destination = work_dir / "normalized.parquet"
    if source_format == "parquet":
        return normalize_parquet(path, destination, limits)
    if source_format == "images":
        kind = sniff_archive(path)
        assert kind is not None  # detected as an archive above
        return normalize_image_archive(
            path, kind, destination, limits, keep_personal_tags=options.keep_dicom_personal_tags
        )
    spill = work_dir / "text.arrows"
    try:
        try:
            layout = _csv_layout(source, options, limits)
            types = _read_csv_as_text(source, layout, spill, limits)
        except InputError as exc:
            raise source.refusal(exc) from None
        # A NUL byte ends the reading, which may still have made a table of what came before.
        source.refuse_if_binary()
        schema = pa.schema(list(types.items()))
        return write_normalized(_cast_spilled(spill, schema), schema, destination, "csv")
    finally:
        spill.unlink(missing_ok=True)
