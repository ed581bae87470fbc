"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
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


@dataclass(frozen=True)
class Services:
    server_url: str
    """A PostgreSQL URL whose user may create databases (its database part is replaced)."""
    redis_url: str


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def redis_with_database(url: str, database: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def admin_connection(services: Services) -> asyncpg.Connection:
    return await asyncpg.connect(with_database(services.server_url, "postgres"))


async def create_database_from_template(services: Services, template: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await admin_connection(services)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return name


async def drop_database(services: Services, name: str) -> None:
    admin = await admin_connection(services)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
