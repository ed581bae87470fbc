"""One test per hook, named `test_<hook name>` (tests/test_docs.py checks that each exists).

Each test registers a small throwaway plugin on a real plugin manager and shows the hook's effect
through the code path that uses it: the `Platform`, the registries, the GraphQL schema, the CLI.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import click
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import strawberry
from click.testing import CliRunner

import aiaas.cli
from aiaas.app import create_app
from aiaas.core.audit import AuditedChange, AuditEvent
from aiaas.core.auth import GLOBAL_DOMAIN, Authenticator, Credentials, PolicyEnforcer, Principal
from aiaas.core.config import Config, build_config
from aiaas.core.data.expectations import check_table, vet_expectations
from aiaas.core.errors import (
    ArtifactNotFoundError,
    AuthenticationError,
    DuplicateSpecError,
    InputError,
    PermissionDeniedError,
    PluginError,
    UnknownBackendError,
)
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.accounts import verify_token
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import JobEvent, JobState, claim_job, finish_job, insert_job
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.registry import load_registries
from aiaas.core.runtimes import LoadedModel, ServingRuntime
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.core.specs import (
    ArtifactStoreSpec,
    AuthenticatorSpec,
    GraphQLContribution,
    MetadataStoreSpec,
    ServingRuntimeSpec,
    TrainerSpec,
    ValidatorSpec,
)
from aiaas.core.storage import ArtifactStore, MetadataStore, StoredArtifact
from aiaas.core.trainers import (
    HyperParameter,
    Progress,
    TrainedModel,
    Trainer,
    TrainingReporter,
    TrainingRun,
    vet_hyperparameters,
)
from aiaas.core.validation import CheckResult, Expectation, Validator
from aiaas.graphql.permissions import requires
from aiaas.graphql.schema import build_schema
from aiaas.plugins.casbin_policy import CasbinPolicyEnforcer
from aiaas.plugins.postgres_metadata import PostgresMetadataStore
from support import data_of, error_codes, graphql

# Helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_config() -> Config:
    """For hooks whose effect shows without PostgreSQL or Redis: building a `Platform` does no
    I/O."""
    return build_config({"disable_plugin_autoload": True})


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    async with platform.metadata.acquire() as connection:
        return await verify_token(connection, admin_token, "api-token")


def manager_with(config: Config, *plugins: object) -> AiaasPluginManager:
    """The manager a process would build, plus `plugins`, registered after the built-ins as an
    entry-point plugin would be."""
    manager = create_plugin_manager(config)
    for plugin in plugins:
        manager.register_plugin(plugin, type(plugin).__name__)
    return manager


def with_settings(config: Config, **changes: Any) -> Config:
    return build_config({**config.model_dump(), **changes})


@asynccontextmanager
async def running_platform(config: Config, *plugins: object) -> AsyncIterator[Platform]:
    platform = Platform(config, manager_with(config, *plugins))
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


# Storage ------------------------------------------------------------------------------------


class InMemoryArtifactStore(ArtifactStore):
    def __init__(self, config: Config) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredArtifact:
        data = b"".join([chunk async for chunk in chunks])
        key = hashlib.sha256(data).hexdigest()
        self.blobs[key] = data
        return StoredArtifact(key=key, size_bytes=len(data))

    async def open(self, key: str) -> AsyncIterator[bytes]:
        if key not in self.blobs:
            raise ArtifactNotFoundError(f"no artifact {key}")
        yield self.blobs[key]

    async def exists(self, key: str) -> bool:
        return key in self.blobs

    async def delete(self, key: str) -> bool:
        return self.blobs.pop(key, None) is not None

    async def keys(self) -> AsyncIterator[str]:
        for key in list(self.blobs):
            yield key


class InMemoryArtifactsPlugin:
    @hookimpl
    def aiaas_artifact_stores(self) -> Iterable[ArtifactStoreSpec]:
        return [ArtifactStoreSpec(name="in-memory", factory=InMemoryArtifactStore)]


async def test_aiaas_artifact_stores(offline_config: Config) -> None:
    config = with_settings(offline_config, artifact_store="in-memory")
    platform = Platform(config, manager_with(config, InMemoryArtifactsPlugin()))

    assert isinstance(platform.artifacts, InMemoryArtifactStore)
    assert platform.registries.artifact_stores.get("in-memory").plugin == "InMemoryArtifactsPlugin"
    stored = await platform.artifacts.put_bytes(b"weights")
    assert await platform.artifacts.read_bytes(stored.key) == b"weights"
    # Without the plugin, the name that the config picks is unknown.
    with pytest.raises(UnknownBackendError, match="in-memory"):
        Platform(config, manager_with(config))


class CountingMetadataStore(PostgresMetadataStore):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.connects = 0

    async def connect(self) -> None:
        self.connects += 1
        await super().connect()


class CountingMetadataPlugin:
    @hookimpl
    def aiaas_metadata_stores(self) -> Iterable[MetadataStoreSpec]:
        return [MetadataStoreSpec(name="counting-postgresql", factory=CountingMetadataStore)]


async def test_aiaas_metadata_stores(config: Config) -> None:
    counting = with_settings(config, metadata_store="counting-postgresql")

    async with running_platform(counting, CountingMetadataPlugin()) as platform:
        assert isinstance(platform.metadata, CountingMetadataStore)
        assert platform.metadata.connects == 1
        async with platform.metadata.acquire() as connection:
            assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1


class ShadowingArtifactsPlugin:
    @hookimpl
    def aiaas_artifact_stores(self) -> Iterable[ArtifactStoreSpec]:
        return [ArtifactStoreSpec(name="filesystem", factory=InMemoryArtifactStore)]


def test_two_plugins_registering_one_name_is_a_startup_error(offline_config: Config) -> None:
    # The config picks backends by name, so silently preferring one plugin would be a guess.
    with pytest.raises(DuplicateSpecError, match="'filesystem' is registered by both"):
        Platform(offline_config, manager_with(offline_config, ShadowingArtifactsPlugin()))


# Compute ------------------------------------------------------------------------------------


class TinyTrainer(Trainer):
    """A third-party trainer: the mean of the target, whatever the features."""

    task = "regression"

    def __init__(self, config: Config) -> None:
        del config

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return [HyperParameter(name="learning_rate", type="float", default=0.1, minimum=0.0)]

    def target_problem(self, column_type: str) -> str | None:
        return None if column_type in ("int64", "float64") else "the target must be a number"

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        return {}

    def fit(self, run: TrainingRun, reporter: TrainingReporter) -> TrainedModel:
        mean = pc.mean(run.table.column(run.target)).as_py()
        reporter.progress(
            Progress(
                step=1, total_steps=1, epoch=1, metrics={"loss": 0.0}, examples_per_s=1.0, eta_s=0.0
            )
        )
        return TrainedModel(
            format="constant",
            bundle=str(mean).encode(),
            signature=ModelSignature(
                inputs=(), outputs=(TensorSpec(name="value", dtype="float32", shape=(-1,)),)
            ),
            metrics={"mean": mean},
            steps=1,
        )


class TinyServingRuntime(ServingRuntime):
    def __init__(self, config: Config) -> None:
        del config

    def supported_model_formats(self) -> frozenset[str]:
        return frozenset({"tiny"})

    def load(self, bundle: bytes, *, max_batch_size: int) -> LoadedModel:
        raise NotImplementedError("listed only: these tests never serve")


class NoPaddingValidator(Validator):
    """A third-party check: text values carry no leading or trailing spaces."""

    def __init__(self, config: Config) -> None:
        del config

    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({"no_padding"})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        return [] if expectation.get("column") in columns else ["no such column"]

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        results = []
        for expectation in expectations:
            values = table[expectation["column"]].to_pylist()
            padded = [v for v in values if isinstance(v, str) and v != v.strip()]
            results.append(
                CheckResult(
                    name=f"no_padding({expectation['column']})",
                    kind="no_padding",
                    dimension="accuracy",
                    passed=not padded,
                    failing_rows=len(padded),
                    blocking=bool(expectation.get("blocking", True)),
                    message=f"{len(padded)} padded values",
                    examples=padded[:5],
                )
            )
        return results


class ComputePlugin:
    @hookimpl
    def aiaas_trainers(self) -> Iterable[TrainerSpec]:
        return [TrainerSpec(name="tiny-mlp", factory=TinyTrainer, description="A tiny MLP.")]

    @hookimpl
    def aiaas_serving_runtimes(self) -> Iterable[ServingRuntimeSpec]:
        return [ServingRuntimeSpec(name="tiny-runtime", factory=TinyServingRuntime)]

    @hookimpl
    def aiaas_validators(self) -> Iterable[ValidatorSpec]:
        return [ValidatorSpec(name="no-padding", factory=NoPaddingValidator)]


def test_aiaas_trainers(offline_config: Config) -> None:
    registries = load_registries(manager_with(offline_config, ComputePlugin()))

    spec = registries.trainers.get("tiny-mlp")
    assert (spec.plugin, spec.description) == ("ComputePlugin", "A tiny MLP.")
    trainer = spec.factory(offline_config)
    assert "learning_rate" in trainer.hyperparameter_schema()["properties"]
    # The built-in trainers are registered beside it, by the built-in plugin.
    assert registries.trainers.get("tabular-classifier").plugin == "aiaas.plugins.flax_trainers"
    _, problems = vet_hyperparameters(trainer.hyperparameters(), {"learning_rate": -1})
    assert problems == {"learning_rate": "must be at least 0"}


def test_aiaas_serving_runtimes(offline_config: Config) -> None:
    registries = load_registries(manager_with(offline_config, ComputePlugin()))

    spec = registries.serving_runtimes.get("tiny-runtime")
    assert spec.plugin == "ComputePlugin"
    assert spec.factory(offline_config).supported_model_formats() == {"tiny"}


def test_aiaas_validators(offline_config: Config) -> None:
    platform = Platform(offline_config, manager_with(offline_config, ComputePlugin()))
    table = pa.table({"name": ["ada", " bob", "cy "], "age": [1, 2, 3]})
    expectations = [{"kind": "no_padding", "column": "name"}, {"kind": "not_null", "column": "age"}]

    vet_expectations(platform, expectations, {"name": "string", "age": "integer"})
    results = {result.name: result for result in check_table(platform, table, expectations)}

    assert platform.registries.validators.get("no-padding").plugin == "ComputePlugin"
    # The plugin's kind is checked by the plugin, beside the built-in kinds and checks.
    assert results["no_padding(name)"].failing_rows == 2
    assert results["no_padding(name)"].examples == [" bob", "cy "]
    assert results["not_null(age)"].passed
    with pytest.raises(InputError, match="invalid expectations"):
        vet_expectations(platform, [{"kind": "no_padding", "column": "nope"}], {"name": "string"})


class BrokenTrainersPlugin:
    @hookimpl
    def aiaas_trainers(self) -> Iterable[TrainerSpec]:
        raise RuntimeError("cannot reach the model zoo")


def test_a_hook_that_raises_is_recorded_and_left_out(offline_config: Config) -> None:
    manager = manager_with(offline_config, ComputePlugin(), BrokenTrainersPlugin())

    registries = load_registries(manager)

    # One broken plugin must not take the others, or the platform, down with it.
    assert "tiny-mlp" in registries.trainers.names()
    status = {status.name: status for status in manager.report()}["BrokenTrainersPlugin"]
    assert status.status == "degraded"
    assert [failure.stage for failure in status.failures] == ["hook aiaas_trainers"]
    assert "model zoo" in status.failures[0].reason


# Auth ---------------------------------------------------------------------------------------


class HeaderAuthenticator(Authenticator):
    def __init__(self, config: Config) -> None:
        del config

    async def authenticate(
        self, credentials: Credentials, metadata: MetadataStore
    ) -> Principal | None:
        scheme, _, username = (credentials.authorization or "").partition(" ")
        if scheme != "Test":
            return None
        return Principal(
            user_id=uuid.uuid5(uuid.NAMESPACE_DNS, username),
            username=username,
            is_admin=False,
            authenticated_by="test-header",
        )


class HeaderAuthPlugin:
    @hookimpl
    def aiaas_authenticators(self) -> Iterable[AuthenticatorSpec]:
        return [AuthenticatorSpec(name="test-header", factory=HeaderAuthenticator)]


async def test_aiaas_authenticators(offline_config: Config) -> None:
    credentials = Credentials(authorization="Test alice")
    platform = Platform(offline_config, manager_with(offline_config, HeaderAuthPlugin()))

    principal = await platform.authenticate(credentials)

    assert principal is not None
    assert (principal.username, principal.authenticated_by) == ("alice", "test-header")
    # The built-in API tokens alone do not recognise these credentials.
    with pytest.raises(AuthenticationError, match="unrecognised credentials"):
        await Platform(offline_config, manager_with(offline_config)).authenticate(credentials)


class ReadOnlyPolicy(PolicyEnforcer):
    async def enforce(self, principal: Principal, domain: str, resource: str, action: str) -> bool:
        return action == "read"


class ReadOnlyPolicyPlugin:
    def __init__(self) -> None:
        self.configs: list[Config] = []

    @hookimpl
    def aiaas_policy_enforcer(self, config: Config) -> PolicyEnforcer | None:
        self.configs.append(config)
        return ReadOnlyPolicy()


class AbstainingPolicyPlugin:
    @hookimpl
    def aiaas_policy_enforcer(self, config: Config) -> PolicyEnforcer | None:
        return None


async def test_aiaas_policy_enforcer(offline_config: Config) -> None:
    admin = Principal(user_id=uuid.uuid4(), username="root", is_admin=True, authenticated_by="t")
    read_only = ReadOnlyPolicyPlugin()

    platform = Platform(offline_config, manager_with(offline_config, read_only))

    assert read_only.configs == [offline_config]
    assert isinstance(platform.enforcer, ReadOnlyPolicy)
    assert await platform.authorize(admin, GLOBAL_DOMAIN, "project", "read") is admin
    # The built-in Casbin policy lets an admin do anything; the plugin's decision wins.
    with pytest.raises(PermissionDeniedError):
        await platform.authorize(admin, GLOBAL_DOMAIN, "project", "create")
    # firstresult: returning None leaves the decision to the next implementation.
    abstaining = Platform(offline_config, manager_with(offline_config, AbstainingPolicyPlugin()))
    assert isinstance(abstaining.enforcer, CasbinPolicyEnforcer)
    assert await abstaining.authorize(admin, GLOBAL_DOMAIN, "project", "create") is admin


# Lifecycle and observers --------------------------------------------------------------------


class AsyncLifecyclePlugin:
    """Returns awaitables, which the platform must await, and uses the connections in them."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def aiaas_startup(self, platform: Platform) -> Awaitable[None] | None:
        return self._use_services(platform, "startup")

    @hookimpl
    def aiaas_shutdown(self, platform: Platform) -> Awaitable[None] | None:
        return self._use_services(platform, "shutdown")

    async def _use_services(self, platform: Platform, moment: str) -> None:
        await platform.metadata.ping()
        await platform.redis.ping()
        self.seen.append(moment)


class SyncLifecyclePlugin:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def aiaas_startup(self, platform: Platform) -> Awaitable[None] | None:
        self.seen.append("startup")
        return None

    @hookimpl
    def aiaas_shutdown(self, platform: Platform) -> Awaitable[None] | None:
        self.seen.append("shutdown")
        return None


async def test_aiaas_startup(config: Config) -> None:
    awaiting, plain = AsyncLifecyclePlugin(), SyncLifecyclePlugin()
    platform = Platform(config, manager_with(config, awaiting, plain))
    assert (awaiting.seen, plain.seen) == ([], [])

    await platform.start()
    try:
        # The async hook reached PostgreSQL and Redis: they are up before the hook runs.
        assert (awaiting.seen, plain.seen) == (["startup"], ["startup"])
        assert platform.plugins.failures == []
    finally:
        await platform.stop()


async def test_aiaas_shutdown(config: Config) -> None:
    awaiting, plain = AsyncLifecyclePlugin(), SyncLifecyclePlugin()

    async with running_platform(config, awaiting, plain) as platform:
        assert "shutdown" not in awaiting.seen + plain.seen

    # The async hook still reached PostgreSQL and Redis: they close after the hook ran.
    assert (awaiting.seen, plain.seen) == (["startup", "shutdown"], ["startup", "shutdown"])
    assert platform.plugins.failures == []


class AuditRecorder:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def aiaas_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)


async def change_that_fails_after_its_audit_event(platform: Platform, actor: Principal) -> None:
    async with AuditedChange(platform, actor, "project.create") as change:
        await change.record(object_type="project", object_id="rolled-back")
        raise RuntimeError("the effect failed after its audit event was written")


async def test_aiaas_audit_event(config: Config, admin: Principal) -> None:
    recorder = AuditRecorder()
    async with running_platform(config, recorder) as platform:
        project = await create_project(platform, admin, slug="audited", name="Audited")
        with pytest.raises(RuntimeError, match="effect failed"):
            await change_that_fails_after_its_audit_event(platform, admin)
        async with platform.metadata.acquire() as connection:
            durable_ids = await connection.fetch("SELECT object_id FROM audit_events")

    assert [(e.action, e.outcome, e.object_id) for e in recorder.events] == [
        ("project.create", "success", str(project.id))
    ]
    assert recorder.events[0].actor_name == "admin"
    # Observers hear only of what is durable: the rolled-back event was never written.
    assert "rolled-back" not in {row["object_id"] for row in durable_ids}


class JobEventRecorder:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    @hookimpl
    def aiaas_job_event(self, event: JobEvent) -> None:
        self.events.append(event)


async def test_aiaas_job_event(config: Config, admin: Principal) -> None:
    recorder = JobEventRecorder()
    async with running_platform(config, recorder) as platform:
        project = await create_project(platform, admin, slug="job-events", name="Job events")
        async with platform.metadata.transaction() as connection:
            job = await insert_job(
                connection, project_id=project.id, kind="noop", payload={}, created_by=None
            )
        await claim_job(platform, job.id, "worker-a", stale_after_s=30)
        # A duplicate delivery claims nothing, so it changes no state and tells no observer.
        assert await claim_job(platform, job.id, "worker-b", stale_after_s=30) is None
        await finish_job(platform, job.id, "worker-a", JobState.SUCCEEDED, "done")

    assert [(e.job_id, e.state, e.attempt, e.reason) for e in recorder.events] == [
        (job.id, JobState.RUNNING, 1, None),
        (job.id, JobState.SUCCEEDED, 1, "done"),
    ]
    assert {(e.project_id, e.kind) for e in recorder.events} == {(project.id, "noop")}


# Extensions of the API and the CLI ----------------------------------------------------------


@strawberry.type
class GreetingQuery:
    @strawberry.field(extensions=requires("greeting", "read"), description="A plugin's field.")
    def greeting(self) -> str:
        return "hello from a plugin"


@strawberry.type
class UnguardedQuery:
    @strawberry.field
    def unguarded_greeting(self) -> str:
        return "anyone may read this"


class GreetingSchemaPlugin:
    @hookimpl
    def aiaas_graphql_schema(self) -> Iterable[GraphQLContribution]:
        return [GraphQLContribution(name="greeting", query=GreetingQuery)]


class UnguardedSchemaPlugin:
    @hookimpl
    def aiaas_graphql_schema(self) -> Iterable[GraphQLContribution]:
        return [GraphQLContribution(name="unguarded", query=UnguardedQuery)]


async def test_aiaas_graphql_schema(config: Config, admin_token: str) -> None:
    async with running_platform(config, GreetingSchemaPlugin()) as platform:
        assert "greeting: String!" in build_schema(platform).as_str()
        transport = httpx.ASGITransport(app=create_app(platform=platform))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            answered = data_of(await graphql(client, "{ greeting }", token=admin_token))
            _, anonymous = await graphql(client, "{ greeting }")

    assert answered == {"greeting": "hello from a plugin"}
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    # A field without a permission would be open to anyone: the schema refuses to build.
    unguarded = Platform(config, manager_with(config, UnguardedSchemaPlugin()))
    with pytest.raises(PluginError, match=r"without a permission: Query\.unguardedGreeting"):
        build_schema(unguarded)


@click.command("greet")
def greet_command() -> None:
    """Greet from a plugin."""
    click.echo("hello from a plugin")


@click.command("plugins")
def shadowing_plugins_command() -> None:
    click.echo("a plugin's own `plugins`")


class GreetCommandPlugin:
    @hookimpl
    def aiaas_cli_commands(self) -> Iterable[click.Command]:
        return [greet_command, shadowing_plugins_command]


def listed_commands(help_text: str) -> list[str]:
    """The command names in the `Commands:` section of click's help, wrapped lines left out."""
    section = help_text.split("Commands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line[:2] == "  " and line[2] != " "]


def test_aiaas_cli_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("AIAAS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AIAAS_DISABLE_PLUGIN_AUTOLOAD", "1")
    runner = CliRunner()
    assert "No such command 'greet'" in runner.invoke(aiaas.cli.cli, ["greet"]).output

    monkeypatch.setattr(
        aiaas.cli,
        "create_plugin_manager",
        lambda config: manager_with(config, GreetCommandPlugin()),
    )
    listed = runner.invoke(aiaas.cli.cli, ["--help"])
    greeted = runner.invoke(aiaas.cli.cli, ["greet"])
    builtin = runner.invoke(aiaas.cli.cli, ["plugins", "--help"])

    listed_names = listed_commands(listed.output)
    assert (greeted.exit_code, greeted.output) == (0, "hello from a plugin\n")
    assert "greet" in listed_names
    # A plugin cannot replace a built-in command by taking its name: it is left out.
    assert listed_names.count("plugins") == 1
    assert "List the plugins" in builtin.output
