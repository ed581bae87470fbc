"""Archived means read-only, even for a change that is already on its way.

The permission check (`members.authorize_in_project`) refuses an archived project as of its own
moment. An archive that commits between that check and the change's transaction must not let the
change in: every mutating domain path holds its project open inside its own transaction
(`ChangeInProject`). Here the project is archived from a second connection while every change is
on its way, past any permission check (they are called as the domain functions a resolver calls
once it has authorized), and each waits for the archive, then refuses and changes nothing. A
training job archived under it, queued or training, fails naming the project and registers no
model. Stopping still works.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from arq.worker import Worker

from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.data.quality import submit_validation
from aiaas.core.errors import ConflictError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.members import add_member
from aiaas.core.identity.projects import ARCHIVED_IS_READ_ONLY, ChangeInProject, archive_project
from aiaas.core.jobs import Job, JobState, get_job
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.serving import INFERENCE_SERVER, deployments
from aiaas.core.serving.deployments import DeploymentState, NewDeployment
from aiaas.core.serving.rollout import RolloutSupervisor
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.core.specs import TrainerSpec
from aiaas.core.trainers import (
    HyperParameter,
    Progress,
    TrainedModel,
    Trainer,
    TrainingReporter,
    TrainingRun,
)
from aiaas.core.training import TrainingRequest, submit_training_job
from aiaas.core.training import registry as models
from aiaas.core.training.submission import cancel_training_job
from aiaas.workers.settings import worker_settings
from serving_support import FAST, register_bytes_as_version, train_version, upload, wine_table
from support import (
    Leftovers,
    Team,
    audit_mark,
    events_since,
    leftovers,
    new_account,
    new_team,
    poll_until,
    project_state,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WAIT_S = 120
"""The longest any change may take to reach its project's lock: a failing test must end."""


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    # Every change of the race waits on a connection of its own at the same moment.
    return build_config({**config.model_dump(), "database_pool_max_size": 32})


def archived_reason(slug: str) -> str:
    """The reason a training job of an archived project fails with."""
    return f"project {slug!r} is archived, so it is read-only: the job registers no model version"


async def waiting_on_locks(platform: Platform) -> int:
    """How many sessions of this module's database wait for a lock now."""
    async with platform.metadata.acquire() as connection:
        waiting: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    return waiting


def until_all_wait(
    platform: Platform, tasks: Mapping[str, asyncio.Task[Any]]
) -> Callable[[], Awaitable[bool]]:
    """A check for `poll_until`: every task waits for a lock. A task that ended meanwhile did
    not wait for the archive: the test fails at once, naming it."""

    async def check() -> bool:
        ended = {name: task for name, task in tasks.items() if task.done()}
        assert not ended, {name: task.exception() or task.result() for name, task in ended.items()}
        return await waiting_on_locks(platform) == len(tasks)

    return check


async def archived_under(
    platform: Platform, project_id: uuid.UUID, changes: Mapping[str, Coroutine[Any, Any, Any]]
) -> dict[str, Any]:
    """Archive the project from a second connection, and start every change while the archive
    is not yet committed; commit it once each change waits. The outcome of each change (its
    result, or what it raised)."""
    tasks: dict[str, asyncio.Task[Any]] = {}
    try:
        async with platform.metadata.transaction() as archiver:
            await archiver.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", project_id)
            await archiver.execute(
                "UPDATE projects SET archived_at = clock_timestamp() WHERE id = $1", project_id
            )
            tasks = {name: asyncio.create_task(change) for name, change in changes.items()}
            waited = await poll_until(until_all_wait(platform, tasks), timeout_s=WAIT_S)
            assert waited is not None, f"{await waiting_on_locks(platform)} of {len(tasks)} wait"
    finally:
        outcomes = await asyncio.gather(*tasks.values(), return_exceptions=True)
    return dict(zip(tasks, outcomes, strict=True))


def refused_as_archived(outcome: object) -> bool:
    return isinstance(outcome, ConflictError) and outcome.message == ARCHIVED_IS_READ_ONLY


def tiny_training(version: datasets.DatasetVersion) -> TrainingRequest:
    return TrainingRequest(
        dataset_version_id=version.id,
        trainer="tabular-classifier",
        target="cultivar",
        hyperparameters=FAST,
    )


def rollouts(platform: Platform) -> RolloutSupervisor:
    """A rollout supervisor that acts only when the test asks it to."""
    return RolloutSupervisor(
        platform, platform.service(INFERENCE_SERVER), poll_interval_s=60.0, stale_after_s=30.0
    )


# Every change, caught by an archive on its way ----------------------------------------------


async def test_every_change_caught_by_an_archive_on_its_way_is_refused_and_changes_nothing(
    platform: Platform, tmp_path: Path
) -> None:
    team = await new_team(platform, "race", ())
    project_id = team.project_id
    owner = team.members[ProjectRole.OWNER].principal
    outsider = await new_account(platform, "outsider")
    wine = await upload(platform, owner, project_id, wine_table(), "wine", tmp_path)
    spare = await upload(platform, owner, project_id, wine_table().slice(0, 20), "spare", tmp_path)
    trained = await train_version(platform, owner, wine, target="cultivar", model_name="wine")
    # A second version to send a canary share to; only its registration matters here.
    canary = await register_bytes_as_version(
        platform, owner, wine.id, b"no model", model_name="wine", like=trained
    )
    supervisor = rollouts(platform)
    live = await deployments.create_deployment(
        platform, owner, NewDeployment(name="live", version_id=trained.id)
    )
    assert await supervisor.roll_out_one()
    async with platform.metadata.acquire() as connection:
        assert (await deployments.get_deployment(connection, live.id)).state is (
            DeploymentState.READY
        )
    # Created before the archive, rolled out while it commits.
    waiting = await deployments.create_deployment(
        platform, owner, NewDeployment(name="waiting", version_id=trained.id)
    )
    new_file = tmp_path / "new.parquet"
    pq.write_table(wine_table().slice(0, 30), new_file)
    before = await project_state(platform, project_id)
    mark = await audit_mark(platform)

    changes = {
        "dataset.upload": datasets.upload_version(
            platform, owner, project_id, dataset_name="new", source=new_file
        ),
        "dataset.transform": datasets.transform_version(
            platform, owner, wine.id, [{"kind": "filter_rows", "expression": "alcohol > 13"}]
        ),
        "dataset.delete_version": datasets.delete_version(
            platform, owner, spare.id, models_using=models.models_trained_on
        ),
        "dataset.set_expectations": datasets.set_expectations(
            platform, owner, wine.dataset_id, [{"kind": "not_null", "column": "alcohol"}]
        ),
        "dataset.validate": submit_validation(platform, owner, wine.id),
        "training.submit": submit_training_job(platform, owner, tiny_training(wine)),
        "model.set_alias": models.set_model_alias(platform, owner, trained.id, "staging"),
        "model.set_promotion_gates": models.set_promotion_gates(
            platform, owner, trained.model_id, []
        ),
        "deployment.create": deployments.create_deployment(
            platform, owner, NewDeployment(name="another", version_id=trained.id)
        ),
        "deployment.update_traffic": deployments.update_traffic(
            platform,
            owner,
            live.id,
            stable_percent=90,
            canary_version_id=canary.id,
            canary_percent=10,
            shadow_version_id=None,
        ),
        "deployment.promote": deployments.promote_canary(platform, owner, live.id),
        "deployment.rollback": deployments.rollback(platform, owner, live.id),
        "member.add": add_member(
            platform, owner, project_id, username=outsider.username, role=ProjectRole.VIEWER
        ),
        "deployment.rollout": supervisor.roll_out_one(),
    }
    outcomes = await archived_under(platform, project_id, changes)

    rolled_out = outcomes.pop("deployment.rollout")
    refused = {name for name, outcome in outcomes.items() if refused_as_archived(outcome)}
    assert refused == set(outcomes), outcomes
    assert rolled_out is True
    after = await project_state(platform, project_id)
    assert after["projects"]["archived_at"] is not None
    # The rollout that ended after the archive failed, for it, whatever it warmed.
    [ended] = [row for row in after["deployments"] if row["id"] == str(waiting.id)]
    assert (ended["state"], ended["reason"]) == ("FAILED", ARCHIVED_IS_READ_ONLY)
    assert without(after, waiting.id) == without(before, waiting.id)
    assert await leftovers(platform) == Leftovers()
    assert sorted(await events_since(platform, mark)) == sorted(
        [(action, "failed") for action in outcomes] + [("deployment.rollout", "success")]
    )

    # What stops work still works: the live deployment, and the job still queued.
    stopped = await deployments.stop_deployment(platform, owner, live.id)
    assert stopped.state is DeploymentState.STOPPED
    cancelled = await cancel_training_job(platform, owner, canary.job_id)
    assert cancelled.state is JobState.CANCELLED


def without(state: dict[str, Any], deployment_id: uuid.UUID) -> dict[str, Any]:
    """The project's state, but for its own row and one deployment's."""
    return {
        **state,
        "projects": None,
        "deployments": [row for row in state["deployments"] if row["id"] != str(deployment_id)],
    }


async def test_an_archive_waits_for_a_change_in_flight_and_refuses_the_next(
    platform: Platform,
) -> None:
    team = await new_team(platform, "held", ())
    owner = team.members[ProjectRole.OWNER].principal
    project_id = team.project_id
    mark = await audit_mark(platform)

    async with ChangeInProject(platform, owner, "test.held", project_id=project_id) as change:
        archiving = asyncio.create_task(archive_project(platform, owner, project_id))
        assert await poll_until(lambda: waits_for_one(platform), timeout_s=WAIT_S) is not None
        assert not archiving.done()
        await change.record(object_type="project", object_id=str(project_id), project_id=project_id)
    assert (await archiving).is_archived

    with pytest.raises(ConflictError, match=ARCHIVED_IS_READ_ONLY):
        async with ChangeInProject(platform, owner, "test.refused", project_id=project_id):
            raise AssertionError("a change entered an archived project")
    assert await events_since(platform, mark) == [
        ("test.held", "success"),
        ("project.archive", "success"),
        ("test.refused", "failed"),
    ]


async def waits_for_one(platform: Platform) -> bool:
    return await waiting_on_locks(platform) == 1


# Training jobs, through a real worker --------------------------------------------------------


async def run_worker_until_idle(
    config: Config, plugin_manager: AiaasPluginManager | None = None
) -> None:
    """A real arq worker with the real job handlers, in burst mode: it runs what is queued."""
    settings = worker_settings(config, plugin_manager=plugin_manager)
    settings["cron_jobs"] = []
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=WAIT_S)
    finally:
        await worker.close()


async def ended_with_nothing_registered(platform: Platform, team: Team, job: Job) -> Job:
    """The job as it ended; it left no model, version or artifact behind."""
    async with platform.metadata.acquire() as connection:
        ended = await get_job(connection, job.id)
        registered = await models.model_versions_by_jobs(connection, [job.id])
        found = await models.list_models(connection, team.project_id, first=None, after=None)
    assert ended is not None
    assert registered == {}
    assert found.items == []
    assert await leftovers(platform) == Leftovers()
    return ended


async def test_a_job_queued_before_the_archive_fails_naming_the_project_and_trains_nothing(
    platform: Platform, config: Config, tmp_path: Path
) -> None:
    team = await new_team(platform, "queued-then-archived", ())
    owner = team.members[ProjectRole.OWNER].principal
    wine = await upload(platform, owner, team.project_id, wine_table(), "wine", tmp_path)
    job = await submit_training_job(platform, owner, tiny_training(wine))
    await archive_project(platform, owner, team.project_id)

    await run_worker_until_idle(config)

    ended = await ended_with_nothing_registered(platform, team, job)
    assert (ended.state, ended.reason) == (JobState.FAILED, archived_reason(team.slug))
    async with platform.metadata.acquire() as connection:
        trained_steps = await connection.fetchval(
            "SELECT count(*) FROM metric_points WHERE job_id = $1", job.id
        )
    assert trained_steps == 0


class ArchivingTrainer(Trainer):
    """Learns a constant, and has its project archived as it trains (its plugin's `on_fit`,
    from the training thread): to the runner, an archive committed while a real job trained."""

    task = "regression"

    def __init__(self, plugin: ArchivingTrainerPlugin) -> None:
        self._plugin = plugin

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return []

    def target_problem(self, column_type: str) -> str | None:
        return None

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        return {}

    def fit(self, run: TrainingRun, reporter: TrainingReporter) -> TrainedModel:
        reporter.progress(
            Progress(
                step=1, total_steps=1, epoch=1, metrics={"loss": 0.0}, examples_per_s=1.0, eta_s=0.0
            )
        )
        self._plugin.on_fit()
        return TrainedModel(
            format="constant",
            bundle=b"0",
            signature=ModelSignature(
                inputs=(), outputs=(TensorSpec(name="value", dtype="float32", shape=(-1,)),)
            ),
            metrics={"loss": 0.0},
            steps=1,
        )


class ArchivingTrainerPlugin:
    def __init__(self) -> None:
        self.on_fit: Callable[[], None] = lambda: None
        """Called from the training thread; the test sets it."""

    @hookimpl
    def aiaas_trainers(self) -> Iterable[TrainerSpec]:
        return [
            TrainerSpec(
                name="archived-as-it-trains",
                factory=lambda config: ArchivingTrainer(self),
                description="Learns a constant; its project is archived meanwhile.",
            )
        ]


async def test_a_job_whose_project_is_archived_as_it_trains_fails_and_registers_nothing(
    platform: Platform, config: Config, tmp_path: Path
) -> None:
    plugin = ArchivingTrainerPlugin()
    manager = create_plugin_manager(config)
    manager.register_plugin(plugin, "ArchivingTrainerPlugin")
    team = await new_team(platform, "archived-as-it-trains", ())
    owner = team.members[ProjectRole.OWNER].principal
    wine = await upload(platform, owner, team.project_id, wine_table(), "wine", tmp_path)
    submitting = Platform(config, manager)  # one that knows the trainer, to vet the submission
    await submitting.start()
    try:
        job = await submit_training_job(
            submitting,
            owner,
            TrainingRequest(
                dataset_version_id=wine.id, trainer="archived-as-it-trains", target="cultivar"
            ),
        )
    finally:
        await submitting.stop()
    loop = asyncio.get_running_loop()

    def archive_from_the_training_thread() -> None:
        archiving = archive_project(platform, owner, team.project_id)
        asyncio.run_coroutine_threadsafe(archiving, loop).result(WAIT_S)

    plugin.on_fit = archive_from_the_training_thread
    mark = await audit_mark(platform)

    await run_worker_until_idle(config, manager)

    ended = await ended_with_nothing_registered(platform, team, job)
    assert (ended.state, ended.reason) == (JobState.FAILED, archived_reason(team.slug))
    assert await events_since(platform, mark) == [
        ("project.archive", "success"),
        ("model.register", "failed"),
    ]


async def test_a_validation_queued_before_the_archive_fails_and_stores_no_report(
    platform: Platform, config: Config, tmp_path: Path
) -> None:
    team = await new_team(platform, "validated-then-archived", ())
    owner = team.members[ProjectRole.OWNER].principal
    wine = await upload(platform, owner, team.project_id, wine_table(), "wine", tmp_path)
    job = await submit_validation(platform, owner, wine.id)
    await archive_project(platform, owner, team.project_id)

    await run_worker_until_idle(config)

    async with platform.metadata.acquire() as connection:
        ended = await get_job(connection, job.id)
        reports = await connection.fetchval(
            "SELECT count(*) FROM quality_reports WHERE version_id = $1", wine.id
        )
    assert ended is not None
    assert ended.state == JobState.FAILED
    assert ended.reason == (
        f"project {team.slug!r} is archived, so it is read-only: the validation stores no report"
    )
    assert reports == 0
