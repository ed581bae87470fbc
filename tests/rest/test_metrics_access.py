"""`GET /metrics` is private: its series name every project and deployment.

Without credentials a scrape is 401; a signed-in user without `metrics:read` (project owners
included) is 403; a platform admin and a holder of the platform role `metrics-reader` get the
series. The role is given and taken with `aiaas users grant-platform-role` and
`revoke-platform-role`, run here as real processes, and each run is audited.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.errors import PermissionDeniedError
from aiaas.core.identity.access import ROLE_HIERARCHY, PlatformRole, ProjectRole
from aiaas.core.identity.platform_roles import (
    grant_platform_role,
    platform_roles_of,
    revoke_platform_role,
)
from aiaas.core.platform import Platform
from support import (
    Account,
    Team,
    audit_mark,
    events_since,
    new_account,
    new_team,
    poll_until,
    running_server,
    server_environment,
    wait_until_ready,
)

AIAAS = [sys.executable, "-m", "aiaas"]
SERIES = "aiaas_inference_requests_total"
"""A family every scrape shows, deployments or not."""
POLICY_WAIT_S = 10.0
"""A bound on waiting for a process to take in a change of policy, not a measurement."""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def run_cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIAAS, *arguments], env=env, capture_output=True, text=True, timeout=60)


async def scrape_status(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/metrics", headers=bearer(token))).status_code


async def until_scrape_answers(client: httpx.AsyncClient, token: str, status: int) -> None:
    """Wait until the server has taken in a change of policy made by another process."""

    async def answers() -> bool:
        return await scrape_status(client, token) == status

    assert await poll_until(answers, timeout_s=POLICY_WAIT_S) is not None, status


async def role_events(platform: Platform, user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT action, outcome, actor_id, details FROM audit_events "
            "WHERE object_type = 'user' AND object_id = $1 AND action LIKE 'platform_role.%' "
            "ORDER BY id",
            str(user_id),
        )
    return [dict(row) for row in rows]


async def roles_of(platform: Platform, username: str) -> tuple[PlatformRole, ...]:
    async with platform.metadata.acquire() as connection:
        return await platform_roles_of(connection, username)


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    roles = tuple(role for role in ROLE_HIERARCHY if role is not ProjectRole.OWNER)
    return await new_team(platform, "metrics-acl", roles)


# Who may scrape -------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
async def test_a_scrape_without_valid_credentials_is_401_and_shows_no_series(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization else {}

    response = await client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert SERIES not in response.text


@pytest.mark.parametrize("role", ROLE_HIERARCHY, ids=lambda role: role.value)
async def test_a_project_member_without_the_grant_is_403_whatever_their_role(
    client: httpx.AsyncClient, team: Team, role: ProjectRole
) -> None:
    response = await client.get("/metrics", headers=bearer(team.token(role)))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert SERIES not in response.text


async def test_a_platform_admin_scrapes_the_series(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    response = await client.get("/metrics", headers=bearer(admin_token))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert f"# TYPE {SERIES} counter" in response.text


# The platform role, through the CLI -------------------------------------------------------------


async def test_the_role_granted_and_revoked_by_the_cli_opens_and_closes_metrics_audited(
    client: httpx.AsyncClient, platform: Platform, cli_environment: dict[str, str]
) -> None:
    scraper = await new_account(platform, "scraper")
    assert await scrape_status(client, scraper.token) == 403

    granted = run_cli(
        "users", "grant-platform-role", scraper.username, "metrics-reader", env=cli_environment
    )
    assert (granted.returncode, granted.stdout) == (
        0,
        f"granted metrics-reader to {scraper.username}\n",
    ), granted.stderr
    await until_scrape_answers(client, scraper.token, 200)
    assert SERIES in (await client.get("/metrics", headers=bearer(scraper.token))).text

    again = run_cli(
        "users", "grant-platform-role", scraper.username, "metrics-reader", env=cli_environment
    )
    assert again.stdout == f"{scraper.username} already holds metrics-reader\n", again.stderr
    assert await roles_of(platform, scraper.username) == (PlatformRole.METRICS_READER,)

    revoked = run_cli(
        "users", "revoke-platform-role", scraper.username, "metrics-reader", env=cli_environment
    )
    assert revoked.stdout == f"revoked metrics-reader from {scraper.username}\n", revoked.stderr
    await until_scrape_answers(client, scraper.token, 403)
    assert await roles_of(platform, scraper.username) == ()

    events = await role_events(platform, scraper.principal.user_id)
    expected_details = {"username": scraper.username, "role": "metrics-reader"}
    assert events == [
        {
            "action": "platform_role.grant",
            "outcome": "success",
            "actor_id": None,  # an operator, from a shell on the database
            "details": {**expected_details, "changed": True},
        },
        {
            "action": "platform_role.grant",
            "outcome": "success",
            "actor_id": None,
            "details": {**expected_details, "changed": False},
        },
        {
            "action": "platform_role.revoke",
            "outcome": "success",
            "actor_id": None,
            "details": {**expected_details, "changed": True},
        },
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        ("grant-platform-role", "metrics-writer"),
        ("grant-platform-role", "admin"),
        ("revoke-platform-role", "METRICS-READER"),
    ],
    ids=["unknown", "admin-is-no-platform-role", "case-matters"],
)
async def test_a_bad_role_name_is_one_clear_error_and_changes_nothing(
    platform: Platform, cli_environment: dict[str, str], arguments: tuple[str, str]
) -> None:
    holder = await new_account(platform, "holder")
    await grant_platform_role(
        platform, None, username=holder.username, role=PlatformRole.METRICS_READER
    )
    mark = await audit_mark(platform)
    command, role = arguments

    result = run_cli("users", command, holder.username, role, env=cli_environment)

    assert result.returncode == 1, result
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: no platform role named {role!r}")
    assert "one of: metrics-reader" in line
    assert await roles_of(platform, holder.username) == (PlatformRole.METRICS_READER,)
    assert await events_since(platform, mark) == []


async def role_holders(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        return int(
            await connection.fetchval("SELECT count(*) FROM users WHERE platform_roles <> '{}'")
        )


async def test_an_unknown_user_is_one_clear_error_and_changes_nothing(
    platform: Platform, cli_environment: dict[str, str]
) -> None:
    holders = await role_holders(platform)
    mark = await audit_mark(platform)

    result = run_cli(
        "users", "grant-platform-role", "nobody-at-all", "metrics-reader", env=cli_environment
    )

    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [
        "error: no user named 'nobody-at-all': username: no such user"
    ]
    assert await role_holders(platform) == holders
    # Refused after it began, so it leaves a failed attempt in the trail, as every mutation does.
    assert await events_since(platform, mark) == [("platform_role.grant", "failed")]


async def test_only_an_admin_may_grant_a_platform_role_through_the_service(
    platform: Platform,
) -> None:
    team_owner = await new_account(platform, "not-admin")
    mark = await audit_mark(platform)

    with pytest.raises(PermissionDeniedError):
        await grant_platform_role(
            platform,
            team_owner.principal,
            username=team_owner.username,
            role=PlatformRole.METRICS_READER,
        )

    assert await roles_of(platform, team_owner.username) == ()
    assert await events_since(platform, mark) == [("platform_role.grant", "denied")]


# Whatever `public_paths` says, and across processes --------------------------------------------


@pytest.fixture
async def platform_without_public_metrics(config: Config) -> AsyncIterator[Platform]:
    """A second process's platform on the same database, whose `public_paths` no longer list
    `/metrics`: the middleware then authenticates the scrape before the route sees it."""
    private = build_config({**config.model_dump(), "public_paths": ("/healthz", "/readyz")})
    platform = create_platform(private)
    await platform.start()
    yield platform
    await platform.stop()


async def test_taking_metrics_off_the_public_paths_changes_no_answer(
    platform_without_public_metrics: Platform, team: Team, admin_token: str
) -> None:
    app = create_app(platform=platform_without_public_metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        anonymous = await client.get("/metrics")
        member = await client.get("/metrics", headers=bearer(team.token(ProjectRole.OWNER)))
        admin = await client.get("/metrics", headers=bearer(admin_token))

    assert anonymous.status_code == 401
    assert member.status_code == 403
    assert admin.status_code == 200


async def test_a_real_server_serves_a_reader_and_takes_in_the_revocation(
    platform: Platform, config: Config, tmp_path: Path
) -> None:
    reader: Account = await new_account(platform, "prometheus")
    await grant_platform_role(
        platform, None, username=reader.username, role=PlatformRole.METRICS_READER
    )

    with running_server(server_environment(config), tmp_path / "serve.log") as server:
        await wait_until_ready(server)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            anonymous = await client.get("/metrics")
            scraped = await client.get("/metrics", headers=bearer(reader.token))
            await revoke_platform_role(
                platform, None, username=reader.username, role=PlatformRole.METRICS_READER
            )
            # The server is another process: it hears of the change from PostgreSQL.
            await until_scrape_answers(client, reader.token, 403)

    assert anonymous.status_code == 401
    assert scraped.status_code == 200, scraped.text
    assert SERIES in scraped.text
