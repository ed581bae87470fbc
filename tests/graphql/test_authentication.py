"""Authentication over HTTP GraphQL: public `health`, and every kind of refused credentials."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from aiaas.core.identity.accounts import insert_token, new_token, revoke_token, verify_token
from aiaas.core.platform import Platform
from support import data_of, graphql

HEALTH = "{ health { status } }"
VIEWER = "{ viewer { username } }"
CREATE = """
mutation Create($input: CreateProjectInput!) {
  createProject(input: $input) { __typename }
}
"""
# What a leaked stack trace or server path would look like in a response body.
LEAK = re.compile(r"Traceback|File \"|\.py\b|site-packages|/src/aiaas")


@pytest.fixture(scope="module")
async def refused_tokens(platform: Platform, admin_token: str) -> dict[str, str]:
    """Tokens of the admin that were valid once: one expired, one revoked."""
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    async with platform.metadata.transaction() as connection:
        expired = await insert_token(
            connection, admin.user_id, "expired", datetime.now(UTC) - timedelta(minutes=1)
        )
        revoked = await insert_token(connection, admin.user_id, "revoked")
    await revoke_token(platform, admin, revoked.id)
    return {"expired": expired.secret, "revoked": revoked.secret}


def authorization_for(kind: str, refused_tokens: dict[str, str]) -> dict[str, str]:
    """The request headers for each kind of bad credentials."""
    values = {
        "malformed": "Bearer not-a-token",
        "malformed-aiaas": "Bearer aiaas_0123_short",
        "basic": "Basic YWRtaW46cGFzc3dvcmQ=",
        "scheme-only": "Bearer",
        "unknown": f"Bearer {new_token()[0]}",
        "expired": f"Bearer {refused_tokens['expired']}",
        "revoked": f"Bearer {refused_tokens['revoked']}",
    }
    return {} if kind == "none" else {"authorization": values[kind]}


REFUSED_KINDS = [
    "none",
    "malformed",
    "malformed-aiaas",
    "basic",
    "scheme-only",
    "unknown",
    "expired",
    "revoked",
]


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not LEAK.search(response.text), response.text


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    assert data_of(await graphql(client, HEALTH)) == {"health": {"status": "ok"}}


async def test_viewer_with_the_admin_token_is_the_admin(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    # The control for the refusals below: the same query does work with good credentials.
    assert data_of(await graphql(client, VIEWER, token=admin_token)) == {
        "viewer": {"username": "admin"}
    }


@pytest.mark.parametrize("kind", REFUSED_KINDS)
async def test_viewer_with_bad_credentials_is_401(
    client: httpx.AsyncClient, refused_tokens: dict[str, str], kind: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers=authorization_for(kind, refused_tokens)
    )

    assert_unauthenticated(response)


async def test_viewer_over_get_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    # Queries may also arrive as GET: the same rule applies to them.
    response = await client.get("/graphql", params={"query": VIEWER})

    assert_unauthenticated(response)


@pytest.mark.parametrize("kind", ["none", "revoked"])
async def test_mutation_without_valid_credentials_is_denied_audited_and_creates_nothing(
    client: httpx.AsyncClient, platform: Platform, refused_tokens: dict[str, str], kind: str
) -> None:
    slug = f"sneaky-{uuid.uuid4().hex[:8]}"
    request_id = f"denied-{uuid.uuid4().hex[:8]}"
    headers = {**authorization_for(kind, refused_tokens), "x-request-id": request_id}

    response = await client.post(
        "/graphql",
        json={"query": CREATE, "variables": {"input": {"slug": slug, "name": "Sneaky"}}},
        headers=headers,
    )

    assert_unauthenticated(response)
    async with platform.metadata.acquire() as connection:
        projects = await connection.fetchval("SELECT count(*) FROM projects WHERE slug = $1", slug)
        events = await connection.fetch(
            "SELECT * FROM audit_events WHERE correlation_id = $1 ORDER BY id", request_id
        )
    assert projects == 0
    assert [(row["action"], row["outcome"]) for row in events] == [
        ("graphql.createProject", "denied")
    ]
    assert events[0]["actor_id"] is None
    assert events[0]["details"]["resource"] == "project"
    assert events[0]["details"]["action"] == "create"


PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    authorization=st.one_of(
        st.text(alphabet=PRINTABLE),
        st.text(alphabet=PRINTABLE).map(lambda rest: "Bearer " + rest),
        st.text(alphabet=PRINTABLE).map(lambda rest: "Bearer aiaas_" + rest),
        st.from_regex(r"Bearer aiaas_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", fullmatch=True),
    )
)
async def test_random_authorization_headers_give_health_or_401(
    app: Starlette, authorization: str
) -> None:
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": authorization}
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        health = await client.post("/graphql", json={"query": HEALTH}, headers=headers)
        viewer = await client.post("/graphql", json={"query": VIEWER}, headers=headers)

    if health.status_code == 200:
        assert health.json() == {"data": {"health": {"status": "ok"}}}
    else:
        assert_unauthenticated(health)
    # No random header is ever somebody's token.
    assert_unauthenticated(viewer)
