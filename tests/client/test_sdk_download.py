"""`DatasetVersion.download|to_arrow|to_pandas` against a real `aiaas serve`: the version's rows
come back as they went up, a file is replaced only once its download is whole, and a refusal
or a Ctrl-C leaves the destination as it was and no temporary file beside it."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.client import Client, DatasetVersion
from aiaas.client.downloads import download_version
from aiaas.client.errors import AiaasClientError, NotFoundError

pytestmark = pytest.mark.slow

TABLE = pa.table(
    {
        "id": pa.array(range(1000), pa.int64()),
        "score": pa.array([n / 7 for n in range(1000)], pa.float64()),
        "label": pa.array([f"row-{n}" for n in range(1000)]),
    }
)


@pytest.fixture(scope="module")
def project_slug(client: Client) -> str:
    slug = f"sdk-down-{uuid.uuid4().hex[:8]}"
    client.create_project(slug, name="SDK download")
    return slug


@pytest.fixture(scope="module")
def version(client: Client, project_slug: str) -> DatasetVersion:
    return client.project(project_slug).upload(TABLE, name="scores", progress=False)


def test_a_version_downloads_to_a_parquet_file_of_its_rows(
    version: DatasetVersion, tmp_path: Path
) -> None:
    written = version.download(tmp_path / "nested" / "scores.parquet")
    assert written == tmp_path / "nested" / "scores.parquet"
    assert written.stat().st_size == version.size_bytes
    assert pq.read_table(written).equals(TABLE)
    assert sorted(path.name for path in written.parent.iterdir()) == ["scores.parquet"]


def test_a_version_reads_as_a_table_and_a_dataframe(
    client: Client, project_slug: str, version: DatasetVersion
) -> None:
    assert version.to_arrow().equals(TABLE)
    frame = version.to_pandas()
    assert list(frame.columns) == ["id", "score", "label"]
    assert frame["label"].iloc[999] == "row-999"
    latest = client.project(project_slug).latest_version("scores")
    assert (latest.project_slug, latest.dataset_name) == (project_slug, "scores")
    assert latest.to_arrow().equals(TABLE)


def test_an_existing_file_is_replaced_whole(version: DatasetVersion, tmp_path: Path) -> None:
    target = tmp_path / "scores.parquet"
    target.write_bytes(b"an older file, longer than nothing")
    version.download(target)
    assert pq.read_table(target).equals(TABLE)


def test_a_refused_download_leaves_the_destination_as_it_was(
    client: Client, project_slug: str, tmp_path: Path
) -> None:
    target = tmp_path / "kept.parquet"
    target.write_bytes(b"kept")
    with pytest.raises(NotFoundError, match="no version 9"):
        download_version(client, project_slug, "scores", 9, target)
    assert target.read_bytes() == b"kept"
    assert [path.name for path in tmp_path.iterdir()] == ["kept.parquet"]


def test_a_ctrl_c_mid_download_leaves_no_temporary_file(
    client: Client, version: DatasetVersion, tmp_path: Path
) -> None:
    def interrupt(response: httpx.Response) -> None:
        # What a Ctrl-C does: KeyboardInterrupt, here as the body starts to arrive.
        if response.request.url.path.endswith("/data"):
            raise KeyboardInterrupt

    target = tmp_path / "scores.parquet"
    target.write_bytes(b"kept")
    client.http.event_hooks["response"].append(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            version.download(target)
    finally:
        client.http.event_hooks["response"].remove(interrupt)
    assert target.read_bytes() == b"kept"
    assert [path.name for path in tmp_path.iterdir()] == ["scores.parquet"]


def test_a_version_read_by_id_alone_says_how_to_download_it(
    client: Client, version: DatasetVersion
) -> None:
    unplaced = DatasetVersion(
        client,
        id=version.id,
        dataset_id=version.dataset_id,
        number=version.number,
        row_count=version.row_count,
        size_bytes=version.size_bytes,
        source_format=version.source_format,
        content_sha256=version.content_sha256,
        columns=version.columns,
        created_at=version.created_at,
    )
    with pytest.raises(AiaasClientError, match="through its project"):
        unplaced.download("never.parquet")
    assert not Path("never.parquet").exists()
