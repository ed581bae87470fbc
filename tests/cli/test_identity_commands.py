"""The operator commands for accounts, as real processes: `aiaas users create` and
`aiaas tokens create|list|revoke`, checked against the API and the audit trail."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from aiaas.core.platform import Platform
from support import data_of, graphql

pytestmark = pytest.mark.slow

AIAAS = [sys.executable, "-m", "aiaas"]
PASSWORD = "a long enough password"
VIEWER = "{ viewer { username } }"


def run_cli(
    *arguments: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIAAS, *arguments], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    """A refused command: exit 1, nothing on stdout, and one clear line on stderr."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for mention in mentions:
        assert mention in lines[0]


async def operator_events(platform: Platform, action: str, object_id: str) -> list[dict[str, Any]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT actor_id, actor_name, outcome, details FROM audit_events "
            "WHERE action = $1 AND object_id = $2 ORDER BY id",
            action,
            object_id,
        )
    return [dict(row) for row in rows]


def new_username(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


async def test_users_create_with_a_password_from_stdin_and_a_duplicate_is_refused(
    cli_environment: dict[str, str], platform: Platform
) -> None:
    username = new_username("operator-made")

    created = run_cli(
        "users",
        "create",
        username,
        "--display-name",
        "Made By Operator",
        "--password-stdin",
        env=cli_environment,
        stdin=PASSWORD + "\n",
    )
    duplicate = run_cli("users", "create", username, env=cli_environment)

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith(f"created user {username} (")
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT id, display_name, is_admin, password_hash FROM users WHERE username = $1",
            username,
        )
    [row] = rows
    assert str(row["id"]) in created.stdout
    assert (row["display_name"], row["is_admin"]) == ("Made By Operator", False)
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]
    assert_one_error_line(duplicate, username, "already exists")
    # Made by whoever could reach the database: audited with no actor.
    assert await operator_events(platform, "user.create", str(row["id"])) == [
        {
            "actor_id": None,
            "actor_name": None,
            "outcome": "success",
            "details": {"username": username, "is_admin": False},
        }
    ]


async def test_a_token_from_the_cli_works_until_the_cli_revokes_it(
    cli_environment: dict[str, str], platform: Platform, client: httpx.AsyncClient
) -> None:
    username = new_username("cli-token")
    assert run_cli("users", "create", username, env=cli_environment).returncode == 0

    created = run_cli("tokens", "create", username, "--name", "ci", env=cli_environment)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n"
    assert data_of(await graphql(client, VIEWER, token=token)) == {"viewer": {"username": username}}

    listed = run_cli("tokens", "list", username, "--json", env=cli_environment)
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    prefix = entry["prefix"]
    assert token.startswith(prefix + "_")
    assert (entry["name"], entry["kind"], entry["revoked_at"]) == ("ci", "api", None)
    assert token.removeprefix(prefix + "_") not in listed.stdout

    revoked = run_cli("tokens", "revoke", prefix, env=cli_environment)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == f"revoked {prefix}\n"
    status, _ = await graphql(client, VIEWER, token=token)
    assert status == 401

    again = run_cli("tokens", "revoke", prefix, env=cli_environment)
    assert_one_error_line(again, prefix, "already revoked")
    [after] = json.loads(run_cli("tokens", "list", username, "--json", env=cli_environment).stdout)
    assert after["revoked_at"] is not None

    async with platform.metadata.acquire() as connection:
        token_id = await connection.fetchval("SELECT id FROM api_tokens WHERE prefix = $1", prefix)
    assert await operator_events(platform, "api_token.create", str(token_id)) == [
        {"actor_id": None, "actor_name": None, "outcome": "success", "details": {"prefix": prefix}}
    ]
    assert await operator_events(platform, "api_token.revoke", str(token_id)) == [
        {"actor_id": None, "actor_name": None, "outcome": "success", "details": {"revoked": True}},
        {"actor_id": None, "actor_name": None, "outcome": "success", "details": {"revoked": False}},
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        ("tokens", "create", "no-such-user-anywhere", "--name", "ci"),
        ("tokens", "list", "no-such-user-anywhere"),
        ("tokens", "revoke", "aiaas_000000000000"),
    ],
    ids=["create", "list", "revoke"],
)
def test_tokens_of_someone_or_something_that_does_not_exist_are_refused(
    cli_environment: dict[str, str], arguments: tuple[str, ...]
) -> None:
    assert_one_error_line(run_cli(*arguments, env=cli_environment), arguments[2])


def test_an_invalid_new_user_is_refused_with_what_is_wrong(
    cli_environment: dict[str, str],
) -> None:
    refused = run_cli(
        "users",
        "create",
        new_username("short-password"),
        "--password-stdin",
        env=cli_environment,
        stdin="short\n",
    )

    assert_one_error_line(refused, "password", "10")
