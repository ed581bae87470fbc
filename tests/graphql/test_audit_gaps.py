"""Refused and failed GraphQL attempts leave audit rows (issue 13):

- `createProject`, `createApiToken` and `createUser` refused for bad input leave a `failed` row,
  as every other mutation does (their checks ran before the audited change);
- `revokeApiToken` with an id that names no token, and any project-scoped mutation with a
  malformed id, leave a `failed` row;
- over graphql-transport-ws, a refused `connection_init` leaves a `denied` `websocket.connect`
  row with no token material, and a subscription refused by permissions a `denied` row under
  the project;
- an unexpected error in a resolver (a query, a mutation or a subscription's stream) leaves one
  `failed` `request.error` row with the request id and nothing the request carried.

The unexpected failures are injected: a domain function of the real app raises."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity import projects
from aiaas.core.identity.projects import Project
from aiaas.core.platform import Platform
from aiaas.core.pubsub import EventHub
from aiaas.graphql.relay import to_global_id
from aiaas.graphql.schema import build_schema
from support import (
    RunningServer,
    UserWithToken,
    audit_mark,
    audit_row_text,
    audit_rows_since,
    data_of,
    messages_until_closed,
    open_socket,
    ready_server,
    receive,
    send,
    subscription_context,
    unique,
    user_with_token,
)

SECRET_MARKER = "do-not-store-this"
"""Text that reaches the failing code only through the request: no row may hold it."""
PASSWORD_MARKER = "pw-mark"  # too short to be a password: the refusal must not store it


@pytest.fixture(scope="module")
async def owner(platform: Platform) -> UserWithToken:
    return await user_with_token(platform, unique("owner"))


@pytest.fixture(scope="module")
async def owned_project(platform: Platform, owner: UserWithToken) -> Project:
    return await projects.create_project(
        platform, owner.principal, slug=unique("gaps"), name="Gaps"
    )


async def call(
    client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}", "x-request-id": "caller-trace-7"},
    )


# createProject, createApiToken, createUser: bad input -----------------------------------------

CREATE_PROJECT = """
mutation($input: CreateProjectInput!) { createProject(input: $input) { __typename } }
"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { __typename } }
"""
CREATE_USER = """
mutation($input: CreateUserInput!) { createUser(input: $input) { __typename } }
"""
PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()

BAD_INPUT = {
    "project-slug": (CREATE_PROJECT, {"slug": "Not A Slug", "name": "x"}, "project.create"),
    "project-name": (CREATE_PROJECT, {"slug": "fine-slug", "name": "   "}, "project.create"),
    "token-name": (CREATE_TOKEN, {"name": "  "}, "api_token.create"),
    "token-expiry": (CREATE_TOKEN, {"name": "late", "expiresAt": PAST}, "api_token.create"),
    "user-name": (CREATE_USER, {"username": "Not A Name"}, "user.create"),
    "user-password": (
        CREATE_USER,
        {"username": "fine-name", "password": PASSWORD_MARKER},
        "user.create",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
async def test_bad_input_to_a_create_mutation_leaves_a_failed_row(
    platform: Platform, client: httpx.AsyncClient, admin_token: str, case: str
) -> None:
    query, given, action = BAD_INPUT[case]
    mark = await audit_mark(platform)

    response = await call(client, admin_token, query, {"input": given})

    (answer,) = data_of((response.status_code, response.json())).values()
    assert answer["__typename"] == "InvalidInputError"
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"], row["details"]["code"]) for row in rows] == [
        (action, "failed", "BAD_USER_INPUT")
    ]
    assert rows[0]["request_id"] == response.headers["x-request-id"]
    assert rows[0]["correlation_id"] == "caller-trace-7"
    assert admin_token not in audit_row_text(rows[0])
    assert PASSWORD_MARKER not in audit_row_text(rows[0])


REVOKE_TOKEN = "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }"


@pytest.mark.parametrize(
    ("token_id", "answer"),
    [
        ("!!not-an-id", "InvalidInputError"),
        (to_global_id("Project", uuid.uuid4()), "InvalidInputError"),
        (to_global_id("ApiToken", uuid.uuid4()), "NotFoundError"),
    ],
    ids=["malformed", "not-a-token-id", "no-such-token"],
)
async def test_revoking_with_an_id_that_names_no_token_leaves_a_failed_row(
    platform: Platform, client: httpx.AsyncClient, owner: UserWithToken, token_id: str, answer: str
) -> None:
    mark = await audit_mark(platform)

    response = await call(client, owner.token.secret, REVOKE_TOKEN, {"id": token_id})

    assert data_of((response.status_code, response.json()))["revokeApiToken"] == {
        "__typename": answer
    }
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"], row["actor_id"]) for row in rows] == [
        ("api_token.revoke", "failed", owner.principal.user_id)
    ]


async def test_a_project_mutation_with_a_malformed_id_leaves_a_failed_row(
    platform: Platform, client: httpx.AsyncClient, owner: UserWithToken
) -> None:
    mark = await audit_mark(platform)

    response = await call(
        client,
        owner.token.secret,
        "mutation($id: ID!) { archiveProject(id: $id) { __typename } }",
        {"id": "!!not-an-id"},
    )

    assert [error["extensions"]["code"] for error in response.json()["errors"]] == [
        "BAD_USER_INPUT"
    ]
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"], row["details"]["code"]) for row in rows] == [
        ("graphql.archiveProject", "failed", "BAD_USER_INPUT")
    ]


# Unexpected errors ----------------------------------------------------------------------------


def failing(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"broken while handling {SECRET_MARKER}: {args!r} {kwargs!r}")


async def test_an_unexpected_error_in_a_mutation_leaves_a_row_with_the_request_id_only(
    platform: Platform,
    client: httpx.AsyncClient,
    owner: UserWithToken,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projects, "create_project", failing)
    mark = await audit_mark(platform)

    response = await client.post(
        "/graphql",
        json={
            "query": "mutation Named($input: CreateProjectInput!) { "
            f"{SECRET_MARKER.replace('-', '_')}: createProject(input: $input) "
            "{ __typename } }",
            "variables": {"input": {"slug": SECRET_MARKER, "name": SECRET_MARKER}},
            "operationName": "Named",
        },
        headers={**owner.authorization, "x-request-id": "caller-trace-8"},
    )

    assert response.status_code == 200
    assert response.json()["errors"], response.text
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"]) for row in rows] == [("request.error", "failed")]
    row = rows[0]
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["correlation_id"] == "caller-trace-8"
    assert row["actor_id"] == owner.principal.user_id
    assert row["details"] == {
        "interface": "graphql",
        "operation": "mutation",
        "fields": ["createProject"],
        "errors": ["RuntimeError"],
    }
    assert SECRET_MARKER not in audit_row_text(row)
    assert SECRET_MARKER.replace("-", "_") not in audit_row_text(row)
    assert "Named" not in audit_row_text(row)


async def test_an_unexpected_error_in_a_query_leaves_one_row(
    platform: Platform,
    client: httpx.AsyncClient,
    owner: UserWithToken,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(identity, "list_api_tokens", failing)
    mark = await audit_mark(platform)

    response = await call(client, owner.token.secret, "{ viewer { apiTokens { name } } }", {})

    assert response.json()["errors"], response.text
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["request_id"]) for row in rows] == [
        ("request.error", response.headers["x-request-id"])
    ]
    assert rows[0]["details"]["operation"] == "query"
    assert rows[0]["details"]["fields"] == ["viewer"]


async def test_an_unexpected_error_in_a_subscription_stream_leaves_a_row(
    platform: Platform,
    owner: UserWithToken,
    owned_project: Project,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken_feed(self: EventHub, channel: str) -> AsyncIterator[dict[str, Any]]:
        raise RuntimeError(f"feed broke on {channel} {SECRET_MARKER}")
        yield {}  # an async generator, as the real one is

    monkeypatch.setattr(EventHub, "subscribe", broken_feed)
    request_id = unique("socket")
    context = await subscription_context(platform, owner.token.secret, request_id)
    mark = await audit_mark(platform)

    results = await build_schema(platform).subscribe(
        "subscription($p: ID!) { projectAuditEvents(project: $p) { action } }",
        {"p": to_global_id("Project", owned_project.id)},
        context,
    )
    try:
        first = await anext(results)
    finally:
        with contextlib.suppress(RuntimeError):
            await results.aclose()

    assert first.errors
    rows = await audit_rows_since(platform, mark)
    assert [(row["action"], row["outcome"], row["request_id"]) for row in rows] == [
        ("request.error", "failed", request_id)
    ]
    assert rows[0]["details"] == {
        "interface": "graphql",
        "operation": "subscription",
        "fields": ["projectAuditEvents"],
        "errors": ["RuntimeError"],
    }
    assert str(owned_project.id) not in audit_row_text(rows[0])


# graphql-transport-ws -------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with ready_server(config, tmp_path_factory) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "missing"),
        ({"authorization": f"Bearer aiaas_{'0' * 12}_{SECRET_MARKER}"}, "refused"),
    ],
    ids=["no-token", "unknown-token"],
)
async def test_a_refused_connection_init_leaves_a_denied_row_without_the_token(
    platform: Platform, server: RunningServer, payload: dict[str, str] | None, reason: str
) -> None:
    mark = await audit_mark(platform)
    websocket = await open_socket(server)
    request_id = websocket.response.headers["x-request-id"]
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload

    await send(websocket, init)
    _, close_code = await messages_until_closed(websocket)

    assert close_code == 4403
    rows = await audit_rows_since(platform, mark, request_id=request_id)
    assert [(row["action"], row["outcome"], row["actor_id"]) for row in rows] == [
        ("websocket.connect", "denied", None)
    ]
    assert rows[0]["details"] == {
        "code": "UNAUTHENTICATED",
        "reason": reason,
        "client": "127.0.0.1",
    }
    assert SECRET_MARKER not in audit_row_text(rows[0])


@pytest.mark.slow
async def test_a_subscription_refused_by_permissions_leaves_a_denied_row_under_the_project(
    platform: Platform, server: RunningServer, owned_project: Project
) -> None:
    outsider = await user_with_token(platform, unique("outsider"))
    mark = await audit_mark(platform)
    websocket = await open_socket(server)
    request_id = websocket.response.headers["x-request-id"]
    await send(
        websocket,
        {
            "type": "connection_init",
            "payload": {"authorization": f"Bearer {outsider.token.secret}"},
        },
    )
    assert (await receive(websocket))["type"] == "connection_ack"

    await send(
        websocket,
        {
            "id": "spy",
            "type": "subscribe",
            "payload": {
                "query": "subscription($p: ID!) { projectAuditEvents(project: $p) { action } }",
                "variables": {"p": to_global_id("Project", owned_project.id)},
            },
        },
    )
    refusal = await receive(websocket)
    await websocket.close()

    assert refusal["type"] == "error", refusal
    rows = await audit_rows_since(platform, mark, request_id=request_id)
    assert [(row["action"], row["outcome"], row["project_id"]) for row in rows] == [
        ("graphql.projectAuditEvents", "denied", owned_project.id)
    ]
    assert rows[0]["actor_id"] == outsider.principal.user_id
    assert outsider.token.secret not in audit_row_text(rows[0])
