"""What an upload sends: a file as it is, or a table written to Parquet first; its format told
from its first bytes; its body read in chunks as the request goes, behind a progress bar."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from aiaas.client.errors import UnsupportedFileError

CHUNK_BYTES = 1 << 20
_SNIFF_BYTES = 64 << 10
_PARQUET_MAGIC = b"PAR1"

Source = str | os.PathLike[str] | IO[bytes] | Any
"""A path, a binary file open for reading, a pyarrow Table or a pandas DataFrame."""


@dataclass
class Body:
    """An upload's bytes: a binary file from its current position, `size` bytes long."""

    file: IO[bytes]
    size: int
    format: str
    label: str


def _is_table(source: object) -> bool:
    module = type(source).__module__
    return module.startswith(("pyarrow", "pandas")) and hasattr(
        source, "num_rows" if module.startswith("pyarrow") else "columns"
    )


def _sniff(file: IO[bytes], label: str) -> str:
    """csv or parquet, from the first bytes; `UnsupportedFileError` for anything else."""
    start = file.tell()
    head = file.read(_SNIFF_BYTES)
    file.seek(start)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    # A text file has no NUL byte; images, archives, spreadsheets and pickles all do early on.
    if head and b"\x00" not in head:
        return "csv"
    what = "empty" if not head else "neither CSV nor Parquet"
    raise UnsupportedFileError(f"{label} is {what}: upload a CSV or a Parquet file")


def _sniff_dataset(file: IO[bytes], label: str) -> str:
    """What a dataset upload may be: csv, parquet, or an archive of images (zip, tar,
    gzip-compressed tar: docs/guides/images.md), told from the first bytes as the server tells
    them."""
    start = file.tell()
    head = file.read(512)
    file.seek(start)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or head[257:262] == b"ustar":
        return "images"
    if head.startswith(b"\x1f\x8b") and _gzip_holds_tar(file):
        return "images"
    return _sniff(file, label)


def _gzip_holds_tar(file: IO[bytes]) -> bool:
    """Whether a gzip file inflates to a tar archive: its first 262 bytes inflated, no more."""
    start = file.tell()
    try:
        with gzip.GzipFile(fileobj=file, mode="rb") as inflated:
            header = inflated.read(262)
    except (OSError, EOFError, zlib.error):
        return False
    finally:
        file.seek(start)
    return header[257:262] == b"ustar"


def format_of(path: str | os.PathLike[str]) -> str:
    """csv or parquet, told from the file's first bytes as an upload tells it;
    `UnsupportedFileError` for anything else."""
    with open(path, "rb") as file:
        return _sniff(file, str(path))


@contextlib.contextmanager
def opened(source: Source) -> Iterator[Body]:
    """The body to send for `source`. A table is written to a temporary Parquet file, removed
    on the way out, so that its size is known and memory holds one chunk at a time."""
    if _is_table(source):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = (
            source
            if isinstance(source, pa.Table)
            else pa.Table.from_pandas(source, preserve_index=False)
        )
        with tempfile.TemporaryFile() as file:
            pq.write_table(table, file)
            size = file.tell()
            file.seek(0)
            yield Body(file, size, "parquet", f"a table of {table.num_rows} rows")
        return
    with _file_body(source, _sniff_dataset, "a pyarrow Table or a pandas DataFrame") as body:
        yield body


@contextlib.contextmanager
def opened_model(source: str | os.PathLike[str] | IO[bytes], model_format: str) -> Iterator[Body]:
    """The body to send for a model file: a path or a binary file, sent as it is (the server
    tells whether it is a model of `model_format`)."""
    with _file_body(source, lambda file, label: model_format, None) as body:
        yield body


@contextlib.contextmanager
def _file_body(
    source: Any, format_of_file: Callable[[IO[bytes], str], str], other_sources: str | None
) -> Iterator[Body]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as file:
            yield Body(file, path.stat().st_size, format_of_file(file, str(path)), path.name)
        return
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        source = cast(IO[bytes], source)
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
        label = str(getattr(source, "name", "the file"))
        yield Body(source, size, format_of_file(source, label), label)
        return
    accepted = "a path or a binary file" + (f", {other_sources}" if other_sources else "")
    raise UnsupportedFileError(f"cannot upload a {type(source).__name__}: pass {accepted}")


def progress_wanted(progress: bool | None) -> bool:
    """`progress` if given; otherwise on in a terminal (stderr) or a notebook."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() or "ipykernel" in sys.modules


@contextlib.contextmanager
def chunks(body: Body, progress: bool) -> Iterator[Iterator[bytes]]:
    """The body's chunks, advancing a rich progress bar on stderr when `progress`."""
    if not progress:
        yield _read(body, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    with Progress(
        TextColumn("uploading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        # A terminal's bar goes once done; elsewhere (a log, a pipe) its final state stays.
        transient=console.is_terminal,
    ) as bar:
        task = bar.add_task(body.label, total=body.size)
        yield _read(body, lambda sent: bar.advance(task, sent))


def _read(body: Body, advance: Any) -> Iterator[bytes]:
    remaining = body.size
    while remaining > 0:
        chunk = body.file.read(min(CHUNK_BYTES, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        if advance is not None:
            advance(len(chunk))
        yield chunk
