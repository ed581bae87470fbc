"""`POST /v1/projects/{slug}/datasets/{name}/versions`: the request body is the file, streamed
to disk as it arrives and refused with 413 as soon as it passes the size limit. Query parameters
declare what detection would otherwise decide. Bad input is a 400 with code BAD_USER_INPUT and
field errors, which creates no version and leaves no file behind."""

from __future__ import annotations

import hashlib
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyarrow as pa
import pytest

from aiaas.core.config import Config
from aiaas.core.identity import projects
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from support import footprint, unique
from upload_files import client_with_upload_limit, fresh_csv, parquet_bytes

# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def project(platform: Platform, admin_token: str) -> projects.Project:
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    return await projects.create_project(platform, admin, slug=unique("rest"), name="REST")


@pytest.fixture(scope="module")
def auth(admin_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {admin_token}"}


UPLOAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
async def limited_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose uploads may be at most `UPLOAD_LIMIT` bytes; same database and
    data directory as the module's platform."""
    async with client_with_upload_limit(config, UPLOAD_LIMIT) as client:
        yield client


# Helpers ------------------------------------------------------------------------------------


def versions_url(project: projects.Project, dataset: str) -> str:
    return f"/v1/projects/{project.slug}/datasets/{dataset}/versions"


async def post(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    dataset: str,
    content: Any,
    headers: dict[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    return await client.post(
        versions_url(project, dataset),
        content=content,
        params=params,
        headers={**auth, **(headers or {})},
    )


class CountedChunks:
    """An async CSV body of `count` chunks of about `size` bytes (whole lines, after a header in
    the first) that counts how many were read: the ASGI transport pulls each chunk only when the
    app asks for more of the body."""

    LINE = b"1234567,abcdefgh\n"

    def __init__(self, count: int, size: int, line: bytes = LINE) -> None:
        self.count = count
        self.line = line
        self.lines_per_chunk = size // len(line)
        self.read = 0

    @property
    def rows(self) -> int:
        return self.count * self.lines_per_chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = self.line * self.lines_per_chunk
        for index in range(self.count):
            self.read += 1
            yield b"number,text\n" + chunk if index == 0 else chunk


# Uploading ----------------------------------------------------------------------------------


async def test_an_upload_answers_201_with_the_new_version(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project, platform: Platform
) -> None:
    content = b"id,score,zip\n1,2.5,02134\n2,3.5,10001\n"
    before = await footprint(platform)

    response = await post(client, auth, project, "scores", content)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    version = body["version"]
    assert version["number"] == 1
    assert version["contentSha256"] == hashlib.sha256(content).hexdigest()
    assert version["sourceFormat"] == "csv"
    assert version["rowCount"] == 2
    assert version["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "score", "type": "float"},
        {"name": "zip", "type": "string"},
    ]
    after = await footprint(platform)
    # One version, one sealed object; nothing left in staging or scratch.
    assert after.versions == before.versions + 1
    assert after.artifact_objects == before.artifact_objects + 1
    assert after.artifact_staging == before.artifact_staging == 0
    assert after.scratch_files == before.scratch_files == 0


NODE = """
query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on DatasetVersion { number contentSha256 dataset { id name } }
    ... on Dataset { name }
  }
}
"""


async def test_the_answer_names_the_version_as_graphql_does(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project, platform: Platform
) -> None:
    response = await post(client, auth, project, "named", fresh_csv())

    assert response.status_code == 201, response.text
    version = response.json()["version"]
    assert sorted(version) == [
        "columns",
        "contentSha256",
        "createdAt",
        "datasetId",
        "id",
        "number",
        "rowCount",
        "sizeBytes",
        "sourceFormat",
        "uuid",
    ]
    async with platform.metadata.acquire() as connection:
        stored = await connection.fetchrow(
            "SELECT v.id, v.dataset_id FROM dataset_versions v JOIN datasets d "
            "ON d.id = v.dataset_id WHERE d.project_id = $1 AND d.name = 'named'",
            project.id,
        )
    assert version["uuid"] == str(stored["id"])
    # `id` and `datasetId` are the global ids GraphQL answers and takes, as they are.
    by_id = await client.post(
        "/graphql", json={"query": NODE, "variables": {"id": version["id"]}}, headers=auth
    )
    assert by_id.json() == {
        "data": {
            "node": {
                "__typename": "DatasetVersion",
                "id": version["id"],
                "number": 1,
                "contentSha256": version["contentSha256"],
                "dataset": {"id": version["datasetId"], "name": "named"},
            }
        }
    }
    dataset = await client.post(
        "/graphql", json={"query": NODE, "variables": {"id": version["datasetId"]}}, headers=auth
    )
    assert dataset.json()["data"]["node"] == {
        "__typename": "Dataset",
        "id": version["datasetId"],
        "name": "named",
    }
    assert version["id"] != version["uuid"]


async def test_the_same_content_again_answers_200_with_the_existing_version(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project, platform: Platform
) -> None:
    content = fresh_csv()
    first = await post(client, auth, project, "again", content)
    before = await footprint(platform)

    again = await post(client, auth, project, "again", content)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["version"]["id"] == first.json()["version"]["id"]
    assert await footprint(platform) == before


async def test_versions_are_numbered_in_order(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    numbers = [
        (await post(client, auth, project, "ordered", fresh_csv())).json()["version"]["number"]
        for _ in range(3)
    ]

    assert numbers == [1, 2, 3]


async def test_a_parquet_body_is_detected_from_its_bytes(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    content = parquet_bytes(pa.table({"n": [1, 2, 3], "marker": [uuid.uuid4().hex] * 3}))

    response = await post(client, auth, project, "parquet", content)

    assert response.status_code == 201
    assert response.json()["version"]["sourceFormat"] == "parquet"
    assert response.json()["version"]["rowCount"] == 3


async def test_query_parameters_declare_encoding_delimiter_header_and_description(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project, platform: Platform
) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    content = f"José|München|{marker}\nZoë|Zürich|{marker}\n".encode("latin-1")
    dataset = unique("declared")

    response = await post(
        client,
        auth,
        project,
        dataset,
        content,
        format="csv",
        encoding="latin-1",
        delimiter="|",
        header="false",
        description="Cities, in Latin-1",
    )

    assert response.status_code == 201, response.text
    version = response.json()["version"]
    assert version["rowCount"] == 2
    assert [column["name"] for column in version["columns"]] == [
        "column_1",
        "column_2",
        "column_3",
    ]
    async with platform.metadata.acquire() as connection:
        description = await connection.fetchval(
            "SELECT description FROM datasets WHERE project_id = $1 AND name = $2",
            project.id,
            dataset,
        )
    assert description == "Cities, in Latin-1"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "UTF-16BE", "utf-32"])
async def test_a_declared_utf_16_or_32_file_is_read_as_text(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project, encoding: str
) -> None:
    text = f"city,visitors\nMünchen,{len(encoding)}\nZoë,7\n"
    content = text.encode(encoding)

    response = await post(
        client, auth, project, unique("wide"), content, format="csv", encoding=encoding
    )

    assert response.status_code == 201, response.text
    version = response.json()["version"]
    assert version["rowCount"] == 2
    assert [column["name"] for column in version["columns"]] == ["city", "visitors"]


async def test_a_utf_16_file_holding_a_nul_character_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project, platform: Platform
) -> None:
    before = await footprint(platform)
    content = "a,b\n1,x\x00y\n".encode("utf-16")

    response = await post(client, auth, project, unique("nul"), content, encoding="utf-16")

    assert response.status_code == 400, response.text
    assert "binary" in response.json()["error"]["message"]
    assert await footprint(platform) == before


async def test_header_true_reads_the_first_row_as_names(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    content = f"10,20\n1,{uuid.uuid4().int % 1000}\n".encode()

    response = await post(client, auth, project, unique("header"), content, header="true")

    assert response.status_code == 201
    assert [column["name"] for column in response.json()["version"]["columns"]] == ["10", "20"]
    assert response.json()["version"]["rowCount"] == 1


# Bad input ----------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
LATE_BAD_UTF8 = b"n,label\n" + b"".join(b"%d,word\n" % n for n in range(20_000)) + b"1,caf\xe9\n"

BAD_UPLOADS: dict[str, tuple[bytes, dict[str, str], str, str]] = {
    "ragged-rows": (b"a,b\n1,2\n3\n", {}, "file", "ragged rows"),
    "invalid-utf8-early": (b"a,b\n1,caf\xe9\n", {}, "encoding", "not valid utf-8"),
    "invalid-utf8-late": (LATE_BAD_UTF8, {}, "encoding", "not valid utf-8"),
    "empty": (b"", {}, "file", "empty"),
    "header-only": (b"a,b,c\n", {}, "file", "no rows"),
    "duplicate-columns": (b"a,b,a\n1,2,3\n", {}, "file", "duplicate column names: a"),
    "png": (PNG, {}, "file", "neither csv nor parquet"),
    "png-declared-csv": (PNG, {"format": "csv"}, "file", "neither csv nor parquet"),
    "csv-declared-parquet": (b"a\n1\n", {"format": "parquet"}, "file", "declared parquet"),
    "unknown-format": (b"a\n1\n", {"format": "xlsx"}, "format", "format must be csv, parquet"),
    "bad-header-flag": (b"a\n1\n", {"header": "yes"}, "header", "header must be true or false"),
    "unknown-encoding": (b"a\n1\n", {"encoding": "nope-8"}, "encoding", "unknown encoding"),
    "long-delimiter": (b"a\n1\n", {"delimiter": "::"}, "delimiter", "one character"),
    # Python's codec registry holds more than text encodings; none of these may decode a file.
    **{
        f"codec-{codec}": (b"a\n1\n", {"encoding": codec}, "encoding", "unknown encoding")
        for codec in ("rot13", "base64", "hex", "bz2_codec", "zlib_codec", "uu_codec", "punycode")
    },
    "encoding-with-nul": (b"a\n1\n", {"encoding": "utf-8\x00"}, "encoding", "nul character"),
    "delimiter-nul": (b"a\n1\n", {"delimiter": "\x00"}, "delimiter", "nul character"),
    "very-long-encoding": (b"a\n1\n", {"encoding": "u" * 10_000}, "encoding", "unknown encoding"),
    **{
        f"delimiter-{name}": (b"a\n1\n", {"delimiter": value}, "delimiter", "one character")
        for name, value in (
            ("quote", '"'),
            ("newline", "\n"),
            ("non-ascii", "\u00e9"),
            ("multi-byte", "\u2603"),
        )
    },
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
async def test_bad_input_answers_400_with_field_errors_and_leaves_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
    case: str,
) -> None:
    content, params, field, complaint = BAD_UPLOADS[case]
    before = await footprint(platform)

    response = await post(client, auth, project, unique("bad"), content, **params)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    assert complaint in error["message"].lower()
    assert field in error["fieldErrors"]
    assert await footprint(platform) == before


@pytest.mark.parametrize("name", ["Upper", "under_", ".hidden", "sp ace", "x" * 101])
async def test_an_invalid_dataset_name_answers_400_and_leaves_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
    name: str,
) -> None:
    before = await footprint(platform)

    response = await post(client, auth, project, name, fresh_csv())

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    assert "name" in response.json()["error"]["fieldErrors"]
    assert await footprint(platform) == before


async def test_an_unknown_project_is_not_found(
    client: httpx.AsyncClient, auth: dict[str, str], platform: Platform
) -> None:
    before = await footprint(platform)

    response = await client.post(
        f"/v1/projects/{unique('nowhere')}/datasets/data/versions",
        content=fresh_csv(),
        headers=auth,
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert await footprint(platform) == before


async def test_an_upload_without_credentials_is_refused(
    client: httpx.AsyncClient, project: projects.Project, platform: Platform
) -> None:
    before = await footprint(platform)

    response = await client.post(versions_url(project, "anonymous"), content=fresh_csv())

    assert response.status_code == 401
    assert await footprint(platform) == before


# The size limit and streaming -----------------------------------------------------------------


async def test_a_chunked_body_past_the_limit_is_refused_with_413_without_reading_it_all(
    limited_client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
) -> None:
    chunk_size = 16 * 1024
    body = CountedChunks(count=256, size=chunk_size)  # 4 MiB, 64 times the limit
    before = await footprint(platform)

    # An async iterable body has no Content-Length: httpx sends it chunked.
    response = await post(limited_client, auth, project, unique("chunked"), body)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert str(UPLOAD_LIMIT) in response.json()["error"]["message"]
    # Refused as soon as it passed the limit: the rest of the body was never read.
    assert body.read <= UPLOAD_LIMIT // chunk_size + 2
    assert await footprint(platform) == before


async def test_a_content_length_over_the_limit_is_refused_before_reading_the_body(
    limited_client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
) -> None:
    body = CountedChunks(count=8, size=UPLOAD_LIMIT)
    before = await footprint(platform)

    response = await post(
        limited_client,
        auth,
        project,
        unique("declared-large"),
        body,
        headers={"content-length": str(8 * UPLOAD_LIMIT)},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body.read == 0
    assert await footprint(platform) == before


async def test_a_body_within_the_limit_is_accepted_by_the_limited_api(
    limited_client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    body = CountedChunks(count=3, size=16 * 1024)

    response = await post(limited_client, auth, project, unique("fits"), body)

    assert response.status_code == 201, response.text
    assert body.read == 3
    assert response.json()["version"]["columns"] == [
        {"name": "number", "type": "integer"},
        {"name": "text", "type": "string"},
    ]


async def test_a_10_mb_upload_streams_through(
    client: httpx.AsyncClient, auth: dict[str, str], project: projects.Project
) -> None:
    # Text only: the distinct count of a number column sorts it with numpy, whose buffers
    # tracemalloc sees, and that is the profile's memory, not the body's.
    body = CountedChunks(count=40, size=256 * 1024, line=b"abcdefg,hijklmno\n")  # 10 MiB
    body_size = body.rows * len(body.line)
    # Python's allocations (Arrow's own buffers are not traced): a body read into memory
    # whole would be one object as large as the body.
    tracemalloc.start()

    try:
        response = await post(client, auth, project, unique("ten-mb"), body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 201, response.text
    assert body.read == 40
    version = response.json()["version"]
    assert version["rowCount"] == body.rows
    assert peak < body_size / 2, f"{peak} bytes allocated at the peak for a {body_size} byte body"
    assert version["columns"][0] == {"name": "number", "type": "string"}
