"""Training through GraphQL, with a real arq worker running the built-in Flax trainers:
`trainers`, `submitTrainingJob` and what it refuses, `cancelTrainingJob`, the metric history,
job comparison, the model registry, aliases and promotion gates.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from arq.worker import Worker
from sklearn.datasets import load_wine

from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets, quality
from aiaas.core.event_streams import job_stream_key
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import JobState, get_job
from aiaas.core.platform import Platform
from aiaas.core.training import models_trained_on
from aiaas.graphql.relay import to_global_id
from aiaas.workers.outage_tolerant import OutageTolerantWorker
from aiaas.workers.settings import worker_settings
from support import (
    Account,
    Team,
    audit_mark,
    data_of,
    error_codes,
    events_since,
    graphql,
    new_team,
    poll_until,
    subscription_results,
)

FAST = {"epochs": 3, "batch_size": 32}


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """Checkpoints every other step, so that even short jobs here leave some behind."""
    return build_config({**config.model_dump(), "checkpoint_every_steps": 2})


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(
        platform, "training", (ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER)
    )


@pytest.fixture(scope="module")
async def worker(config: Config) -> AsyncIterator[Worker]:
    """A real arq worker with the default handlers, running for the whole module."""
    settings = worker_settings(config)
    settings["cron_jobs"] = []
    worker = OutageTolerantWorker(**settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    yield worker
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await worker.close()


async def upload_table(
    platform: Platform, team: Team, tmp_path: Path, table: pa.Table, name: str
) -> datasets.DatasetVersion:
    source = tmp_path / f"{uuid.uuid4().hex}.parquet"
    pq.write_table(table, source)
    added = await datasets.upload_version(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        team.project_id,
        dataset_name=name,
        source=source,
    )
    return added.version


def wine_table() -> pa.Table:
    wine = load_wine()
    columns = {name.replace("/", "_"): wine.data[:, i] for i, name in enumerate(wine.feature_names)}
    return pa.table({**columns, "cultivar": [f"c{label}" for label in wine.target]})


@pytest.fixture(scope="module")
async def wine(platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return await upload_table(platform, team, tmp_path_factory.mktemp("wine"), wine_table(), "wine")


SUBMIT = """
mutation($input: SubmitTrainingJobInput!) {
  submitTrainingJob(input: $input) {
    __typename
    ... on TrainingJobSuccess { job { id state trainer hyperparameters modelName } }
    ... on InvalidInputError { message fieldErrors { field message } }
    ... on NotFoundError { message }
  }
}
"""

JOB = """
query($id: ID!) {
  node(id: $id) {
    ... on TrainingJob {
      state reason attempt cancelRequestedAt metricKeys latestMetrics
      loss: metrics(key: "loss", maxPoints: 5) { step value min max }
      modelVersion { id number metrics signature format aliases
                     model { id name } datasetVersion { id } job { id } }
    }
  }
}
"""


def submission(version: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "datasetVersion": str(to_global_id("DatasetVersion", version.id)),
        "trainer": "tabular-classifier",
        "target": "cultivar",
        "hyperparameters": FAST,
        **overrides,
    }


async def submit(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = data_of(
        await graphql(client, SUBMIT, {"input": fields}, token=account.token)
    )["submitTrainingJob"]
    return result


async def wait_for_state(
    platform: Platform, job_global_id: str, states: set[JobState], timeout_s: float = 120
) -> Any:
    from aiaas.graphql.relay import from_global_id

    _, job_id = from_global_id(job_global_id)
    async with asyncio.timeout(timeout_s):
        while True:
            async with platform.metadata.acquire() as connection:
                job = await get_job(connection, job_id)
            assert job is not None
            if job.state in states:
                return job
            await asyncio.sleep(0.1)


async def job_count(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM jobs WHERE kind = 'training'"))


# Trainers -----------------------------------------------------------------------------------


async def test_trainers_are_listed_with_typed_hyperparameters(
    client: httpx.AsyncClient, team: Team
) -> None:
    data = data_of(
        await graphql(
            client,
            "{ trainers { name task plugin hyperparameters { name type default minimum maximum } "
            "hyperparameterSchema } }",
            token=team.members[ProjectRole.VIEWER].token,
        )
    )
    trainers = {trainer["name"]: trainer for trainer in data["trainers"]}
    assert {
        "tabular-classifier",
        "tabular-regressor",
        "text-classifier",
        "image-classifier",
        "image-resnet",
    } <= set(trainers)
    classifier = trainers["tabular-classifier"]
    assert classifier["task"] == "classification"
    assert trainers["tabular-regressor"]["task"] == "regression"
    assert classifier["plugin"] == "aiaas.plugins.flax_trainers"
    parameters = {p["name"]: p for p in classifier["hyperparameters"]}
    assert parameters["learning_rate"]["type"] == "float"
    assert parameters["epochs"]["type"] == "int"
    assert parameters["epochs"]["minimum"] >= 1
    schema = classifier["hyperparameterSchema"]
    assert schema["properties"]["learning_rate"]["type"] == "number"
    assert schema["additionalProperties"] is False


async def test_trainers_need_credentials(client: httpx.AsyncClient) -> None:
    _, body = await graphql(client, "{ trainers { name } }")
    assert error_codes(body) == ["UNAUTHENTICATED"]


# Refusals -----------------------------------------------------------------------------------


async def test_every_problem_of_a_submission_is_reported_and_no_job_is_created(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any
) -> None:
    before, mark = await job_count(platform), await audit_mark(platform)
    result = await submit(
        client,
        team.members[ProjectRole.DEVELOPER],
        **submission(
            wine,
            target="no_such_column",
            hyperparameters={"learning_rate": "fast", "epochs": 0, "colour": "blue"},
            validationFraction=1.5,
            seed=-1,
        ),
    )
    assert result["__typename"] == "InvalidInputError"
    fields = {error["field"] for error in result["fieldErrors"]}
    assert {
        "target",
        "hyperparameters.learning_rate",
        "hyperparameters.epochs",
        "hyperparameters.colour",
        "validationFraction",
        "seed",
    } <= fields
    assert await job_count(platform) == before
    assert ("training.submit", "failed") in await events_since(platform, mark)


async def test_an_unknown_trainer_is_refused_naming_the_known_ones(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any
) -> None:
    before = await job_count(platform)
    result = await submit(
        client, team.members[ProjectRole.DEVELOPER], **submission(wine, trainer="xgboost")
    )
    assert result["__typename"] == "InvalidInputError"
    (problem,) = [e["message"] for e in result["fieldErrors"] if e["field"] == "trainer"]
    assert "tabular-classifier" in problem
    assert await job_count(platform) == before


async def test_a_target_of_the_wrong_type_for_the_trainer_is_refused(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any
) -> None:
    before = await job_count(platform)
    # A classifier on a continuous column, and a regressor on a text one.
    for trainer, target in (("tabular-classifier", "alcohol"), ("tabular-regressor", "cultivar")):
        result = await submit(
            client,
            team.members[ProjectRole.DEVELOPER],
            **submission(wine, trainer=trainer, target=target),
        )
        assert result["__typename"] == "InvalidInputError", result
        assert "target" in {e["field"] for e in result["fieldErrors"]}
    assert await job_count(platform) == before


async def test_the_image_trainer_refuses_a_version_without_an_image_column(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any
) -> None:
    before = await job_count(platform)
    result = await submit(
        client,
        team.members[ProjectRole.DEVELOPER],
        **submission(wine, trainer="image-resnet", hyperparameters={"channels": 2}),
    )
    assert result["__typename"] == "InvalidInputError", result
    problems = {e["field"]: e["message"] for e in result["fieldErrors"]}
    assert "image column" in problems["features.features"]
    assert "features.alcohol" in problems
    assert "features.channels" in problems
    assert await job_count(platform) == before


async def test_an_empty_training_split_is_refused(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any
) -> None:
    before = await job_count(platform)
    result = await submit(
        client, team.members[ProjectRole.DEVELOPER], **submission(wine, validationFraction=0.999)
    )
    assert result["__typename"] == "InvalidInputError"
    (problem,) = [e["message"] for e in result["fieldErrors"] if e["field"] == "validationFraction"]
    assert "empty" in problem
    assert await job_count(platform) == before


async def test_a_version_that_failed_its_blocking_checks_is_refused_naming_them(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    worker: Worker,
    tmp_path: Path,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    version = await upload_table(platform, team, tmp_path, wine_table(), "wine-checked")
    await datasets.set_expectations(
        platform,
        developer.principal,
        version.dataset_id,
        [{"kind": "range", "column": "alcohol", "min": 0, "max": 12}],
    )
    job = await quality.submit_validation(platform, developer.principal, version.id)
    await wait_for_state(platform, str(to_global_id("Job", job.id)), {JobState.SUCCEEDED})
    before = await job_count(platform)
    result = await submit(client, developer, **submission(version))
    assert result["__typename"] == "InvalidInputError"
    (problem,) = [e["message"] for e in result["fieldErrors"] if e["field"] == "datasetVersion"]
    assert "range(alcohol)" in problem
    assert await job_count(platform) == before


async def test_a_viewer_cannot_submit(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any
) -> None:
    before = await job_count(platform)
    _, body = await graphql(
        client,
        SUBMIT,
        {"input": submission(wine)},
        token=team.members[ProjectRole.VIEWER].token,
    )
    assert error_codes(body) == ["FORBIDDEN"]
    assert await job_count(platform) == before


# A job from start to end --------------------------------------------------------------------


async def test_a_job_trains_registers_a_model_version_and_keeps_its_history(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any, worker: Worker
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    result = await submit(client, developer, **submission(wine, modelName="wine-classifier"))
    assert result["__typename"] == "TrainingJobSuccess"
    job_id = result["job"]["id"]
    assert result["job"]["hyperparameters"]["epochs"] == FAST["epochs"]
    # Defaults are filled in and stored: the job says exactly how it was trained.
    assert "learning_rate" in result["job"]["hyperparameters"]
    finished = await wait_for_state(platform, job_id, {JobState.SUCCEEDED, JobState.FAILED})
    assert finished.state is JobState.SUCCEEDED, finished.reason
    job = data_of(await graphql(client, JOB, {"id": job_id}, token=developer.token))["node"]
    # `loss` every step; the epoch's mean loss and its validation metrics every epoch.
    assert {"loss", "train_loss", "val_loss", "val_accuracy", "val_f1_macro"} <= set(
        job["metricKeys"]
    )
    assert 1 <= len(job["loss"]) <= 5
    assert all(p["min"] <= p["value"] <= p["max"] for p in job["loss"])
    version = job["modelVersion"]
    assert version["number"] == 1
    assert version["format"] == "flax-nnx"
    assert version["model"]["name"] == "wine-classifier"
    assert version["job"]["id"] == job_id
    assert version["datasetVersion"]["id"] == str(to_global_id("DatasetVersion", wine.id))
    # Wine has three cultivars: the averaging is in the names.
    for metric in (
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc_macro",
        "confusion_matrix",
    ):
        assert metric in version["metrics"], metric
    assert 0.0 <= version["metrics"]["accuracy"] <= 1.0
    inputs = {spec["name"] for spec in version["signature"]["inputs"]}
    assert inputs == set(wine_table().column_names) - {"cultivar"}
    # Every step's loss is stored once.
    async with platform.metadata.acquire() as connection:
        steps = await connection.fetch(
            "SELECT step FROM metric_points WHERE key = 'loss' AND job_id = "
            "(SELECT job_id FROM model_versions WHERE id = "
            "(SELECT id FROM model_versions ORDER BY created_at DESC LIMIT 1)) ORDER BY step"
        )
    numbers = [row["step"] for row in steps]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


async def test_jobs_compare_side_by_side(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any, worker: Worker
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    ids = []
    for learning_rate in (0.01, 0.001):
        result = await submit(
            client,
            developer,
            **submission(
                wine, hyperparameters={**FAST, "learning_rate": learning_rate}, modelName="cmp"
            ),
        )
        ids.append(result["job"]["id"])
    for job_id in ids:
        await wait_for_state(platform, job_id, {JobState.SUCCEEDED})
    query = """
    query($slug: String!, $ids: [ID!]!) { project(slug: $slug) {
      compareTrainingJobs(ids: $ids) { jobs { id } hyperparameterNames metricNames rows } } }
    """
    comparison = data_of(
        await graphql(client, query, {"slug": "training", "ids": ids}, token=developer.token)
    )["project"]["compareTrainingJobs"]
    assert [job["id"] for job in comparison["jobs"]] == ids
    assert "learning_rate" in comparison["hyperparameterNames"]
    assert "accuracy" in comparison["metricNames"]
    rates = [row["hyperparameters"]["learning_rate"] for row in comparison["rows"]]
    assert rates == [0.01, 0.001]
    assert all(row["modelVersionId"] for row in comparison["rows"])


# Cancelling ---------------------------------------------------------------------------------

CANCEL = """
mutation($id: ID!) { cancelTrainingJob(id: $id) {
  __typename ... on TrainingJobSuccess { job { state reason } } ... on ConflictError { message } } }
"""


async def test_a_running_job_is_cancelled_at_a_step_boundary(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any, worker: Worker
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    result = await submit(
        client,
        developer,
        **submission(
            wine,
            hyperparameters={"epochs": 5000, "batch_size": 8, "patience": 0},
            modelName="slow",
        ),
    )
    job_id = result["job"]["id"]
    await wait_for_state(platform, job_id, {JobState.RUNNING})

    async def has_progressed() -> bool:
        query = await graphql(client, JOB, {"id": job_id}, token=developer.token)
        return bool(data_of(query)["node"]["metricKeys"])

    # Some progress first, so that the stop comes mid-training.
    assert await poll_until(has_progressed, timeout_s=60) is not None
    mark = await audit_mark(platform)
    cancelled = data_of(await graphql(client, CANCEL, {"id": job_id}, token=developer.token))
    assert cancelled["cancelTrainingJob"]["__typename"] == "TrainingJobSuccess"
    job = await wait_for_state(platform, job_id, {JobState.CANCELLED, JobState.SUCCEEDED}, 60)
    assert job.state is JobState.CANCELLED
    assert developer.username in (job.reason or "")
    assert ("training.cancel", "success") in await events_since(platform, mark)
    # No model comes out of a cancelled job, and cancelling again is refused.
    node = data_of(await graphql(client, JOB, {"id": job_id}, token=developer.token))["node"]
    assert node["modelVersion"] is None
    again = data_of(await graphql(client, CANCEL, {"id": job_id}, token=developer.token))
    assert again["cancelTrainingJob"]["__typename"] == "ConflictError"


async def test_a_job_whose_loss_diverges_fails_with_the_reason_and_keeps_its_checkpoint(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any, worker: Worker
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    # Weight decay of learning_rate x weight_decay = 100 per step: the weights overflow within
    # a few steps.
    exploding = {"epochs": 20, "learning_rate": 100.0, "weight_decay": 1.0}
    result = await submit(
        client,
        developer,
        **submission(wine, hyperparameters=exploding, modelName="diverged"),
    )
    job_id = result["job"]["id"]
    job = await wait_for_state(platform, job_id, {JobState.FAILED, JobState.SUCCEEDED})
    assert job.state is JobState.FAILED
    assert "at step" in (job.reason or "") and "became" in (job.reason or ""), job.reason
    # The last good checkpoint stays for whoever looks into it; no model is registered.
    checkpoints = platform.config.resolved_checkpoint_dir / str(job.id)
    assert [path for path in checkpoints.iterdir() if path.name.isdigit()]
    node = data_of(await graphql(client, JOB, {"id": job_id}, token=developer.token))["node"]
    assert node["modelVersion"] is None


# Aliases and promotion gates ----------------------------------------------------------------

SET_ALIAS = """
mutation($version: ID!, $alias: String!) {
  setModelAlias(input: {version: $version, alias: $alias}) {
    __typename
    ... on SetModelAliasSuccess { alias { alias version { number } } }
    ... on ConflictError { message }
    ... on InvalidInputError { message }
  }
}
"""

SET_GATES = """
mutation($model: ID!, $gates: JSON!) { setModelPromotionGates(model: $model, gates: $gates) {
  __typename ... on InvalidInputError { fieldErrors { field message } } } }
"""


@pytest.fixture(scope="module")
async def trained(
    platform: Platform, app: object, team: Team, wine: Any, worker: Worker
) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        result = await submit(
            client, team.members[ProjectRole.DEVELOPER], **submission(wine, modelName="gated")
        )
        job_id = result["job"]["id"]
        await wait_for_state(platform, job_id, {JobState.SUCCEEDED})
        node = data_of(
            await graphql(client, JOB, {"id": job_id}, token=team.members[ProjectRole.OWNER].token)
        )["node"]
    version: dict[str, Any] = node["modelVersion"]
    return version


async def test_staging_moves_for_developers_and_production_needs_a_maintainer(
    platform: Platform, client: httpx.AsyncClient, team: Team, trained: dict[str, Any]
) -> None:
    developer, maintainer = (
        team.members[ProjectRole.DEVELOPER],
        team.members[ProjectRole.MAINTAINER],
    )
    variables = {"version": trained["id"], "alias": "staging"}
    moved = data_of(await graphql(client, SET_ALIAS, variables, token=developer.token))
    assert moved["setModelAlias"]["__typename"] == "SetModelAliasSuccess"
    mark = await audit_mark(platform)
    production = {"version": trained["id"], "alias": "production"}
    _, body = await graphql(client, SET_ALIAS, production, token=developer.token)
    assert error_codes(body) == ["FORBIDDEN"]
    assert ("graphql.setModelAlias", "denied") in await events_since(platform, mark)
    promoted = data_of(await graphql(client, SET_ALIAS, production, token=maintainer.token))
    assert promoted["setModelAlias"]["__typename"] == "SetModelAliasSuccess"
    query = """query($slug: String!) { project(slug: $slug) { model(name: "gated") {
      aliases { alias version { number } } versionByAlias(alias: "production") { number } } } }"""
    model = data_of(
        await graphql(
            client, query, {"slug": "training"}, token=team.members[ProjectRole.VIEWER].token
        )
    )["project"]["model"]
    assert {a["alias"] for a in model["aliases"]} == {"staging", "production"}
    assert model["versionByAlias"]["number"] == trained["number"]


async def test_a_failing_promotion_gate_blocks_the_move_with_its_reason(
    platform: Platform, client: httpx.AsyncClient, team: Team, trained: dict[str, Any]
) -> None:
    maintainer = team.members[ProjectRole.MAINTAINER]
    model_id = trained["model"]["id"]
    bad = data_of(
        await graphql(
            client,
            SET_GATES,
            {"model": model_id, "gates": [{"kind": "metric_threshold", "metric": "f1_macro"}]},
            token=maintainer.token,
        )
    )["setModelPromotionGates"]
    assert bad["__typename"] == "InvalidInputError"
    # A bar just above what the version reached.
    bar = trained["metrics"]["f1_macro"] + 0.01
    gates = [{"kind": "metric_threshold", "metric": "f1_macro", "min": bar}]
    set_gates = data_of(
        await graphql(
            client, SET_GATES, {"model": model_id, "gates": gates}, token=maintainer.token
        )
    )["setModelPromotionGates"]
    assert set_gates["__typename"] == "SetPromotionGatesSuccess"
    mark = await audit_mark(platform)
    blocked = data_of(
        await graphql(
            client,
            SET_ALIAS,
            {"version": trained["id"], "alias": "production"},
            token=maintainer.token,
        )
    )["setModelAlias"]
    assert blocked["__typename"] == "ConflictError"
    assert "f1_macro" in blocked["message"] and "below the minimum" in blocked["message"]
    assert ("model.set_alias", "failed") in await events_since(platform, mark)
    # The gate names production only: staging still moves.
    staging = data_of(
        await graphql(
            client,
            SET_ALIAS,
            {"version": trained["id"], "alias": "staging"},
            token=maintainer.token,
        )
    )["setModelAlias"]
    assert staging["__typename"] == "SetModelAliasSuccess"


async def test_an_alias_name_is_checked(
    client: httpx.AsyncClient, team: Team, trained: dict[str, Any]
) -> None:
    result = data_of(
        await graphql(
            client,
            SET_ALIAS,
            {"version": trained["id"], "alias": "Bad Alias!"},
            token=team.members[ProjectRole.DEVELOPER].token,
        )
    )["setModelAlias"]
    assert result["__typename"] == "InvalidInputError"


async def test_a_dataset_version_with_a_model_cannot_be_deleted(
    platform: Platform, team: Team, wine: Any, trained: dict[str, Any]
) -> None:
    from aiaas.core.errors import ConflictError

    with pytest.raises(ConflictError, match="model"):
        await datasets.delete_version(
            platform,
            team.members[ProjectRole.OWNER].principal,
            wine.id,
            models_using=models_trained_on,
        )


def test_wine_fixture_is_what_the_tests_assume() -> None:
    table = wine_table()
    assert table.num_rows == 178
    assert len(np.unique(table.column("cultivar").to_numpy(zero_copy_only=False))) == 3


# Events of a job that has ended -------------------------------------------------------------


async def test_events_of_an_ended_job_end_even_once_its_stream_is_gone(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: Any, worker: Worker
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    result = await submit(client, developer, **submission(wine, modelName="expired"))
    job_id = result["job"]["id"]
    job = await wait_for_state(platform, job_id, {JobState.SUCCEEDED})
    document = "subscription($job: ID!) { jobEvents(jobId: $job) { cursor type state } }"
    replayed = await subscription_results(
        platform, developer.token, document, {"job": job_id}, "jobEvents"
    )
    assert [e["state"] for e in replayed if e["type"] == "state"] == [
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
    ]
    # The stream expired (or Redis lost it): the subscription still ends, with the outcome
    # PostgreSQL holds, rather than waiting forever.
    await platform.redis.delete(job_stream_key(job.id))
    ended = await subscription_results(
        platform, developer.token, document, {"job": job_id}, "jobEvents"
    )
    assert [(e["type"], e["state"]) for e in ended] == [("state", "SUCCEEDED")]
