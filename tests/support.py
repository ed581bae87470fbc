"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from aiaas.core.auth import Principal
from aiaas.core.config import Config, build_config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.access import PROJECT_GRANTS, ProjectRole
from aiaas.core.identity.accounts import IssuedToken
from aiaas.core.platform import Platform
from aiaas.embedded.database_roles import RoleCredentials

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


# The roles the test suite's platforms connect as (`aiaas.embedded.database_roles`), shared by
# every test session on a server; the password only matters on a server that asks for one.
TEST_OWNER_ROLE = RoleCredentials("aiaas_test_owner", "aiaas-test-owner")
TEST_APPLICATION_ROLE = RoleCredentials("aiaas_test_application", "aiaas-test-application")


async def create_database_from_template(
    services: Services, template: str, prefix: str, *, owner: RoleCredentials | None = None
) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    owned_by = f' OWNER "{owner.name}"' if owner is not None else ""
    admin = await admin_connection(services)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{owned_by}')
    finally:
        await admin.close()
    return name


async def drop_database(services: Services, name: str) -> None:
    admin = await admin_connection(services)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# Real `aiaas serve` processes -----------------------------------------------------------------

AIAAS_COMMAND = [sys.executable, "-m", "aiaas"]


def stop_gracefully(process: subprocess.Popen[bytes], wait_s: float = 15) -> None:
    """SIGTERM, so that a worker finishes or hands back what it holds; killed after `wait_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """An `aiaas serve` subprocess on a loopback port, its log in a file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_server(environment: dict[str, str], log_path: Path) -> Iterator[RunningServer]:
    """Start `aiaas serve` and kill it on the way out, whatever happened. The log goes to a file
    rather than a pipe: a pipe nobody reads fills up and stalls the server mid-test."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*AIAAS_COMMAND, "serve", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield RunningServer(process=process, port=port, log_path=log_path)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def ready_server(
    config: Config, tmp_path_factory: pytest.TempPathFactory, **variables: str
) -> AsyncIterator[RunningServer]:
    """`aiaas serve` on the module's database and Redis, with `variables` added to its
    environment, once `/readyz` answers 200."""
    environment = server_environment(config, **variables)
    with running_server(environment, tmp_path_factory.mktemp("server") / "serve.log") as running:
        await wait_until_ready(running)
        yield running


async def wait_until_ready(server: RunningServer, timeout_s: float = 60) -> None:
    """Return once `/readyz` answers 200; fail the test, with the server's log, otherwise."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            assert server.process.poll() is None, f"the server exited:\n{server.log()}"
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the server was not ready within {timeout_s:g} s:\n{server.log()}")


def server_environment(config: Config, **variables: str) -> dict[str, str]:
    """The environment of an `aiaas serve` pointed at a test module's database and Redis,
    with its master key, and the entry-point plugins the module's config allows (none, unless
    a module allows some)."""
    plugins = {"AIAAS_PLUGINS": ",".join(config.plugins)} if config.plugins else {}
    return clean_environment(
        AIAAS_DATABASE_URL=str(config.database_url),
        AIAAS_REDIS_URL=str(config.redis_url),
        AIAAS_MASTER_KEY=str(config.master_key),
        AIAAS_DISABLE_PLUGIN_AUTOLOAD="1" if config.disable_plugin_autoload else "0",
        **plugins,
        **variables,
    )


async def poll_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.05
) -> float | None:
    """Seconds until `check()` first holds, or None if it did not within `timeout_s`."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started >= timeout_s:
            return None
        await asyncio.sleep(interval_s)


@dataclass(frozen=True)
class UserWithToken:
    principal: Principal
    token: IssuedToken

    @property
    def authorization(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token.secret}"}


async def user_with_token(platform: Platform, username: str) -> UserWithToken:
    """A new non-admin user and an API token of theirs, made the way an operator would."""
    user = await identity.create_user(platform, None, username=username)
    token = await identity.create_api_token(platform, None, name="test", user_id=user.id)
    async with platform.metadata.acquire() as connection:
        principal = await identity.verify_token(connection, token.secret, "test")
    return UserWithToken(principal=principal, token=token)


async def sees_project(server: RunningServer, token: str, slug: str) -> bool:
    """Whether the server shows the holder of `token` the project `slug`."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        response = await client.post(
            "/graphql",
            json={
                "query": "query($slug: String!) { project(slug: $slug) { slug } }",
                "variables": {"slug": slug},
            },
            headers={"authorization": f"Bearer {token}"},
        )
    body = response.json()
    # A member the server's policy does not know yet is told FORBIDDEN rather than "not found":
    # the database says they belong, the server's copy of the policy does not (yet).
    if error_codes(body) == ["FORBIDDEN"]:
        return False
    project = data_of((response.status_code, body))["project"]
    assert project in (None, {"slug": slug}), project
    return project is not None


@dataclass(frozen=True)
class Account:
    """A user who is no admin, and a token of theirs."""

    principal: Principal
    token: str

    @property
    def username(self) -> str:
        return self.principal.username


async def new_account(platform: Platform, label: str) -> Account:
    user = await identity.create_user(platform, None, username=f"{label}-{uuid.uuid4().hex[:8]}")
    issued = await identity.create_api_token(platform, None, user_id=user.id, name="setup")
    principal = Principal(
        user_id=user.id, username=user.username, is_admin=False, authenticated_by="test"
    )
    return Account(principal=principal, token=issued.secret)


@dataclass(frozen=True)
class Team:
    """A project and a member of it per role, each with a token."""

    project_id: uuid.UUID
    slug: str
    members: dict[ProjectRole, Account]

    def token(self, role: ProjectRole) -> str:
        return self.members[role].token


async def new_team(platform: Platform, slug: str, roles: tuple[ProjectRole, ...]) -> Team:
    """A project owned by a new account, with a new member in each of `roles`, once the
    policy grants each what their role holds."""
    from aiaas.core.identity.members import add_member
    from aiaas.core.identity.projects import create_project

    owner = await new_account(platform, "owner")
    project = await create_project(platform, owner.principal, slug=slug, name=slug.title())
    await until_policy_holds(platform, owner.principal, project.id, ProjectRole.OWNER)
    members = {ProjectRole.OWNER: owner}
    for role in roles:
        members[role] = await new_account(platform, role.value)
        await add_member(
            platform, owner.principal, project.id, username=members[role].username, role=role
        )
        await until_policy_holds(platform, members[role].principal, project.id, role)
    return Team(project_id=project.id, slug=project.slug, members=members)


async def until_policy_holds(
    platform: Platform, principal: Principal, project_id: uuid.UUID, role: ProjectRole | None
) -> None:
    """Wait until the enforcer grants `principal` exactly what `role` holds in the project.

    The enforcer keeps the policy in memory and reloads it when PostgreSQL announces a change:
    without this wait a test could be refused because the policy is stale, and pass for the
    wrong reason."""
    expected = {
        (grant.resource, grant.action): role is not None and granted_to.rank <= role.rank
        for granted_to, grants in PROJECT_GRANTS.items()
        for grant in grants
    }
    async with asyncio.timeout(10):
        while True:
            actual = {
                key: await platform.enforcer.enforce(principal, str(project_id), *key)
                for key in expected
            }
            if actual == expected:
                return
            await asyncio.sleep(0.02)


# Audit trail and leftovers of the dataset tests ----------------------------------------------


async def audit_mark(platform: Platform) -> int:
    """The id of the latest audit event: what `events_since` counts from."""
    async with platform.metadata.acquire() as connection:
        return int(await connection.fetchval("SELECT coalesce(max(id), 0) FROM audit_events"))


async def events_since(platform: Platform, mark: int) -> list[tuple[str, str]]:
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT action, outcome FROM audit_events WHERE id > $1 ORDER BY id", mark
        )
    return [(row["action"], row["outcome"]) for row in rows]


async def audit_rows_since(platform: Platform, mark: int, **where: Any) -> list[dict[str, Any]]:
    """Every audit event after `mark` whose columns equal `where`, whole, oldest first."""
    conditions = ["id > $1"] + [f"{column} = ${n}" for n, column in enumerate(where, start=2)]
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            f"SELECT * FROM audit_events WHERE {' AND '.join(conditions)} ORDER BY id",
            mark,
            *where.values(),
        )
    return [dict(row) for row in rows]


def audit_row_text(row: dict[str, Any]) -> str:
    """An audit event as one text, to look for what must not be in it."""
    return json.dumps(row, default=str)


def count_files(directory: Path) -> int:
    return sum(1 for path in directory.rglob("*") if path.is_file()) if directory.exists() else 0


@dataclass(frozen=True)
class Footprint:
    """What an upload may leave: rows, and files in the artifact store and the scratch dir."""

    versions: int
    datasets: int
    artifact_objects: int
    artifact_staging: int
    scratch_files: int


async def footprint(platform: Platform) -> Footprint:
    config = platform.config
    async with platform.metadata.acquire() as connection:
        versions = await connection.fetchval("SELECT count(*) FROM dataset_versions")
        datasets = await connection.fetchval("SELECT count(*) FROM datasets")
    return Footprint(
        versions=versions,
        datasets=datasets,
        artifact_objects=count_files(config.resolved_artifact_dir / "objects"),
        artifact_staging=count_files(config.resolved_artifact_dir / "tmp"),
        scratch_files=count_files(config.scratch_dir),
    )


async def bootstrap_admin_principal(platform: Platform) -> Principal:
    """The principal of the admin `bootstrap_admin` made (the `admin_token` fixture), as the
    domain functions take it."""
    async with platform.metadata.acquire() as connection:
        admin_id = await connection.fetchval(
            "SELECT id FROM users WHERE username = $1", identity.BOOTSTRAP_ADMIN
        )
    return Principal(user_id=admin_id, username="admin", is_admin=True, authenticated_by="test")


@dataclass(frozen=True)
class Leftovers:
    """What a failed operation must not leave: scratch files, half-stored artifacts, and
    stored artifacts no row refers to."""

    scratch_files: tuple[str, ...] = ()
    staged_artifacts: int = 0
    unreferenced_artifacts: tuple[str, ...] = ()


async def leftovers(platform: Platform) -> Leftovers:
    config = platform.config
    scratch = config.scratch_dir
    async with platform.metadata.acquire() as connection:
        # A deleted version's artifact waits for the garbage collector by design: it is not
        # left over from a failure.
        referenced = {
            row[0]
            for row in await connection.fetch(
                "SELECT artifact_key FROM dataset_versions "
                "UNION SELECT artifact_key FROM model_versions "
                "UNION SELECT artifact_key FROM job_checkpoints"
            )
        }
    stored = [key async for key in platform.artifacts.keys()]  # noqa: SIM118 - a store, not a dict
    return Leftovers(
        scratch_files=tuple(
            sorted(str(path.relative_to(scratch)) for path in scratch.rglob("*") if path.is_file())
        )
        if scratch.exists()
        else (),
        staged_artifacts=count_files(config.resolved_artifact_dir / "tmp"),
        unreferenced_artifacts=tuple(sorted(set(stored) - referenced)),
    )


async def project_state(platform: Platform, project_id: uuid.UUID) -> dict[str, Any]:
    """Every row of the project that a mutation could change. Left out: the audit trail (a
    refusal is written there) and prediction samples (serving goes on); and the rollout's own
    bookkeeping, which a serving process keeps whatever the project's state."""
    tables = (
        "project_members",
        "datasets",
        "dataset_versions",
        "quality_reports",
        "jobs",
        "models",
        "model_versions",
        "deployments",
    )
    async with platform.metadata.acquire() as connection:
        state = {
            table: await connection.fetchval(
                "SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]') FROM ("
                "SELECT to_jsonb(t) - 'rollout_heartbeat_at' - 'rollout_claimed_by' AS r "
                f"FROM {table} t WHERE project_id = $1) AS rows",
                project_id,
            )
            for table in tables
        }
        state["projects"] = await connection.fetchval(
            "SELECT to_jsonb(p) FROM projects p WHERE id = $1", project_id
        )
        state["model_aliases"] = await connection.fetchval(
            "SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY to_jsonb(a)::text), '[]') "
            "FROM model_aliases a JOIN models m ON m.id = a.model_id WHERE m.project_id = $1",
            project_id,
        )
    return state


# A hand-written graphql-transport-ws client ---------------------------------------------------

GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")


async def open_socket(
    server: RunningServer, *, origin: str | None = None, open_timeout_s: float = 5
) -> ClientConnection:
    return await connect(
        server.websocket_url,
        subprotocols=[GRAPHQL_TRANSPORT_WS],
        origin=Origin(origin) if origin is not None else None,
        open_timeout=open_timeout_s,
        close_timeout=2,
        proxy=None,
    )


async def send(websocket: ClientConnection, message: dict[str, Any]) -> None:
    await websocket.send(json.dumps(message))


def text_message(frame: str | bytes) -> dict[str, Any]:
    """A graphql-transport-ws message, read from a frame that must be text: the protocol sends
    nothing else, and a browser's graphql-ws client drops a binary frame."""
    assert isinstance(frame, str), f"a binary frame: {frame!r}"
    message: dict[str, Any] = json.loads(frame)
    return message


async def receive(websocket: ClientConnection, timeout_s: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        return text_message(await websocket.recv())


async def messages_until_closed(
    websocket: ClientConnection, timeout_s: float = 5
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message the server sends until it closes the socket, and the close code it gave;
    None for the code if the socket was still open after `timeout_s`."""
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for raw in websocket:
                messages.append(text_message(raw))
    except ConnectionClosed:
        pass
    except TimeoutError:
        return messages, None
    return messages, websocket.close_code


async def acknowledged_socket(server: RunningServer, token: str) -> ClientConnection:
    websocket = await open_socket(server)
    await send(
        websocket, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    )
    ack = await receive(websocket)
    assert ack["type"] == "connection_ack", ack
    return websocket


async def subscription_context(platform: Platform, token: str | None, request_id: str) -> Any:
    """The context a graphql-transport-ws connection gives a subscription once its
    `connection_init` carried `token`: to run a subscription in process."""
    from aiaas.core.auth import Credentials
    from aiaas.graphql.context import RequestContext
    from aiaas.graphql.loaders import make_loaders

    credentials = Credentials(authorization=f"Bearer {token}" if token else None)
    return RequestContext(
        platform=platform,
        request=None,  # type: ignore[arg-type]  # nothing a subscription reads
        response=None,
        request_id=request_id,
        credentials=credentials,
        principal=await platform.authenticate(credentials),
        loaders=make_loaders(platform),
    )


async def subscription_results(
    platform: Platform, token: str, document: str, variables: dict[str, Any], field: str
) -> list[dict[str, Any]]:
    """Every result of a subscription (its root `field`), run as a graphql-ws connection runs
    it, until the subscription ends."""
    from aiaas.graphql.schema import build_schema

    context = await subscription_context(platform, token, "subscription")
    results = await build_schema(platform).subscribe(document, variables, context)
    collected = []
    async with asyncio.timeout(30):
        async for result in results:  # type: ignore[union-attr]
            assert not result.errors, result.errors
            collected.append(result.data[field])
    return collected


def with_trees(config: Config, **more: Any) -> Config:
    """`config` with the trees extra loaded from its entry point, as an operator who installed
    it would have it; `more` settings besides."""
    return build_config(
        {**config.model_dump(), "disable_plugin_autoload": False, "plugins": ["trees"], **more}
    )


EVERY_REQUEST_SAMPLED = {"prediction_sample_rate": 1.0, "drift_min_samples": 50}
"""Every request sampled, so that a drift check has enough samples at once."""


def unique(prefix: str) -> str:
    """A name no other test of the session uses (users, projects and slugs live in shared
    databases and servers)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
