"""`GET /v1/projects/{slug}/datasets/{name}/versions/{number}/data`: a version's rows as its
Parquet file, unsealed as it is sent. `dataset:read` lets a viewer download; anyone else is told
the project does not exist; an archived project's versions still download. Every download and
every refusal is audited as `dataset.download`. Against a real server, a 32 MiB version streams
through without the server holding it, and a client gone mid-way leaves no artifact open."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import archive_project
from aiaas.core.platform import Platform
from server_watch import Server, Watch, watched_server
from support import (
    Team,
    audit_mark,
    audit_rows_since,
    data_of,
    graphql,
    new_team,
    poll_until,
    unique,
)
from upload_files import fresh_csv, parquet_bytes

PARQUET = "application/vnd.apache.parquet"


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, unique("download"), (ProjectRole.VIEWER,))


@pytest.fixture(scope="module")
async def outsider(platform: Platform) -> Team:
    """Someone who owns a project of their own, and is no member of `team`'s."""
    return await new_team(platform, unique("elsewhere"), ())


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def data_url(slug: str, dataset: str, number: object) -> str:
    return f"/v1/projects/{slug}/datasets/{dataset}/versions/{number}/data"


async def upload(client: httpx.AsyncClient, team: Team, dataset: str, body: bytes) -> Any:
    response = await client.post(
        f"/v1/projects/{team.slug}/datasets/{dataset}/versions",
        content=body,
        headers=bearer(team.token(ProjectRole.OWNER)),
    )
    assert response.status_code == 201, response.text
    return response.json()["version"]


async def test_a_version_downloads_as_its_parquet_file_with_its_hash_and_is_audited(
    client: httpx.AsyncClient, platform: Platform, team: Team
) -> None:
    csv = fresh_csv(rows=50)
    version = await upload(client, team, "sales", csv)
    mark = await audit_mark(platform)

    response = await client.get(
        data_url(team.slug, "sales", 1), headers=bearer(team.token(ProjectRole.OWNER))
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PARQUET
    assert int(response.headers["content-length"]) == len(response.content) == version["sizeBytes"]
    assert response.headers["etag"] == f'"{version["contentSha256"]}"'
    assert response.headers["x-aiaas-content-sha256"] == hashlib.sha256(csv).hexdigest()
    assert "sales-v1.parquet" in response.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == 50
    assert table.column_names == ["id", "amount", "label"]
    assert table.column("id").to_pylist() == list(range(50))
    [event] = await audit_rows_since(platform, mark, action="dataset.download")
    assert (event["outcome"], event["object_type"]) == ("success", "dataset_version")
    assert event["object_id"] == version["uuid"]
    assert event["project_id"] == team.project_id
    assert event["details"] == {"dataset": "sales", "number": 1, "bytes": version["sizeBytes"]}


async def test_a_viewer_may_download_and_parquet_uploads_round_trip(
    client: httpx.AsyncClient, team: Team
) -> None:
    table = pa.table({"x": [1.5, 2.5, None], "name": ["a", "b", "c"]})
    await upload(client, team, "small", parquet_bytes(table))
    response = await client.get(
        data_url(team.slug, "small", 1), headers=bearer(team.token(ProjectRole.VIEWER))
    )
    assert response.status_code == 200, response.text
    downloaded = pq.read_table(io.BytesIO(response.content))
    assert downloaded.to_pydict() == table.to_pydict()


async def test_a_head_answers_the_headers_alone_and_is_not_audited(
    client: httpx.AsyncClient, platform: Platform, team: Team
) -> None:
    version = await upload(client, team, "heads", fresh_csv())
    mark = await audit_mark(platform)
    response = await client.head(
        data_url(team.slug, "heads", 1), headers=bearer(team.token(ProjectRole.OWNER))
    )
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == version["sizeBytes"]
    assert await audit_rows_since(platform, mark, action="dataset.download") == []


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


async def test_unknown_projects_datasets_and_numbers_are_404_and_audited_as_failed(
    client: httpx.AsyncClient, platform: Platform, team: Team
) -> None:
    await upload(client, team, "known", fresh_csv())
    owner = bearer(team.token(ProjectRole.OWNER))
    mark = await audit_mark(platform)
    for url in (
        data_url("no-such-project", "known", 1),
        data_url(team.slug, "unknown", 1),
        data_url(team.slug, "known", 2),
    ):
        assert_error(await client.get(url, headers=owner), 404, "NOT_FOUND")
    rows = await audit_rows_since(platform, mark, action="dataset.download")
    assert [row["outcome"] for row in rows] == ["failed"] * 3
    assert [row["project_id"] for row in rows] == [None, team.project_id, team.project_id]


@pytest.mark.parametrize("number", ["latest", "0", "-1", "1.0", "99999999999", "%D9%A3"])
async def test_a_version_that_is_no_number_is_400_naming_it(
    client: httpx.AsyncClient, team: Team, number: str
) -> None:
    response = await client.get(
        data_url(team.slug, "known", number), headers=bearer(team.token(ProjectRole.OWNER))
    )
    error = assert_error(response, 400, "BAD_USER_INPUT")
    assert "number" in error["fieldErrors"]


async def test_a_caller_outside_the_project_is_told_it_does_not_exist_and_is_audited(
    client: httpx.AsyncClient, platform: Platform, team: Team, outsider: Team
) -> None:
    await upload(client, team, "secret", fresh_csv())
    mark = await audit_mark(platform)
    response = await client.get(
        data_url(team.slug, "secret", 1), headers=bearer(outsider.token(ProjectRole.OWNER))
    )
    refused = assert_error(response, 404, "NOT_FOUND")
    assert "secret" not in refused["message"]
    [event] = await audit_rows_since(platform, mark, action="dataset.download")
    assert (event["outcome"], event["project_id"]) == ("denied", team.project_id)


async def test_no_token_is_401_and_a_bad_one_too(client: httpx.AsyncClient, team: Team) -> None:
    assert (await client.get(data_url(team.slug, "known", 1))).status_code == 401
    refused = await client.get(data_url(team.slug, "known", 1), headers=bearer("aiaas_nope"))
    assert refused.status_code == 401


async def test_a_deleted_version_is_404(client: httpx.AsyncClient, team: Team) -> None:
    version = await upload(client, team, "doomed", fresh_csv())
    owner = team.token(ProjectRole.OWNER)
    deleted = await graphql(
        client,
        "mutation($id: ID!) { deleteDatasetVersion(id: $id) { __typename } }",
        {"id": version["id"]},
        token=owner,
    )
    assert data_of(deleted)["deleteDatasetVersion"]["__typename"] == "DeleteDatasetVersionSuccess"
    error = assert_error(
        await client.get(data_url(team.slug, "doomed", 1), headers=bearer(owner)), 404, "NOT_FOUND"
    )
    assert "deleted" in error["message"]


async def test_an_archived_projects_versions_still_download(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    archived = await new_team(platform, unique("archived"), (ProjectRole.VIEWER,))
    await upload(client, archived, "kept", fresh_csv())
    await archive_project(
        platform, archived.members[ProjectRole.OWNER].principal, archived.project_id
    )
    response = await client.get(
        data_url(archived.slug, "kept", 1), headers=bearer(archived.token(ProjectRole.VIEWER))
    )
    assert response.status_code == 200, response.text
    assert pq.read_table(io.BytesIO(response.content)).num_rows == 3


# Against a real server: streamed, not held ----------------------------------------------------

LARGE_ROWS = 512 * 1024
LARGE_COLUMNS = 8  # float64 noise: 32 MiB that Parquet cannot compress


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with watched_server(config, tmp_path_factory) as served:
        yield served


async def test_a_32_mib_version_streams_through_a_real_server_without_being_held(
    team: Team, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    noise = np.random.default_rng(7).random((LARGE_COLUMNS, LARGE_ROWS))
    table = pa.table({f"c{i}": noise[i] for i in range(LARGE_COLUMNS)})
    source = tmp_path_factory.mktemp("large") / "large.parquet"
    pq.write_table(table, source)
    owner = bearer(team.token(ProjectRole.OWNER))
    async with httpx.AsyncClient(base_url=server.running.base_url, timeout=300) as live:
        uploaded = await live.post(
            f"/v1/projects/{team.slug}/datasets/large/versions",
            content=source.read_bytes(),
            headers=owner,
        )
        assert uploaded.status_code == 201, uploaded.text
        size = uploaded.json()["version"]["sizeBytes"]
        assert size > 30 * 1024**2
        head, tail, received = b"", b"", 0
        with Watch(server) as watch:
            async with live.stream("GET", data_url(team.slug, "large", 1), headers=owner) as got:
                assert got.status_code == 200
                async for chunk in got.aiter_raw():
                    head = head or chunk[:4]
                    tail = (tail + chunk)[-4:]
                    received += len(chunk)
    assert (received, head, tail) == (size, b"PAR1", b"PAR1")  # the whole Parquet file
    # Held whole, the file would be at least `size` (twice, sealed and unsealed); streamed, what
    # grows is a few chunks in flight and the allocator's pools (about 8 MiB measured).
    assert watch.growth < size / 2, f"the server grew {watch.growth} bytes sending {size}"
    # Unsealed straight to the socket (the bytes the server wrote are the body's), no spool file.
    assert watch.temp_descriptors == set()
    assert server.files_left() == []


def artifact_descriptors(server: Server) -> list[str]:
    """The artifact store's objects the server holds open."""
    fd_dir = Path(f"/proc/{server.running.process.pid}/fd")
    found = []
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(fd_dir / fd)
            if target.startswith(str(server.data_dir)) and "/objects/" in target:
                found.append(target)
    return found


async def test_a_client_gone_mid_download_leaves_the_artifact_closed(
    team: Team, server: Server
) -> None:
    owner = bearer(team.token(ProjectRole.OWNER))
    async with (
        httpx.AsyncClient(base_url=server.running.base_url, timeout=60) as live,
        live.stream("GET", data_url(team.slug, "large", 1), headers=owner) as got,
    ):
        assert got.status_code == 200
        async for _ in got.aiter_raw():
            assert artifact_descriptors(server) != []  # being read
            break  # one chunk, then the connection goes

    async def closed() -> bool:
        return artifact_descriptors(server) == []

    assert await poll_until(closed, timeout_s=10) is not None
    async with httpx.AsyncClient(base_url=server.running.base_url, timeout=60) as live:
        head = await live.head(data_url(team.slug, "large", 1), headers=owner)
    assert head.status_code == 200
