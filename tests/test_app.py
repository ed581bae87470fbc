"""The ASGI app: health and readiness, authenticated-by-default routes, and request ids."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from arq.connections import ArqRedis
from starlette.applications import Starlette

from aiaas import migrations
from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.errors import SchemaOutdatedError
from aiaas.core.platform import Platform
from support import Services, create_database_from_template, drop_database, with_database

GENERATED_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://aiaas.test")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port where nothing listens: bound but never listening, so connecting is refused
    at once, and no other process can take the port while the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def unmigrated_database_url(services: Services, template_database: str) -> AsyncIterator[str]:
    """A database whose aiaas schema was downgraded away, as if `aiaas db upgrade` never ran."""
    name = await create_database_from_template(services, template_database, "test_unmigrated")
    url = with_database(services.server_url, name)
    await migrations.downgrade(url, "base")
    yield url
    await drop_database(services, name)


async def test_healthz_answers_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_every_dependency_is(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "redis": "ok"},
    }


async def test_readyz_names_redis_when_it_is_unreachable(config: Config, closed_port: int) -> None:
    platform = create_platform(config)
    await platform.start()
    try:
        # Redis "goes away": the started platform's pool is closed and replaced with one to a
        # port that refuses connections. There is no public way to swap it, hence `_redis`.
        await platform.redis.aclose()
        platform._redis = ArqRedis.from_url(f"redis://127.0.0.1:{closed_port}/0")
        async with client_for(create_app(platform=platform)) as client:
            response = await client.get("/readyz")
    finally:
        await platform.stop()

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["schema"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable")


async def test_outdated_schema_refuses_start_and_fails_readiness(
    config: Config, unmigrated_database_url: str
) -> None:
    outdated = build_config({**config.model_dump(), "database_url": unmigrated_database_url})

    refused = create_platform(outdated)
    try:
        with pytest.raises(SchemaOutdatedError, match="`aiaas db upgrade`"):
            await refused.start()
    finally:
        await refused.stop()

    # A platform that skipped the check at start still reports it in readiness.
    platform = create_platform(outdated)
    await platform.start(check_schema=False)
    try:
        async with client_for(create_app(platform=platform)) as client:
            response = await client.get("/readyz")
    finally:
        await platform.stop()

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["redis"] == "ok"
    assert "aiaas db upgrade" in checks["schema"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/no/such/route"),
        ("POST", "/v1/no/such/route"),
        ("GET", "/v2/no/such/route"),
        # A GET of a path outside the API's is the web portal's shell (tests/test_portal_*).
        ("POST", "/no/such/route"),
    ],
)
async def test_unknown_path_needs_a_token_before_it_is_a_404(
    client: httpx.AsyncClient, admin_token: str, method: str, path: str
) -> None:
    anonymous = await client.request(method, path)
    bad_token = await client.request(method, path, headers={"authorization": "Bearer nonsense"})
    authenticated = await client.request(
        method, path, headers={"authorization": f"Bearer {admin_token}"}
    )

    # Authenticated by default: without credentials, a caller cannot even learn what exists.
    for refused in (anonymous, bad_token):
        assert refused.status_code == 401
        body = refused.json()
        # V2's own error shape keeps the code beside its message.
        assert (body["code"] if path.startswith("/v2/") else body["error"]["code"]) == (
            "UNAUTHENTICATED"
        )
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert GENERATED_REQUEST_ID.fullmatch(refused.headers["x-request-id"])
    assert authenticated.status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/graphql", "/no/such/route"])
@pytest.mark.parametrize("header", ["x-request-id", "x-correlation-id"])
async def test_a_callers_id_is_kept_as_the_correlation_id_beside_ours(
    client: httpx.AsyncClient, path: str, header: str
) -> None:
    supplied = "client-Req_42.retry-1"

    first = await client.get(path, headers={header: supplied})
    second = await client.get(path, headers={header: supplied})

    # The request id is always the server's, so two requests never share one.
    for response in (first, second):
        [request_id] = response.headers.get_list("x-request-id")
        assert GENERATED_REQUEST_ID.fullmatch(request_id)
        assert response.headers.get_list("x-correlation-id") == [supplied]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "supplied",
    ["a" * 200, "a" * 65, "has space", "forged\nlog line", "semi;colon", "ünïcode"],
    ids=["200-chars", "65-chars", "space", "newline", "semicolon", "non-ascii"],
)
async def test_ill_formed_caller_id_is_dropped(client: httpx.AsyncClient, supplied: str) -> None:
    response = await client.get("/healthz", headers=[(b"x-request-id", supplied.encode("utf-8"))])

    [request_id] = response.headers.get_list("x-request-id")
    assert GENERATED_REQUEST_ID.fullmatch(request_id)
    assert "x-correlation-id" not in response.headers


async def test_audit_events_carry_our_request_id_and_the_callers_correlation_id(
    client: httpx.AsyncClient, platform: Platform, admin_token: str
) -> None:
    slug = f"correlated-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/graphql",
        json={
            "query": "mutation($input: CreateProjectInput!) { createProject(input: $input) "
            "{ __typename } }",
            "variables": {"input": {"slug": slug, "name": "Correlated"}},
        },
        headers={"authorization": f"Bearer {admin_token}", "x-request-id": "caller-ref-9"},
    )
    assert response.status_code == 200, response.text

    async with platform.metadata.acquire() as connection:
        event = await connection.fetchrow(
            "SELECT request_id, correlation_id FROM audit_events WHERE action = 'project.create' "
            "AND object_id = (SELECT id::text FROM projects WHERE slug = $1)",
            slug,
        )
    assert event is not None
    assert (event["request_id"], event["correlation_id"]) == (
        response.headers["x-request-id"],
        "caller-ref-9",
    )


async def test_request_ids_differ_between_requests(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")

    assert first.headers["x-request-id"] != second.headers["x-request-id"]
