"""The trees extra end to end on the real platform: the entry point allowed in the config, a
training job run by a real arq worker, the version registered as `onnx` with its history per
round, deployed without naming a runtime (the `onnx` one is picked from the format), served over
V2 REST and GraphQL, its inputs checked for drift, and a LightGBM canary of the same signature
beside the XGBoost stable version. Bad submissions change nothing: hyperparameters out of
bounds, and a tree trainer named where the extra is not installed, whose error says how to
install it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from arq.worker import Worker

from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.errors import InputError
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import JobState, get_job
from aiaas.core.platform import Platform
from aiaas.core.serving import deployments
from aiaas.core.serving.batch_prediction import BatchPredictionRequest, submit_batch_prediction
from aiaas.core.serving.batch_prediction_runner import output_of_job
from aiaas.core.training import TrainingRequest, submit_training_job
from aiaas.core.training import registry as models
from aiaas.core.training.metric_history import metric_series
from aiaas.workers.settings import worker_settings
from deployment_calls import PREDICT, call, deploy, drift_report_after, wine_records
from serving_support import upload, wine_table
from support import (
    EVERY_REQUEST_SAMPLED,
    Team,
    data_of,
    graphql,
    new_team,
    poll_until,
    with_trees,
)

WORKER_TIMEOUT_S = 300
ROUNDS = 15
ROWS = 6
RUNTIME_QUERY = "query($id: ID!) { node(id: $id) { ... on Deployment { runtime } } }"


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """The module's config, with the trees plugin allowed to load from its entry point, as an
    operator who installed `aiaas[trees]` and listed it in AIAAS_PLUGINS has it; every request
    sampled, so that a drift check has enough samples at once."""
    return with_trees(config, **EVERY_REQUEST_SAMPLED)


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "trees", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await upload(
        platform, developer, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("w")
    )


async def job_count(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM jobs")
    return count


async def run_worker_until_idle(config: Config) -> None:
    """A real arq worker with the real job handlers, in burst mode: it loads its plugins from
    the config (the trees entry point among them), runs what is queued, and returns."""
    settings = worker_settings(config)
    settings["cron_jobs"] = []  # keep the burst to the jobs under test
    worker = Worker(**settings, burst=True, handle_signals=False)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=WORKER_TIMEOUT_S)
    finally:
        await worker.close()


@pytest.fixture(scope="module")
async def trained(
    platform: Platform, config: Config, team: Team, wine: datasets.DatasetVersion
) -> dict[str, models.ModelVersion]:
    """An XGBoost and a LightGBM classifier of the wine, trained by a worker."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    jobs = {}
    for trainer in ("xgboost-classifier", "lightgbm-classifier"):
        job = await submit_training_job(
            platform,
            developer,
            TrainingRequest(
                dataset_version_id=wine.id,
                trainer=trainer,
                target="cultivar",
                hyperparameters={"n_estimators": ROUNDS, "learning_rate": 0.3},
                model_name="wine",
            ),
        )
        jobs[trainer] = job.id
    await run_worker_until_idle(config)
    async with platform.metadata.acquire() as connection:
        for job_id in jobs.values():
            job = await get_job(connection, job_id)
            assert job is not None
            assert job.state is JobState.SUCCEEDED, job
        registered = await models.model_versions_by_jobs(connection, list(jobs.values()))
    return {trainer: registered[job_id] for trainer, job_id in jobs.items()}


async def test_a_worker_trains_a_tree_and_registers_an_onnx_version_with_its_history(
    platform: Platform, trained: dict[str, models.ModelVersion]
) -> None:
    version = trained["xgboost-classifier"]
    assert version.format == "onnx"
    assert version.trainer == "xgboost-classifier"
    inputs = [spec["name"] for spec in version.signature["inputs"]]
    assert inputs == [name for name in wine_table().column_names if name != "cultivar"]
    assert [spec["name"] for spec in version.signature["outputs"]] == ["label", "probabilities"]
    assert version.metrics["accuracy"] >= 0.85
    assert version.metrics["labels"] == ["c0", "c1", "c2"]
    async with platform.metadata.acquire() as connection:
        history = await metric_series(connection, version.job_id, "val_accuracy", 1000)
        losses = await metric_series(connection, version.job_id, "loss", 1000)
    assert [point.step for point in history] == list(range(1, ROUNDS + 1))
    assert history[-1].value == version.metrics["accuracy"]
    assert [point.step for point in losses] == list(range(1, ROUNDS + 1))


@pytest.fixture(scope="module")
async def served(
    app: Any, team: Team, trained: dict[str, models.ModelVersion]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        # No runtime named: the one that loads the version's format is picked.
        found = await deploy(client, team, "wine-trees", trained["xgboost-classifier"])
        yield client, found


def v2_body(records: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": [len(records)],
                "data": [record[name] for record in records],
            }
            for name in records[0]
        ]
    }


async def test_a_deployment_of_a_tree_picks_the_onnx_runtime_and_answers_v2(
    served: tuple[httpx.AsyncClient, dict[str, Any]], team: Team
) -> None:
    client, deployment = served
    node = data_of(
        await graphql(
            client, RUNTIME_QUERY, {"id": deployment["id"]}, token=team.token(ProjectRole.VIEWER)
        )
    )["node"]
    assert node["runtime"] == "onnx"

    response = await client.post(
        f"/v2/models/{team.slug}.wine-trees/infer",
        json=v2_body(wine_records(ROWS)),
        headers={"authorization": f"Bearer {team.token(ProjectRole.DEVELOPER)}"},
    )
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["label"]["data"] == ["c0"] * ROWS  # the first rows of the wine are all c0
    assert outputs["probabilities"]["shape"] == [ROWS, 3]
    probabilities = np.asarray(outputs["probabilities"]["data"]).reshape(ROWS, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


async def test_a_lightgbm_canary_serves_beside_the_xgboost_stable_version(
    platform: Platform,
    served: tuple[httpx.AsyncClient, dict[str, Any]],
    team: Team,
    trained: dict[str, models.ModelVersion],
) -> None:
    client, deployment = served
    developer = team.members[ProjectRole.DEVELOPER].principal
    canary = trained["lightgbm-classifier"]
    stored = await deployments.update_traffic(
        platform,
        developer,
        await _deployment_id(platform, team),
        stable_percent=50,
        canary_version_id=canary.id,
        canary_percent=50,
        shadow_version_id=None,
    )
    assert stored.runtime == "onnx"
    versions: set[int] = set()

    async def both_answered() -> bool:
        answer = await call(
            client,
            PREDICT,
            {"id": deployment["id"], "inputs": wine_records(1), "version": None},
            team.token(ProjectRole.VIEWER),
        )
        if answer["__typename"] == "PredictSuccess":
            assert answer["outputs"][0]["label"] == "c0"
            versions.add(answer["modelVersion"]["number"])
        return len(versions) == 2

    assert await poll_until(both_answered, timeout_s=60) is not None, versions
    assert versions == {
        trained["xgboost-classifier"].number,
        canary.number,
    }


async def _deployment_id(platform: Platform, team: Team) -> uuid.UUID:
    async with platform.metadata.acquire() as connection:
        found = await deployments.live_deployment_by_name(connection, team.project_id, "wine-trees")
    assert found is not None
    return found.id


async def test_hyperparameters_out_of_bounds_are_refused_and_change_nothing(
    platform: Platform, team: Team, wine: datasets.DatasetVersion
) -> None:
    before = await job_count(platform)
    with pytest.raises(InputError) as refused:
        await submit_training_job(
            platform,
            team.members[ProjectRole.DEVELOPER].principal,
            TrainingRequest(
                dataset_version_id=wine.id,
                trainer="lightgbm-classifier",
                target="cultivar",
                hyperparameters={"num_leaves": 1, "subsample": 0.0},
            ),
        )
    assert set(refused.value.field_errors) == {
        "hyperparameters.num_leaves",
        "hyperparameters.subsample",
    }
    assert await job_count(platform) == before


@pytest.fixture
async def bare(config: Config) -> AsyncIterator[Platform]:
    """A process of the same platform where the extra is not installed (its entry point is not
    loaded): the API server or worker an operator forgot to install `aiaas[trees]` on."""
    platform = create_platform(
        build_config({**config.model_dump(), "disable_plugin_autoload": True, "plugins": None})
    )
    await platform.start(run_startup_hooks=False)
    yield platform
    await platform.stop()


async def test_a_tree_trainer_without_its_extra_is_unknown_and_the_error_names_the_extra(
    platform: Platform, bare: Platform, team: Team, wine: datasets.DatasetVersion
) -> None:
    before = await job_count(platform)
    with pytest.raises(InputError) as refused:
        await submit_training_job(
            bare,
            team.members[ProjectRole.DEVELOPER].principal,
            TrainingRequest(
                dataset_version_id=wine.id, trainer="xgboost-classifier", target="cultivar"
            ),
        )
    problem = refused.value.field_errors["trainer"]
    assert "unknown trainer 'xgboost-classifier'" in problem
    assert "'trees' extra" in problem and "plugins-extra/aiaas-trees" in problem
    assert await job_count(platform) == before


async def test_an_onnx_version_without_the_extra_is_refused_a_deployment(
    platform: Platform, bare: Platform, team: Team, trained: dict[str, models.ModelVersion]
) -> None:
    with pytest.raises(InputError) as refused:
        await deployments.create_deployment(
            bare,
            team.members[ProjectRole.DEVELOPER].principal,
            deployments.NewDeployment(
                name="no-runtime", version_id=trained["xgboost-classifier"].id
            ),
        )
    assert refused.value.field_errors == {"runtime": "none loads onnx"}
    async with platform.metadata.acquire() as connection:
        found = await deployments.live_deployment_by_name(connection, team.project_id, "no-runtime")
    assert found is None


async def test_inputs_of_a_tree_deployment_are_checked_for_drift(
    platform: Platform,
    served: tuple[httpx.AsyncClient, dict[str, Any]],
    team: Team,
    trained: dict[str, models.ModelVersion],
) -> None:
    client, _ = served
    shifted = await deploy(client, team, "shifted-trees", trained["xgboost-classifier"])
    table = wine_table().drop_columns(["cultivar"])
    deviations = {name: float(np.std(table.column(name).to_numpy())) for name in table.column_names}
    moved = [
        {name: value + 5 * deviations[name] for name, value in row.items()}
        for row in table.slice(0, 60).to_pylist()
    ]
    report = await drift_report_after(client, platform, team, shifted["id"], moved)
    assert report["sampleCount"] == len(moved)
    assert report["alert"] is True, report
    assert {feature["feature"] for feature in report["features"]} == set(table.column_names)


async def test_a_batch_prediction_of_an_onnx_version_is_scored_by_the_onnx_runtime(
    platform: Platform,
    config: Config,
    team: Team,
    wine: datasets.DatasetVersion,
    trained: dict[str, models.ModelVersion],
) -> None:
    job = await submit_batch_prediction(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        BatchPredictionRequest(
            dataset_version_id=wine.id, model_version_id=trained["lightgbm-classifier"].id
        ),
    )
    await run_worker_until_idle(config)
    async with platform.metadata.acquire() as connection:
        finished = await get_job(connection, job.id)
        assert finished is not None
        assert finished.state is JobState.SUCCEEDED, finished.reason
        output = await output_of_job(connection, finished)
    assert output is not None
    table = await datasets.read_version_table(platform, output)
    truth = wine_table().column("cultivar").to_pylist()
    predicted = table.column("predicted_label").to_pylist()
    assert len(predicted) == len(truth)
    # Most rows were training rows: a model of the wine gets nearly all of them right.
    assert np.mean([label == true for label, true in zip(predicted, truth, strict=True)]) > 0.9


async def test_the_api_lists_the_tree_trainers_with_their_typed_hyperparameters(
    client: httpx.AsyncClient, team: Team
) -> None:
    data = data_of(
        await graphql(
            client,
            "{ trainers { name task plugin hyperparameters { name type default minimum maximum } "
            "hyperparameterSchema } }",
            token=team.token(ProjectRole.VIEWER),
        )
    )
    trainers = {trainer["name"]: trainer for trainer in data["trainers"]}
    xgboost = trainers["xgboost-regressor"]
    assert (xgboost["task"], xgboost["plugin"]) == ("regression", "trees")
    parameters = {parameter["name"]: parameter for parameter in xgboost["hyperparameters"]}
    assert parameters["n_estimators"] == {
        "name": "n_estimators",
        "type": "int",
        "default": 100,
        "minimum": 1,
        "maximum": 10_000,
    }
    assert xgboost["hyperparameterSchema"]["additionalProperties"] is False
