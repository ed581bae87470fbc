"""Uploading datasets through GraphQL (`uploadDataset`, a multipart request that needs the CSRF
header) and cleaning them (`transformDatasetVersion`): each upload is an immutable version,
normalized to Parquet and sealed in the artifact store, identified by its content's sha256, with
its schema, profile and preview. Bad input is an `InvalidInputError` with field errors that
creates no version and leaves no file behind."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.app import create_app
from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity import projects
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from aiaas.graphql.relay import from_global_id, to_global_id
from aiaas.graphql.view import CSRF_HEADER
from support import data_of, footprint, graphql, unique
from upload_files import fresh_csv, parquet_bytes

VERSION_FIELDS = """
fragment VersionFields on DatasetVersion {
  id number contentSha256 sourceFormat rowCount sizeBytes
  columns { name type }
  columnStats preview transformation
  parent { id number }
  dataset { name description }
}
"""
RESULT_FIELDS = """
  __typename
  ... on DatasetVersionSuccess { created version { ...VersionFields } }
  ... on InvalidInputError { message code fieldErrors { field message } }
  ... on Error { message code }
"""
UPLOAD = f"""
mutation Upload($input: UploadDatasetInput!) {{
  uploadDataset(input: $input) {{ {RESULT_FIELDS} }}
}}
{VERSION_FIELDS}
"""
TRANSFORM = f"""
mutation Transform($input: TransformDatasetVersionInput!) {{
  transformDatasetVersion(input: $input) {{ {RESULT_FIELDS} }}
}}
{VERSION_FIELDS}
"""
VERSIONS = """
query Versions($slug: String!, $name: String!) {
  project(slug: $slug) { dataset(name: $name) { versions { nodes { id number } } } }
}
"""


# Fixtures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    principal: Principal
    token: str


@pytest.fixture(scope="module")
async def owner(platform: Platform, admin_token: str) -> Owner:
    async with platform.metadata.acquire() as connection:
        principal = await verify_token(connection, admin_token, "test")
    return Owner(principal=principal, token=admin_token)


@pytest.fixture(scope="module")
async def project(platform: Platform, owner: Owner) -> projects.Project:
    return await projects.create_project(
        platform, owner.principal, slug=unique("datasets"), name="Datasets"
    )


UPLOAD_LIMIT = 1024


@pytest.fixture(scope="module")
async def limited_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose uploads may be at most `UPLOAD_LIMIT` bytes; same database and
    data directory as the module's platform."""
    limited = create_platform(config.model_copy(update={"upload_max_bytes": UPLOAD_LIMIT}))
    await limited.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform=limited))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            yield client
    finally:
        await limited.stop()


# Helpers ------------------------------------------------------------------------------------


async def post_upload(
    client: httpx.AsyncClient,
    token: str,
    project: projects.Project,
    name: str,
    content: bytes,
    *,
    filename: str = "data.csv",
    csrf: bool = True,
    **options: Any,
) -> httpx.Response:
    """A GraphQL multipart request (the spec's `operations` and `map` fields) for uploadDataset."""
    variables = {
        "input": {
            "project": to_global_id("Project", project.id),
            "name": name,
            "file": None,
            **options,
        }
    }
    headers = {"authorization": f"Bearer {token}"}
    if csrf:
        headers[CSRF_HEADER] = "1"
    return await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": UPLOAD, "variables": variables}),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": (filename, content, "application/octet-stream")},
        headers=headers,
    )


async def upload(
    client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    name: str,
    content: bytes,
    **options: Any,
) -> dict[str, Any]:
    """The uploadDataset result (success or expected error); fails the test on GraphQL errors."""
    response = await post_upload(client, owner.token, project, name, content, **options)
    result: dict[str, Any] = data_of((response.status_code, response.json()))["uploadDataset"]
    return result


async def uploaded(
    client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    name: str,
    content: bytes,
    **options: Any,
) -> dict[str, Any]:
    result = await upload(client, owner, project, name, content, **options)
    assert result["__typename"] == "DatasetVersionSuccess", result
    return result


async def transform(
    client: httpx.AsyncClient, owner: Owner, version_id: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    variables = {"input": {"version": version_id, "steps": steps}}
    result: dict[str, Any] = data_of(
        await graphql(client, TRANSFORM, variables, token=owner.token)
    )["transformDatasetVersion"]
    return result


async def artifact_key_of(platform: Platform, version_global_id: str) -> str:
    _, version_id = from_global_id(version_global_id)
    async with platform.metadata.acquire() as connection:
        key: str = await connection.fetchval(
            "SELECT artifact_key FROM dataset_versions WHERE id = $1", version_id
        )
    return key


def field_errors(result: dict[str, Any]) -> dict[str, str]:
    return {error["field"]: error["message"] for error in result["fieldErrors"]}


# Uploading ----------------------------------------------------------------------------------

PEOPLE_CSV = (
    b"id,name,score,active,joined,zip\n"
    b"1,Ada,91.5,true,2024-01-02 10:00:00,02134\n"
    b"2,Grace,78.0,false,2024-02-03 11:30:00,10001\n"
    b"3,Linus,,true,2024-03-04 12:45:00,00501\n"
)


async def test_a_csv_upload_creates_a_version_with_schema_profile_and_preview(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    result = await uploaded(client, owner, project, "people", PEOPLE_CSV, description="People")

    assert result["created"] is True
    version = result["version"]
    assert version["number"] == 1
    assert version["contentSha256"] == hashlib.sha256(PEOPLE_CSV).hexdigest()
    assert version["sourceFormat"] == "csv"
    assert version["rowCount"] == 3
    assert version["sizeBytes"] > 0
    assert version["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "float"},
        {"name": "active", "type": "boolean"},
        {"name": "joined", "type": "timestamp"},
        {"name": "zip", "type": "string"},
    ]
    stats = version["columnStats"]
    assert stats["score"]["nullFraction"] == pytest.approx(1 / 3)
    assert stats["score"]["min"] == 78.0
    assert stats["score"]["max"] == 91.5
    assert stats["score"]["mean"] == pytest.approx(84.75)
    assert stats["score"]["std"] == pytest.approx(6.75)
    # Two scores, 78.0 and 91.5: the first bin and the last, the null left out.
    histogram = stats["score"]["histogram"]
    assert (histogram["edges"][0], histogram["edges"][-1]) == (78.0, 91.5)
    assert (histogram["counts"][0], histogram["counts"][-1], sum(histogram["counts"])) == (1, 1, 2)
    assert stats["id"]["distinctCount"] == 3
    assert stats["name"]["topValues"][0]["count"] == 1
    assert version["preview"][0] == {
        "id": 1,
        "name": "Ada",
        "score": 91.5,
        "active": True,
        "joined": "2024-01-02T10:00:00",
        "zip": "02134",
    }
    assert version["parent"] is None
    assert version["transformation"] is None
    assert version["dataset"] == {"name": "people", "description": "People"}


async def test_the_stored_artifact_is_sealed_normalized_parquet(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project, platform: Platform
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    content = f"id,secret\n1,{marker}\n2,{marker[::-1]}\n".encode()
    version = (await uploaded(client, owner, project, "sealed", content))["version"]
    key = await artifact_key_of(platform, version["id"])

    stored = (platform.config.resolved_artifact_dir / "objects" / key[:2] / key).read_bytes()

    # Sealed: neither Parquet nor any of the uploaded text can be read off the disk.
    assert not stored.startswith(b"PAR1")
    assert not stored.endswith(b"PAR1")
    assert marker.encode() not in stored
    assert marker[::-1].encode() not in stored
    assert b"secret" not in stored
    # Unsealed with the project's key, it is the normalized Parquet of the upload.
    plaintext = b"".join([chunk async for chunk in platform.service(VAULT).open(project.id, key)])
    assert plaintext.startswith(b"PAR1")
    table = pq.read_table(io.BytesIO(plaintext))
    assert table.to_pydict() == {"id": [1, 2], "secret": [marker, marker[::-1]]}


async def test_an_upload_adds_one_version_and_one_object_and_leaves_no_scratch_files(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project, platform: Platform
) -> None:
    before = await footprint(platform)

    await uploaded(client, owner, project, unique("counted"), fresh_csv())

    after = await footprint(platform)
    assert after.versions == before.versions + 1
    assert after.datasets == before.datasets + 1
    assert after.artifact_objects == before.artifact_objects + 1
    assert after.artifact_staging == before.artifact_staging == 0
    assert after.scratch_files == before.scratch_files == 0


async def test_the_same_content_again_answers_the_existing_version(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project, platform: Platform
) -> None:
    content = fresh_csv()
    first = await uploaded(client, owner, project, "repeated", content)
    before = await footprint(platform)

    # Whatever the file is called, the content is what identifies it.
    again = await uploaded(client, owner, project, "repeated", content, filename="other.txt")

    assert again["created"] is False
    assert again["version"]["id"] == first["version"]["id"]
    assert again["version"]["number"] == 1
    after = await footprint(platform)
    assert after.versions == before.versions
    assert after.artifact_objects == before.artifact_objects


async def test_versions_are_numbered_per_dataset(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    numbers = [
        (await uploaded(client, owner, project, "numbered", fresh_csv()))["version"]["number"]
        for _ in range(3)
    ]
    other = await uploaded(client, owner, project, "numbered-other", fresh_csv())

    assert numbers == [1, 2, 3]
    assert other["version"]["number"] == 1
    listed = data_of(
        await graphql(
            client, VERSIONS, {"slug": project.slug, "name": "numbered"}, token=owner.token
        )
    )
    assert [node["number"] for node in listed["project"]["dataset"]["versions"]["nodes"]] == [
        1,
        2,
        3,
    ]


async def test_the_same_content_in_another_dataset_is_a_version_of_its_own(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    content = fresh_csv()
    first = await uploaded(client, owner, project, "twin-a", content)

    second = await uploaded(client, owner, project, "twin-b", content)

    assert second["created"] is True
    assert second["version"]["id"] != first["version"]["id"]
    assert second["version"]["contentSha256"] == first["version"]["contentSha256"]


async def test_a_parquet_upload_keeps_its_types(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "price": [9.5, None, 3.25],
            "code": ["007", "042", "100"],
            "marker": [uuid.uuid4().hex] * 3,
        }
    )
    content = parquet_bytes(table)

    version = (await uploaded(client, owner, project, "parquet", content, filename="x.parquet"))[
        "version"
    ]

    assert version["sourceFormat"] == "parquet"
    assert version["contentSha256"] == hashlib.sha256(content).hexdigest()
    assert version["rowCount"] == 3
    assert version["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "price", "type": "float"},
        {"name": "code", "type": "string"},
        {"name": "marker", "type": "string"},
    ]
    assert version["columnStats"]["price"]["nullFraction"] == pytest.approx(1 / 3)


async def test_the_format_comes_from_the_bytes_not_the_name(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    parquet = parquet_bytes(pa.table({"n": [1, 2], "marker": [uuid.uuid4().hex] * 2}))

    named_csv = await uploaded(client, owner, project, "by-bytes", parquet, filename="data.csv")
    named_parquet = await uploaded(
        client, owner, project, "by-bytes", fresh_csv(), filename="data.parquet"
    )

    assert named_csv["version"]["sourceFormat"] == "parquet"
    assert named_parquet["version"]["sourceFormat"] == "csv"


async def test_a_declared_encoding_delimiter_and_header_are_used(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    content = f"José;München;{marker}\nZoë;Zürich;{marker}\n".encode("latin-1")

    result = await uploaded(
        client,
        owner,
        project,
        "declared",
        content,
        encoding="latin-1",
        delimiter=";",
        header=False,
    )

    version = result["version"]
    assert version["rowCount"] == 2
    assert [column["name"] for column in version["columns"]] == [
        "column_1",
        "column_2",
        "column_3",
    ]
    assert version["preview"][0] == {"column_1": "José", "column_2": "München", "column_3": marker}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("encoding", "rot13"),
        ("encoding", "bz2_codec"),
        ("delimiter", "\u2603"),
        ("delimiter", "ab"),
    ],
)
async def test_a_declared_codec_or_delimiter_that_is_not_text_is_refused(
    client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    platform: Platform,
    option: str,
    value: str,
) -> None:
    before = await footprint(platform)

    result = await upload(client, owner, project, "declared", fresh_csv(), **{option: value})

    assert result["__typename"] == "InvalidInputError", result
    assert [error["field"] for error in result["fieldErrors"]] == [option]
    assert await footprint(platform) == before


async def test_a_declared_format_that_the_bytes_contradict_is_refused(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project, platform: Platform
) -> None:
    before = await footprint(platform)

    result = await upload(client, owner, project, "declared", fresh_csv(), format="PARQUET")

    assert result["__typename"] == "InvalidInputError"
    assert "declared parquet but its content is csv" in result["message"]
    assert await footprint(platform) == before


async def test_a_multipart_upload_without_the_csrf_header_is_refused(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project, platform: Platform
) -> None:
    before = await footprint(platform)

    response = await post_upload(
        client, owner.token, project, unique("no-csrf"), fresh_csv(), csrf=False
    )

    assert response.status_code == 400
    assert CSRF_HEADER in response.text
    assert await footprint(platform) == before


# Bad input ----------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
LATE_BAD_UTF8 = b"n,label\n" + b"".join(b"%d,word\n" % n for n in range(20_000)) + b"1,caf\xe9\n"

BAD_FILES = {
    "ragged-rows": (b"a,b\n1,2\n3,4,5\n", "file", "ragged rows"),
    "invalid-utf8-early": (b"a,b\n1,caf\xe9\n", "encoding", "not valid utf-8"),
    "invalid-utf8-late": (LATE_BAD_UTF8, "encoding", "not valid utf-8"),
    "empty": (b"", "file", "empty"),
    "header-only": (b"a,b,c\n", "file", "no rows"),
    "duplicate-columns": (b"a,b,a\n1,2,3\n", "file", "duplicate column names: a"),
    "png-named-csv": (PNG, "file", "neither csv nor parquet"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
async def test_a_bad_file_is_refused_with_field_errors_and_leaves_nothing(
    client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    platform: Platform,
    case: str,
) -> None:
    content, field, complaint = BAD_FILES[case]
    name = unique("bad")
    before = await footprint(platform)

    result = await upload(client, owner, project, name, content)

    assert result["__typename"] == "InvalidInputError", result
    assert result["code"] == "BAD_USER_INPUT"
    assert complaint in result["message"].lower()
    assert field in field_errors(result)
    assert await footprint(platform) == before


@pytest.mark.parametrize(
    "name", ["Upper", "has space", "../escape", "-leading", "trailing.", "x" * 101, "é"]
)
async def test_an_invalid_dataset_name_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    platform: Platform,
    name: str,
) -> None:
    before = await footprint(platform)

    result = await upload(client, owner, project, name, fresh_csv())

    assert result["__typename"] == "InvalidInputError"
    assert result["message"] == "invalid dataset name"
    assert "name" in field_errors(result)
    assert await footprint(platform) == before


async def test_a_file_over_the_size_limit_is_refused_and_leaves_nothing(
    limited_client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    platform: Platform,
) -> None:
    rows = b"".join(b"%d,%d\n" % (n, n * n) for n in range(400))
    content = b"n,square\n" + rows
    assert len(content) > UPLOAD_LIMIT
    before = await footprint(platform)

    result = await upload(limited_client, owner, project, unique("big"), content)

    assert result["__typename"] == "InvalidInputError"
    assert f"larger than the limit of {UPLOAD_LIMIT} bytes" in result["message"]
    assert "file" in field_errors(result)
    assert await footprint(platform) == before


async def test_a_file_within_the_size_limit_is_accepted(
    limited_client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> None:
    content = fresh_csv()
    assert len(content) < UPLOAD_LIMIT

    result = await uploaded(limited_client, owner, project, unique("small"), content)

    assert result["version"]["rowCount"] == 3


@pytest.mark.parametrize(
    ("column", "outcome"),
    [
        (pa.array([Decimal("1.50"), Decimal("2.25")]), "DatasetVersionSuccess"),
        (pa.array([[1, 2], [3]]), "InvalidInputError"),
    ],
    ids=["decimal-is-stored", "list-is-refused"],
)
async def test_a_parquet_file_of_any_column_type_is_stored_or_refused_cleanly(
    client: httpx.AsyncClient,
    owner: Owner,
    project: projects.Project,
    platform: Platform,
    column: pa.Array,
    outcome: str,
) -> None:
    """Whatever its column types, a Parquet file gives a version or a typed error, never an
    unexpected one; and a refusal leaves nothing, not even the sealed artifact (which is
    written before the version row)."""
    content = parquet_bytes(pa.table({"value": column, "marker": [uuid.uuid4().hex] * 2}))
    before = await footprint(platform)

    result = await upload(client, owner, project, unique("typed"), content)

    assert result["__typename"] == outcome, result
    if outcome == "InvalidInputError":
        assert "file" in field_errors(result)
        assert await footprint(platform) == before
    else:
        assert json.dumps(result["version"]["columnStats"])
        assert (await footprint(platform)).versions == before.versions + 1


# Transforms ---------------------------------------------------------------------------------

MESSY_CSV = (
    b"id,age,city,zip\n"
    b"1,30,Paris,75001\n"
    b"2,,Lyon,69001\n"
    b"1,30,Paris,75001\n"
    b"3,45,,13001\n"
    b"4,17,Nice,x6000\n"
)


@pytest.fixture
async def messy(
    client: httpx.AsyncClient, owner: Owner, project: projects.Project
) -> dict[str, Any]:
    """Version 1 of a fresh dataset: duplicate rows, nulls, and a zip that is not a number."""
    version: dict[str, Any] = (await uploaded(client, owner, project, unique("messy"), MESSY_CSV))[
        "version"
    ]
    return version


async def test_a_transform_makes_a_new_version_with_its_lineage(
    client: httpx.AsyncClient, owner: Owner, messy: dict[str, Any]
) -> None:
    steps = [
        {"kind": "DROP_DUPLICATES"},
        {"kind": "IMPUTE_NULLS", "column": "age", "strategy": "MEAN"},
        {"kind": "DROP_NULLS", "columns": ["city"]},
        {"kind": "FILTER_ROWS", "expression": "age >= 18"},
    ]

    result = await transform(client, owner, messy["id"], steps)

    assert result["__typename"] == "DatasetVersionSuccess", result
    assert result["created"] is True
    version = result["version"]
    assert version["number"] == 2
    assert version["sourceFormat"] == "derived"
    assert version["parent"] == {"id": messy["id"], "number": 1}
    assert version["dataset"]["name"] == messy["dataset"]["name"]
    assert version["transformation"] == [
        {"kind": "drop_duplicates"},
        {"kind": "impute_nulls", "column": "age", "strategy": "mean"},
        {"kind": "drop_nulls", "columns": ["city"]},
        {"kind": "filter_rows", "expression": "age >= 18"},
    ]
    # Duplicate of row 1 gone; row 2's age is the mean of 30, 45, 17; row 3 has no city;
    # row 4 is under 18.
    mean_age = (30 + 45 + 17) / 3
    assert version["rowCount"] == 2
    assert [row["id"] for row in version["preview"]] == [1, 2]
    assert version["preview"][1]["age"] == pytest.approx(mean_age)
    assert version["columnStats"]["age"]["nullFraction"] == 0.0


async def test_drop_duplicates_on_a_subset_and_a_cast(
    client: httpx.AsyncClient, owner: Owner, messy: dict[str, Any]
) -> None:
    steps = [
        {"kind": "DROP_DUPLICATES", "columns": ["city"]},
        {"kind": "CAST", "column": "id", "dtype": "string"},
    ]

    version = (await transform(client, owner, messy["id"], steps))["version"]

    # Cities: Paris, Lyon, Paris (again), null, Nice: the first of each is kept, in order.
    assert [row["id"] for row in version["preview"]] == ["1", "2", "3", "4"]
    assert {"name": "id", "type": "string"} in version["columns"]


async def test_impute_with_a_constant_and_the_median(
    client: httpx.AsyncClient, owner: Owner, messy: dict[str, Any]
) -> None:
    steps = [
        {"kind": "IMPUTE_NULLS", "column": "city", "strategy": "CONSTANT", "value": "unknown"},
        {"kind": "IMPUTE_NULLS", "column": "age", "strategy": "MEDIAN"},
    ]

    version = (await transform(client, owner, messy["id"], steps))["version"]

    assert [row["city"] for row in version["preview"]] == [
        "Paris",
        "Lyon",
        "Paris",
        "unknown",
        "Nice",
    ]
    assert version["preview"][1]["age"] == 30
    assert version["rowCount"] == 5


async def test_the_same_transform_again_answers_the_existing_version(
    client: httpx.AsyncClient, owner: Owner, messy: dict[str, Any], platform: Platform
) -> None:
    steps = [{"kind": "DROP_DUPLICATES"}]
    first = await transform(client, owner, messy["id"], steps)
    before = await footprint(platform)

    again = await transform(client, owner, messy["id"], steps)

    assert again["created"] is False
    assert again["version"]["id"] == first["version"]["id"]
    assert (await footprint(platform)).versions == before.versions


@pytest.mark.parametrize(
    ("steps", "field", "complaint"),
    [
        (
            [{"kind": "DROP_NULLS"}, {"kind": "FILTER_ROWS", "expression": "age >= "}],
            "steps.1.expression",
            "steps.1.expression: expected a value, found the end at position 8",
        ),
        (
            [{"kind": "FILTER_ROWS", "expression": "__import__('os').system('true')"}],
            "steps.0.expression",
            # The whole text is tokenized first: the '.' is refused before any name is looked up.
            "steps.0.expression: unexpected character '.' at position 17",
        ),
        (
            [{"kind": "FILTER_ROWS", "expression": "height > 1"}],
            "steps.0.expression",
            "unknown column 'height'",
        ),
        (
            [{"kind": "CAST", "column": "zip", "dtype": "integer"}],
            "steps.0.dtype",
            "cannot cast zip to integer",
        ),
        (
            [{"kind": "IMPUTE_NULLS", "column": "city", "strategy": "MEAN"}],
            "steps.0.column",
            "mean needs a numeric column; city is not",
        ),
        (
            [{"kind": "IMPUTE_NULLS", "column": "age", "strategy": "CONSTANT", "value": "old"}],
            "steps.0.value",
            "does not fit column age",
        ),
        (
            # A list where the kind takes one column: the error says which field it takes.
            [{"kind": "IMPUTE_NULLS", "columns": ["age"], "strategy": "MEAN"}],
            "steps.0.columns",
            "impute_nulls works on one column: name it in 'column'",
        ),
        (
            [{"kind": "FILTER_ROWS", "expression": "age > 1000"}],
            "steps",
            "the transformation leaves no rows",
        ),
        ([], "steps", "at least one step"),
    ],
    ids=[
        "filter-syntax-error",
        "filter-with-python",
        "filter-unknown-column",
        "failing-cast",
        "mean-of-text",
        "constant-of-wrong-type",
        "columns-for-one-column",
        "no-rows-left",
        "no-steps",
    ],
)
async def test_a_transform_that_cannot_run_is_refused_and_creates_no_version(
    client: httpx.AsyncClient,
    owner: Owner,
    messy: dict[str, Any],
    platform: Platform,
    steps: list[dict[str, Any]],
    field: str,
    complaint: str,
) -> None:
    before = await footprint(platform)

    result = await transform(client, owner, messy["id"], steps)

    assert result["__typename"] == "InvalidInputError", result
    assert complaint in result["message"]
    assert field in field_errors(result)
    assert await footprint(platform) == before


async def test_a_transform_of_an_unknown_version_is_not_found(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    _, body = await graphql(
        client,
        TRANSFORM,
        {
            "input": {
                "version": to_global_id("DatasetVersion", uuid.uuid4()),
                "steps": [{"kind": "DROP_NULLS"}],
            }
        },
        token=owner.token,
    )

    # The policy looks the version up to find its project: an unknown one is not found.
    codes = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
    result = (body.get("data") or {}).get("transformDatasetVersion")
    assert codes == ["NOT_FOUND"] or (result or {}).get("__typename") == "NotFoundError", body
