"""A dataset version's rows, downloaded: its Parquet file written atomically, or read into a
pyarrow Table, or converted to CSV; memory holds one chunk of the body at a time.

The file goes to a temporary file beside its destination and is renamed onto it only once the
whole body has arrived: an interruption (Ctrl-C), a refusal or a body cut short leaves the
destination as it was and no temporary file behind. pyarrow is imported only when a table or a
CSV file is asked for.

A model version's export (`download_model_version`: its native bundle with a manifest, as a ZIP
archive, or its ONNX graph) is written the same way."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from aiaas.client.connection import Client
from aiaas.client.errors import AiaasClientError
from aiaas.client.transport import answered, check_response

if TYPE_CHECKING:
    import pyarrow

CHUNK_BYTES = 1 << 20
DOWNLOAD_READ_TIMEOUT_S = 120.0
"""Longest wait for the next chunk of a download (the server unseals as it sends)."""
_CSV_BATCH_ROWS = 64 * 1024


def data_path(project: str, dataset: str, number: int) -> str:
    """The REST path of a version's Parquet file."""
    return (
        f"/v1/projects/{quote(project, safe='')}/datasets/{quote(dataset, safe='')}"
        f"/versions/{number}/data"
    )


@contextlib.contextmanager
def replacing(destination: Path) -> Iterator[Path]:
    """A temporary path beside `destination`, renamed onto it when the block ends without an
    exception and removed when it ends with one (KeyboardInterrupt included)."""
    directory = destination.parent
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(
        dir=directory, prefix=f".{destination.name}.", suffix=".part"
    )
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _receive(client: Client, path: str, file: Path) -> None:
    """The body of GET `path` into `file`, a chunk at a time; the typed exception of a refusal,
    and `AiaasClientError` for a body shorter or longer than announced."""
    timeout = httpx.Timeout(client.timeout, read=max(client.timeout, DOWNLOAD_READ_TIMEOUT_S))
    with (
        answered(client.url),
        client.http.stream("GET", path, timeout=timeout) as response,
    ):
        if not response.is_success:
            response.read()
            check_response(client.url, response)
        expected = response.headers.get("content-length")
        received = 0
        with file.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    if expected is not None and int(expected) != received:
        raise AiaasClientError(f"the download of {path} ended after {received} of {expected} bytes")


def download_version(
    client: Client, project: str, dataset: str, number: int, destination: str | os.PathLike[str]
) -> Path:
    """Version `number` of dataset `dataset` in project `project` as a Parquet file at
    `destination` (replaced whole if it exists); answers its path."""
    target = Path(destination)
    with replacing(target) as temporary:
        _receive(client, data_path(project, dataset, number), temporary)
    return target


def model_export_path(project: str, model: str, number: int, export_format: str) -> str:
    """The REST path of a model version's export in `export_format` (`bundle` or `onnx`)."""
    return (
        f"/v1/projects/{quote(project, safe='')}/models/{quote(model, safe='')}"
        f"/versions/{number}/export?format={quote(export_format, safe='')}"
    )


def download_model_version(
    client: Client,
    project: str,
    model: str,
    number: int,
    destination: str | os.PathLike[str],
    *,
    format: str = "bundle",
) -> Path:
    """Version `number` of model `model` in project `project`, exported to `destination`
    (replaced whole if it exists): `format="bundle"`, a ZIP archive of its native bundle and a
    `manifest.json`; `format="onnx"`, its ONNX graph, for the formats that convert (otherwise
    `InvalidInputError`). Answers its path."""
    target = Path(destination)
    with replacing(target) as temporary:
        _receive(client, model_export_path(project, model, number, format), temporary)
    return target


def read_version(client: Client, project: str, dataset: str, number: int) -> pyarrow.Table:
    """The version's rows as a pyarrow Table (read from a temporary file, removed after)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="aiaas-download-") as directory:
        path = download_version(client, project, dataset, number, Path(directory) / "v.parquet")
        return pq.read_table(path, memory_map=False)


def parquet_to_csv(source: Path, destination: Path) -> None:
    """Write the Parquet file `source` as CSV at `destination`, a batch of rows at a time,
    replacing it whole once written."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    with (
        pq.ParquetFile(source) as parquet,
        replacing(destination) as temporary,
        pa_csv.CSVWriter(temporary, parquet.schema_arrow) as writer,
    ):
        for batch in parquet.iter_batches(batch_size=_CSV_BATCH_ROWS):
            writer.write_batch(batch)
