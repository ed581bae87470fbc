"""Projects through GraphQL: create, list with cursors, get, node(id), archive, and their audit."""

from __future__ import annotations

import httpx
import pytest

from aiaas.core.platform import Platform
from support import data_of, error_codes, graphql

CREATE = """
mutation Create($input: CreateProjectInput!) {
  createProject(input: $input) {
    __typename
    ... on CreateProjectSuccess {
      project { id slug name description isArchived createdBy { username } }
    }
    ... on InvalidInputError { message code fieldErrors { field message } }
    ... on ConflictError { message code }
  }
}
"""

ARCHIVE = """
mutation Archive($id: ID!) {
  archiveProject(id: $id) {
    __typename
    ... on ArchiveProjectSuccess { project { slug isArchived archivedAt } }
    ... on Error { message code }
  }
}
"""

LIST = """
query List($first: Int!, $after: String, $includeArchived: Boolean! = false) {
  projects(first: $first, after: $after, includeArchived: $includeArchived) {
    edges { cursor node { slug } }
    nodes { slug }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


async def create(client: httpx.AsyncClient, token: str, slug: str, **fields: str) -> dict:
    variables = {"input": {"slug": slug, "name": fields.get("name", slug.title()), **fields}}
    return data_of(await graphql(client, CREATE, variables, token=token))["createProject"]


async def audit_rows(platform: Platform, action: str) -> list[dict]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT * FROM audit_events WHERE action = $1 ORDER BY id", action
        )
    return [dict(row) for row in rows]


async def test_create_project_returns_it_and_writes_one_audit_event(
    client: httpx.AsyncClient, admin_token: str, platform: Platform
) -> None:
    result = await create(client, admin_token, "fraud", description="card fraud models")

    assert result["__typename"] == "CreateProjectSuccess"
    project = result["project"]
    assert project["slug"] == "fraud"
    assert project["description"] == "card fraud models"
    assert project["isArchived"] is False
    assert project["createdBy"] == {"username": "admin"}
    events = [e for e in await audit_rows(platform, "project.create") if e["outcome"] == "success"]
    assert [e["details"]["slug"] for e in events] == ["fraud"]
    assert events[0]["actor_name"] == "admin"
    assert events[0]["request_id"]


async def test_duplicate_slug_is_a_conflict_that_changes_nothing(
    client: httpx.AsyncClient, admin_token: str, platform: Platform
) -> None:
    await create(client, admin_token, "dupe")
    result = await create(client, admin_token, "dupe", name="Other")

    assert result["__typename"] == "ConflictError"
    assert "dupe" in result["message"]
    async with platform.metadata.acquire() as connection:
        names = await connection.fetch("SELECT name FROM projects WHERE slug = 'dupe'")
    assert [row["name"] for row in names] == ["Dupe"]
    failed = [e for e in await audit_rows(platform, "project.create") if e["outcome"] == "failed"]
    assert failed and failed[-1]["details"]["code"] == "CONFLICT"


@pytest.mark.parametrize(
    ("slug", "name", "bad_fields"),
    [
        ("-leading-hyphen", "x", ["slug"]),
        ("UPPER", "x", ["slug"]),
        ("a" * 64, "x", ["slug"]),
        ("ok", "   ", ["name"]),
        ("has space", "", ["name", "slug"]),
    ],
)
async def test_invalid_project_input_is_typed_and_creates_nothing(
    client: httpx.AsyncClient,
    admin_token: str,
    platform: Platform,
    slug: str,
    name: str,
    bad_fields: list[str],
) -> None:
    result = await create(client, admin_token, slug, name=name)

    assert result["__typename"] == "InvalidInputError"
    assert result["code"] == "BAD_USER_INPUT"
    assert [error["field"] for error in result["fieldErrors"]] == bad_fields
    async with platform.metadata.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM projects WHERE slug = $1", slug) == 0


async def test_projects_page_through_with_cursors(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    for index in range(5):
        await create(client, admin_token, f"paged-{index}")
    everything = data_of(await graphql(client, LIST, {"first": 100}, token=admin_token))
    all_slugs = [node["slug"] for node in everything["projects"]["nodes"]]

    seen: list[str] = []
    after = None
    while True:
        page = data_of(
            await graphql(client, LIST, {"first": 2, "after": after}, token=admin_token)
        )["projects"]
        seen += [edge["node"]["slug"] for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]

    assert seen == all_slugs
    assert [f"paged-{index}" for index in range(5)] == [s for s in seen if s.startswith("paged-")]


@pytest.mark.parametrize("first", [-1, 101, 1000])
async def test_page_size_over_the_limit_is_refused(
    client: httpx.AsyncClient, admin_token: str, first: int
) -> None:
    status, body = await graphql(client, LIST, {"first": first}, token=admin_token)

    assert status == 200
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_malformed_cursor_is_refused(client: httpx.AsyncClient, admin_token: str) -> None:
    _, body = await graphql(client, LIST, {"first": 5, "after": "not-a-cursor"}, token=admin_token)

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "cursor" in body["errors"][0]["message"]


async def test_project_by_slug_and_by_node_id(client: httpx.AsyncClient, admin_token: str) -> None:
    created = (await create(client, admin_token, "lookup"))["project"]

    by_slug = data_of(
        await graphql(client, '{ project(slug: "lookup") { id name } }', token=admin_token)
    )
    assert by_slug["project"] == {"id": created["id"], "name": "Lookup"}
    by_node = data_of(
        await graphql(
            client,
            "query($id: ID!) { node(id: $id) { id ... on Project { slug } } }",
            {"id": created["id"]},
            token=admin_token,
        )
    )
    assert by_node["node"] == {"id": created["id"], "slug": "lookup"}
    missing = data_of(
        await graphql(client, '{ project(slug: "no-such-project") { id } }', token=admin_token)
    )
    assert missing["project"] is None


async def test_node_with_a_malformed_id_is_a_typed_error(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    _, body = await graphql(client, '{ node(id: "%%%") { id } }', token=admin_token)

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["fieldErrors"] == {
        "id": "expected a global id (such as 'UHJvamVj...'), got text that is not a global id"
    }


@pytest.mark.parametrize(
    ("operation", "argument"),
    [
        (
            'mutation { removeProjectMember(input: {project: "%%%", username: "u"}) '
            "{ __typename } }",
            "input.project",
        ),
        (
            'mutation { submitTrainingJob(input: {datasetVersion: "%%%", trainer: "x", '
            'target: "y"}) { __typename } }',
            "input.datasetVersion",
        ),
        ('{ node(id: "%%%") { id } }', "id"),
    ],
    ids=["input-project", "input-dataset-version", "node-id"],
)
async def test_a_malformed_id_is_refused_naming_the_argument_it_came_in(
    client: httpx.AsyncClient, admin_token: str, operation: str, argument: str
) -> None:
    _, body = await graphql(client, operation, token=admin_token)

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert list(error["extensions"]["fieldErrors"]) == [argument]
    assert error["extensions"]["fieldErrors"][argument].endswith("got text that is not a global id")


async def test_archive_moves_the_project_once_and_hides_it_from_the_default_list(
    client: httpx.AsyncClient, admin_token: str, platform: Platform
) -> None:
    project = (await create(client, admin_token, "retired"))["project"]

    first = data_of(await graphql(client, ARCHIVE, {"id": project["id"]}, token=admin_token))
    second = data_of(await graphql(client, ARCHIVE, {"id": project["id"]}, token=admin_token))

    assert first["archiveProject"]["__typename"] == "ArchiveProjectSuccess"
    assert first["archiveProject"]["project"]["isArchived"] is True
    assert second["archiveProject"]["__typename"] == "ConflictError"
    listed = data_of(await graphql(client, LIST, {"first": 100}, token=admin_token))
    assert "retired" not in [node["slug"] for node in listed["projects"]["nodes"]]
    with_archived = data_of(
        await graphql(client, LIST, {"first": 100, "includeArchived": True}, token=admin_token)
    )
    assert "retired" in [node["slug"] for node in with_archived["projects"]["nodes"]]
    outcomes = [e["outcome"] for e in await audit_rows(platform, "project.archive")]
    assert outcomes == ["success"]
    # The second is refused before it reaches the domain: the project is read-only now.
    refused = [e["outcome"] for e in await audit_rows(platform, "graphql.archiveProject")]
    assert refused == ["failed"]


async def test_archiving_an_unknown_project_is_not_found(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    import uuid

    from aiaas.graphql.relay import to_global_id

    unknown = to_global_id("Project", uuid.uuid4())
    data = data_of(await graphql(client, ARCHIVE, {"id": unknown}, token=admin_token))

    assert data["archiveProject"]["__typename"] == "NotFoundError"
