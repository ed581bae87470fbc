"""Helpers shared by the test modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

REPOSITORY = Path(__file__).resolve().parent.parent


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST a GraphQL operation; returns the HTTP status and the decoded body."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
    )
    return response.status_code, response.json()


def data_of(result: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """The `data` of a successful GraphQL result; fails the test on any error."""
    status, body = result
    assert status == 200 and "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without any AIAAS_* variable, plus `variables`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    environment.update(variables)
    return environment
