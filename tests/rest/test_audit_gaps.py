"""Refused and failed REST calls leave audit rows, as refused GraphQL mutations do (issue 13):

- a dataset upload refused before it reaches the domain (403, a concealed or real 404, 409 for
  an archived project, 400 for a bad option or name, 413) leaves a `denied` or `failed`
  `dataset.upload` row, filed under the project when there is one;
- a request that fails with an unexpected exception leaves one `failed` `request.error` row with
  the request id that the 500 answer carried, and nothing of the request: no path, no body, no
  exception text;
- an unauthenticated request (401) is still not audited, so that anyone without credentials
  cannot write to the trail at will.

The unexpected failures are injected: a domain function of the real app raises."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aiaas.core.identity import projects
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.serving import InferenceServer
from aiaas.rest import uploads as upload_rest
from support import (
    Account,
    Team,
    audit_mark,
    audit_row_text,
    audit_rows_since,
    new_account,
    new_team,
    unique,
)
from upload_files import fresh_csv

SECRET_MARKER = "do-not-store-this"
"""Text that reaches the failing code only through the request: no row may hold it."""


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, unique("gaps"), (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def outsider(platform: Platform) -> Account:
    return await new_account(platform, "outsider")


@pytest.fixture(scope="module")
async def archived_team(platform: Platform) -> Team:
    archived = await new_team(platform, unique("archived"), (ProjectRole.DEVELOPER,))
    await projects.archive_project(
        platform, archived.members[ProjectRole.OWNER].principal, archived.project_id
    )
    return archived


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def upload(
    client: httpx.AsyncClient, token: str, slug: str, dataset: str = "data", **params: str
) -> httpx.Response:
    return await client.post(
        f"/v1/projects/{slug}/datasets/{dataset}/versions",
        content=fresh_csv(),
        params=params,
        headers=bearer(token),
    )


# Dataset uploads refused before the domain ----------------------------------------------------


async def test_an_upload_by_a_member_without_the_grant_is_denied_under_the_project(
    platform: Platform, client: httpx.AsyncClient, team: Team
) -> None:
    viewer = team.members[ProjectRole.VIEWER]
    mark = await audit_mark(platform)

    response = await upload(client, viewer.token, team.slug)

    assert response.status_code == 403, response.text
    rows = await audit_rows_since(platform, mark, action="dataset.upload")
    assert [(row["outcome"], row["project_id"], row["actor_id"]) for row in rows] == [
        ("denied", team.project_id, viewer.principal.user_id)
    ]
    assert rows[0]["request_id"] == response.headers["x-request-id"]
    assert rows[0]["details"]["code"] == "FORBIDDEN"
    assert viewer.token not in audit_row_text(rows[0])


async def test_an_upload_by_an_outsider_is_told_not_found_and_denied_under_the_project(
    platform: Platform, client: httpx.AsyncClient, team: Team, outsider: Account
) -> None:
    mark = await audit_mark(platform)

    response = await upload(client, outsider.token, team.slug)

    assert response.status_code == 404, response.text
    rows = await audit_rows_since(platform, mark, action="dataset.upload")
    # Filed under the project, so that its owners see the attempt; the outsider was told only
    # what a missing project gets.
    assert [(row["outcome"], row["project_id"]) for row in rows] == [("denied", team.project_id)]
    assert rows[0]["details"]["code"] == "NOT_FOUND"


async def test_an_upload_to_an_unknown_project_fails_on_the_platform_trail(
    platform: Platform, client: httpx.AsyncClient, team: Team
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    mark = await audit_mark(platform)

    response = await upload(client, developer.token, unique("nowhere"))

    assert response.status_code == 404, response.text
    rows = await audit_rows_since(platform, mark, action="dataset.upload")
    assert [(row["outcome"], row["project_id"]) for row in rows] == [("failed", None)]
    assert rows[0]["request_id"] == response.headers["x-request-id"]


async def test_an_upload_to_an_archived_project_fails_under_the_project(
    platform: Platform, client: httpx.AsyncClient, archived_team: Team
) -> None:
    developer = archived_team.members[ProjectRole.DEVELOPER]
    mark = await audit_mark(platform)

    response = await upload(client, developer.token, archived_team.slug)

    assert response.status_code == 409, response.text
    rows = await audit_rows_since(platform, mark, action="dataset.upload")
    assert [(row["outcome"], row["project_id"]) for row in rows] == [
        ("failed", archived_team.project_id)
    ]
    assert rows[0]["details"]["code"] == "CONFLICT"


@pytest.mark.parametrize(
    ("dataset", "params"),
    [("data", {"format": "xml"}), ("data", {"header": "maybe"}), ("Not A Name", {})],
    ids=["bad-format", "bad-header", "bad-dataset-name"],
)
async def test_an_upload_with_bad_options_fails_under_the_project(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    dataset: str,
    params: dict[str, str],
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    mark = await audit_mark(platform)

    response = await upload(client, developer.token, team.slug, dataset, **params)

    assert response.status_code == 400, response.text
    rows = await audit_rows_since(platform, mark, action="dataset.upload")
    assert [(row["outcome"], row["details"]["code"]) for row in rows] == [
        ("failed", "BAD_USER_INPUT")
    ]


async def test_an_upload_refused_inside_the_domain_is_audited_once(
    platform: Platform, client: httpx.AsyncClient, team: Team
) -> None:
    # Not a CSV or Parquet file: refused by the domain's own audited change, which writes
    # the row. The route must not write a second one.
    developer = team.members[ProjectRole.DEVELOPER]
    mark = await audit_mark(platform)

    response = await client.post(
        f"/v1/projects/{team.slug}/datasets/data/versions",
        content=b"\x00\x01\x02 not a table",
        headers=bearer(developer.token),
    )

    assert response.status_code == 400, response.text
    rows = await audit_rows_since(platform, mark, action="dataset.upload")
    assert [(row["outcome"], row["project_id"]) for row in rows] == [("failed", team.project_id)]


async def test_an_unauthenticated_upload_is_not_audited(
    platform: Platform, client: httpx.AsyncClient, team: Team
) -> None:
    # Refused before anything knows who asks: auditing it would let anyone without
    # credentials write to the trail at will.
    mark = await audit_mark(platform)

    response = await client.post(
        f"/v1/projects/{team.slug}/datasets/data/versions",
        content=fresh_csv(),
        headers=bearer("aiaas_not-a-token"),
    )

    assert response.status_code == 401
    assert await audit_rows_since(platform, mark) == []


# Unexpected errors ----------------------------------------------------------------------------


def failing(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"broken while handling {SECRET_MARKER}: {args!r} {kwargs!r}")


async def test_an_unexpected_rest_error_leaves_a_row_with_the_request_id_and_no_payload(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    monkeypatch.setattr(upload_rest, "project_by_slug", failing)
    mark = await audit_mark(platform)

    response = await client.post(
        f"/v1/projects/{team.slug}/datasets/{SECRET_MARKER}/versions",
        content=f"a,b\n1,{SECRET_MARKER}\n".encode(),
        params={"description": SECRET_MARKER},
        headers={**bearer(developer.token), "x-request-id": "caller-trace-1"},
    )

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json()["error"] == {
        "code": "INTERNAL",
        "message": "internal error",
        "requestId": request_id,
    }
    assert SECRET_MARKER not in response.text
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"]) for row in rows] == [("request.error", "failed")]
    row = rows[0]
    assert row["request_id"] == request_id
    assert row["correlation_id"] == "caller-trace-1"
    assert row["actor_id"] == developer.principal.user_id
    assert row["details"] == {
        "interface": "rest",
        "route": "POST /v1/projects/{project}/datasets/{dataset}/versions",
        "error": "RuntimeError",
    }
    assert SECRET_MARKER not in audit_row_text(row)
    assert developer.token not in audit_row_text(row)


async def test_an_unexpected_v2_error_leaves_a_row_in_the_protocols_error_shape(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    viewer = team.members[ProjectRole.VIEWER]
    monkeypatch.setattr(InferenceServer, "deployment_named", failing)
    mark = await audit_mark(platform)

    response = await client.post(
        f"/v2/models/{team.slug}.wine/infer",
        json={"inputs": [{"name": SECRET_MARKER, "shape": [1], "datatype": "FP32", "data": [1]}]},
        headers=bearer(viewer.token),
    )

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "error": "internal error",
        "code": "INTERNAL",
        "requestId": request_id,
    }
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"], row["request_id"]) for row in rows] == [
        ("request.error", "failed", request_id)
    ]
    assert rows[0]["details"] == {
        "interface": "v2",
        "route": "POST /v2/models/{name}/infer",
        "error": "RuntimeError",
    }
    assert SECRET_MARKER not in audit_row_text(rows[0])
