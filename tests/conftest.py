"""Real services for the tests.

PostgreSQL and Redis come from `AIAAS_DATABASE_URL` and `AIAAS_REDIS_URL` when they are set (CI
sets them to the machine's servers); without them, the session starts the embedded ones that
`aiaas dev` uses. The schema is migrated once into a template database, and each test module gets
its own database copied from it (`CREATE DATABASE ... TEMPLATE ...`) and its own arq queue.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from hypothesis import settings
from redis.asyncio import Redis

from aiaas import migrations
from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.identity.accounts import bootstrap_admin
from aiaas.core.platform import Platform
from aiaas.embedded.database_roles import ensure_login_role
from aiaas.embedded.postgres import EmbeddedPostgres, read_or_create_secret
from aiaas.embedded.processes import Child
from aiaas.embedded.redis import EmbeddedRedis
from object_store import ObjectStoreServer, seaweedfs
from support import (
    TEST_APPLICATION_ROLE,
    TEST_OWNER_ROLE,
    Leftovers,
    Services,
    admin_connection,
    clean_environment,
    create_database_from_template,
    drop_database,
    leftovers,
    redis_with_database,
    with_database,
)

# In CI the examples are fixed, so that a run is reproducible; elsewhere they are random, so
# that each run explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TEST_REDIS_DATABASE = int(os.environ.get("AIAAS_TEST_REDIS_DATABASE", "15"))
"""A Redis database number the tests may flush without touching anything else. Two test runs
side by side each need their own."""

# XLA compiles are the slow part of the training tests on a small machine: keep them across test
# processes and runs. Set before anything imports JAX; worker subprocesses inherit it.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/aiaas-tests/jax-compilation")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(scope="session")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    database_url = os.environ.get("AIAAS_DATABASE_URL")
    redis_url = os.environ.get("AIAAS_REDIS_URL")
    children: list[Child] = []
    data_dir = tmp_path_factory.mktemp("embedded-services")
    if database_url is None:
        postgres = EmbeddedPostgres(data_dir)
        password = read_or_create_secret(data_dir / "postgres.password")
        postgres.initialize(password)
        child, database_url = await postgres.start(password)
        children.append(child)
    if redis_url is None:
        password = read_or_create_secret(data_dir / "redis.password")
        child, redis_url = await EmbeddedRedis(data_dir).start(password)
        children.append(child)
    yield Services(server_url=database_url, redis_url=redis_url)
    for child in reversed(children):
        await child.stop(10)


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStoreServer]:
    """A real S3 gateway (SeaweedFS) for the `s3` artifact store, started on first use."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
async def template_database(services: Services) -> AsyncIterator[str]:
    """The migrated schema, owned by the test owner role, the application role granted: the
    platform under test connects as the application role, as in production."""
    name = f"aiaas_template_{uuid.uuid4().hex[:8]}"
    admin = await admin_connection(services)
    try:
        for role in (TEST_OWNER_ROLE, TEST_APPLICATION_ROLE):
            await ensure_login_role(admin, role)
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{TEST_OWNER_ROLE.name}"')
        await migrations.upgrade(
            TEST_OWNER_ROLE.url_on(with_database(services.server_url, name)),
            application_role=TEST_APPLICATION_ROLE.name,
        )
        yield name
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _module_slug(request: pytest.FixtureRequest) -> str:
    name = request.node.name.removesuffix(".py")
    return re.sub(r"[^a-z0-9]+", "_", name.lower())[:30]


@pytest.fixture(scope="module")
async def database_url(
    services: Services, template_database: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A freshly migrated database of this test module's own, as the application role."""
    name = await create_database_from_template(
        services, template_database, f"test_{_module_slug(request)}", owner=TEST_OWNER_ROLE
    )
    yield TEST_APPLICATION_ROLE.url_on(with_database(services.server_url, name))
    await drop_database(services, name)


@pytest.fixture(scope="module")
def database_owner_url(database_url: str) -> str:
    """The module's database as the role that owns its schema."""
    return TEST_OWNER_ROLE.url_on(database_url)


@pytest.fixture(scope="module")
async def redis_url(services: Services) -> str:
    url = redis_with_database(services.redis_url, TEST_REDIS_DATABASE)
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    return url


@pytest.fixture(scope="module")
def config(
    database_url: str,
    database_owner_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Config:
    data_dir = tmp_path_factory.mktemp("data")
    return build_config(
        {
            "mode": "dev",
            "database_url": database_url,
            "database_owner_url": database_owner_url,
            "redis_url": redis_url,
            "data_dir": data_dir,
            "disable_plugin_autoload": True,
            "queue_name": f"aiaas:test:{_module_slug(request)}:{uuid.uuid4().hex[:6]}",
            "master_key": MasterKey.generate().encoded(),
        }
    )


@pytest.fixture(scope="module")
async def platform(config: Config, request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    platform = create_platform(config)
    await platform.start()
    yield platform
    # Whatever failed in the module (an upload refused, a transformation cancelled) left
    # nothing behind: no scratch file, no half-stored artifact, no artifact no row refers to.
    # A module that makes orphans on purpose (to collect them) says so and why.
    try:
        left = await leftovers(platform)
    finally:
        await platform.stop()
    if not getattr(request.module, "LEAVES_UNREFERENCED_ARTIFACTS", None):
        assert left == Leftovers(), f"{request.module.__name__} left files"


@pytest.fixture(scope="module")
async def admin_token(platform: Platform) -> str:
    issued = await bootstrap_admin(platform)
    assert issued is not None, "each module starts from an empty database"
    return issued.secret


@pytest.fixture(scope="module")
def app(platform: Platform) -> object:
    return create_app(platform=platform)


@asynccontextmanager
async def asgi_client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        yield client


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


@pytest.fixture(scope="module")
async def module_client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """The API's client for module-scoped fixtures (a team's deployments made once)."""
    async with asgi_client(app) as client:
        yield client


@pytest.fixture
def cli_environment(config: Config) -> dict[str, str]:
    """The environment for an `aiaas` subprocess pointed at this module's services."""
    return clean_environment(
        AIAAS_DATABASE_URL=str(config.database_url),
        AIAAS_DATABASE_OWNER_URL=str(config.database_owner_url),
        AIAAS_REDIS_URL=str(config.redis_url),
        AIAAS_DISABLE_PLUGIN_AUTOLOAD="1",
        AIAAS_MASTER_KEY=str(config.master_key),
    )
