"""Documents that are too deep, too aliased or too long are refused before any resolver runs;
production refuses introspection and masks unexpected errors to a message and a code."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
import strawberry

from aiaas.app import create_app
from aiaas.core.config import Config, Mode
from aiaas.core.hookspecs import hookimpl
from aiaas.core.platform import Platform
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.specs import GraphQLContribution
from aiaas.graphql.permissions import requires
from support import graphql


class ResolverCalls:
    count = 0


@strawberry.type
class ProbeQuery:
    @strawberry.field(extensions=requires("probe", "read"))
    def counted(self) -> int:
        ResolverCalls.count += 1
        return ResolverCalls.count

    @strawberry.field(extensions=requires("probe", "read"))
    def broken(self) -> int:
        raise RuntimeError("connection string postgresql://secret@db leaked into an error")


class ProbePlugin:
    @hookimpl
    def aiaas_graphql_schema(self) -> Iterable[GraphQLContribution]:
        return [GraphQLContribution(name="probe", query=ProbeQuery)]


async def started_client(
    config: Config, token: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    manager = create_plugin_manager(config)
    manager.register_plugin(ProbePlugin(), "probe")
    platform = Platform(config, manager)
    await platform.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform=platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            yield client, token
    finally:
        await platform.stop()


@pytest.fixture(scope="module")
async def limited(config: Config, admin_token: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    limits = {"graphql_max_depth": 3, "graphql_max_aliases": 3, "graphql_max_tokens": 120}
    async for pair in started_client(config.model_copy(update=limits), admin_token):
        yield pair


@pytest.fixture(scope="module")
async def production(
    config: Config, admin_token: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async for pair in started_client(
        config.model_copy(update={"mode": Mode.PRODUCTION}), admin_token
    ):
        yield pair


@pytest.fixture(autouse=True)
def reset_counter() -> None:
    ResolverCalls.count = 0


TOO_DEEP = "{ counted projects { edges { node { createdBy { username } } } } }"
TOO_MANY_ALIASES = """
fragment Twice on Query { first: counted second: counted }
query { ...Twice third: counted fourth: counted }
"""
TOO_MANY_TOKENS = "{ counted " + " ".join(["__typename"] * 150) + " }"


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        (TOO_DEEP, "exceeds maximum operation depth"),
        (TOO_MANY_ALIASES, "aliases"),
        (TOO_MANY_TOKENS, "token"),
    ],
    ids=["depth", "aliases-through-fragments", "tokens"],
)
async def test_an_over_limit_document_is_refused_before_any_resolver_runs(
    limited: tuple[httpx.AsyncClient, str], document: str, complaint: str
) -> None:
    client, token = limited

    _, body = await graphql(client, document, token=token)

    assert body.get("data") is None
    assert complaint in body["errors"][0]["message"]
    assert ResolverCalls.count == 0


async def test_a_document_within_the_limits_runs(limited: tuple[httpx.AsyncClient, str]) -> None:
    client, token = limited

    _, body = await graphql(
        client, "{ one: counted two: counted projects { nodes { slug } } }", token=token
    )

    assert body == {"data": {"one": 1, "two": 2, "projects": {"nodes": []}}}


async def test_production_refuses_introspection(
    production: tuple[httpx.AsyncClient, str],
) -> None:
    client, token = production

    _, body = await graphql(client, "{ __schema { types { name } } }", token=token)

    assert body.get("data") is None
    assert "introspection" in body["errors"][0]["message"].lower()


async def test_production_masks_an_unexpected_error_to_a_message_a_code_and_the_request_id(
    production: tuple[httpx.AsyncClient, str],
) -> None:
    client, token = production

    response = await client.post(
        "/graphql",
        json={"query": "{ broken }"},
        headers={"authorization": f"Bearer {token}", "x-request-id": "report-me-42"},
    )

    error = response.json()["errors"][0]
    assert error["message"] == "Unexpected error."
    # Our own request id, the one the logs hold; the caller's comes back as its correlation id.
    assert error["extensions"] == {
        "code": "INTERNAL",
        "requestId": response.headers["x-request-id"],
    }
    assert response.headers["x-correlation-id"] == "report-me-42"
    assert "secret" not in response.text


async def test_production_keeps_expected_errors_as_they_are(
    production: tuple[httpx.AsyncClient, str],
) -> None:
    client, token = production

    _, body = await graphql(client, '{ node(id: "%%%") { id } }', token=token)

    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["message"] == (
        "id: expected a global id (such as 'UHJvamVj...'), got text that is not a global id"
    )


async def test_graphiql_is_served_in_dev_only(
    limited: tuple[httpx.AsyncClient, str], production: tuple[httpx.AsyncClient, str]
) -> None:
    dev_client, _ = limited
    production_client, _ = production

    in_dev = await dev_client.get("/graphql", headers={"accept": "text/html"})
    in_production = await production_client.get("/graphql", headers={"accept": "text/html"})

    assert in_dev.status_code == 200
    assert "graphiql" in in_dev.text.lower()
    assert "graphiql" not in in_production.text.lower()
    assert in_production.status_code == 404
