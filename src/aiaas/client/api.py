"""The generated typed operations bound to an HTTP connection: `client.api`."""

from __future__ import annotations

from typing import Any

import httpx

from aiaas.client.generated.async_operations import AsyncOperations
from aiaas.client.generated.sync_operations import SyncOperations
from aiaas.client.transport import answered, graphql_data


def _payload(document: str, operation_name: str, variables: dict[str, Any]) -> dict[str, Any]:
    return {"query": document, "operationName": operation_name, "variables": variables}


class SyncApi(SyncOperations):
    """The generated typed operations over a `Client`'s connection: `client.api`."""

    def __init__(self, http: httpx.Client, url: str) -> None:
        self._http, self._url = http, url

    def execute(
        self, document: str, operation_name: str, variables: dict[str, Any]
    ) -> dict[str, Any]:
        with answered(self._url):
            response = self._http.post(
                "/graphql", json=_payload(document, operation_name, variables)
            )
        return graphql_data(self._url, response)


class AsyncApi(AsyncOperations):
    """The generated typed operations over an `AsyncClient`'s connection: `client.api`."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http, self._url = http, url

    async def execute(
        self, document: str, operation_name: str, variables: dict[str, Any]
    ) -> dict[str, Any]:
        payload = _payload(document, operation_name, variables)
        with answered(self._url):
            response = await self._http.post("/graphql", json=payload)
        return graphql_data(self._url, response)
