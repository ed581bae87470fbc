"""`OutagesAnswered` and the SDK on an operation that a lost service cut short: a query answers
503, but a mutation whose first root field committed keeps its 200, and the SDK hands the
committed field's data to the caller with the error. The outage is a real one (a PostgreSQL
connect refused by a closed port), met by the second root field of one request."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from aiaas.client.errors import ApiError, UnavailableError
from aiaas.client.transport import graphql_data
from aiaas.graphql.outages import OutagesAnswered
from support import free_port

ENDPOINT = "http://testserver/graphql"


async def lost_database() -> int:
    """Reach a PostgreSQL that is not there: raises the driver's own refusal."""
    connection = await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{free_port()}/nothing")
    await connection.close()
    return 0


@strawberry.type
class Query:
    @strawberry.field
    async def counted(self) -> int:
        return await lost_database()


@strawberry.type
class Mutation:
    @strawberry.mutation
    def record(self) -> str:
        return "recorded"

    @strawberry.mutation
    async def count(self) -> int | None:
        return await lost_database()

    @strawberry.mutation
    async def strict_count(self) -> int:
        return await lost_database()


@dataclass
class Context:
    response: Response | WebSocket


class App(GraphQL[Context, None]):
    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(response=response)


@pytest.fixture
async def client() -> httpx.AsyncClient:
    schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=[OutagesAnswered])
    transport = httpx.ASGITransport(app=App(schema))
    return httpx.AsyncClient(transport=transport)


async def test_a_query_cut_short_answers_503(client: httpx.AsyncClient) -> None:
    response = await client.post(ENDPOINT, json={"query": "{ counted }"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    with pytest.raises(UnavailableError) as raised:
        graphql_data(ENDPOINT, response)
    assert raised.value.code == "DATABASE_UNAVAILABLE"
    assert raised.value.data is None


async def test_a_mutation_that_committed_a_field_keeps_200_and_the_sdk_keeps_its_data(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(ENDPOINT, json={"query": "mutation { record count }"})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"record": "recorded", "count": None}
    assert body["errors"][0]["extensions"]["code"] == "DATABASE_UNAVAILABLE"
    with pytest.raises(ApiError) as raised:
        graphql_data(ENDPOINT, response)
    assert raised.value.code == "DATABASE_UNAVAILABLE"
    assert raised.value.data == {"record": "recorded", "count": None}


async def test_a_committed_field_keeps_200_when_a_failed_one_nulls_all_data(
    client: httpx.AsyncClient,
) -> None:
    """A non-null root field that fails nulls `data` itself: the committed field still counts."""
    response = await client.post(ENDPOINT, json={"query": "mutation { record strictCount }"})
    assert response.status_code == 200
    assert response.json()["data"] is None
    with pytest.raises(ApiError) as raised:
        graphql_data(ENDPOINT, response)
    assert raised.value.code == "DATABASE_UNAVAILABLE"


async def test_a_mutation_that_committed_nothing_answers_503(client: httpx.AsyncClient) -> None:
    response = await client.post(ENDPOINT, json={"query": "mutation { count }"})
    assert response.status_code == 503
    with pytest.raises(UnavailableError):
        graphql_data(ENDPOINT, response)
