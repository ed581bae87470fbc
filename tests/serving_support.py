"""Model versions to deploy, trained for real (tiny and fast) without a worker in between."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_diabetes, load_wine

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity.access import ProjectRole
from aiaas.core.jobs import JobState, claim_job, finish_job
from aiaas.core.platform import Platform
from aiaas.core.training import TrainingRequest, run_training, submit_training_job
from aiaas.core.training import registry as models
from support import Team

FAST = {"epochs": 2, "batch_size": 32, "hidden_size": 16, "hidden_layers": 1}


def wine_table() -> pa.Table:
    wine = load_wine()
    columns = {name.replace("/", "_"): wine.data[:, i] for i, name in enumerate(wine.feature_names)}
    return pa.table({**columns, "cultivar": [f"c{label}" for label in wine.target]})


def diabetes_table() -> pa.Table:
    diabetes = load_diabetes()
    columns = {name: diabetes.data[:, i] for i, name in enumerate(diabetes.feature_names)}
    return pa.table({**columns, "progression": diabetes.target})


async def upload(
    platform: Platform,
    actor: Principal,
    project_id: uuid.UUID,
    table: pa.Table,
    name: str,
    directory: Path,
) -> datasets.DatasetVersion:
    source = directory / f"{uuid.uuid4().hex}.parquet"
    pq.write_table(table, source)
    added = await datasets.upload_version(
        platform, actor, project_id, dataset_name=name, source=source
    )
    return added.version


async def upload_wine(platform: Platform, team: Team, directory: Path) -> datasets.DatasetVersion:
    """scikit-learn's wine (`wine_table`) as the dataset "wine", uploaded by the developer."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await upload(platform, developer, team.project_id, wine_table(), "wine", directory)


async def train_version(
    platform: Platform,
    actor: Principal,
    dataset_version: datasets.DatasetVersion,
    *,
    target: str,
    model_name: str,
    trainer: str = "tabular-classifier",
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
) -> models.ModelVersion:
    """Submit a training job and run it here, as a worker would: a registered version."""
    job = await submit_training_job(
        platform,
        actor,
        TrainingRequest(
            dataset_version_id=dataset_version.id,
            trainer=trainer,
            target=target,
            hyperparameters=hyperparameters or FAST,
            seed=seed,
            model_name=model_name,
        ),
    )
    claimed = await claim_job(platform, job.id, "serving-tests", stale_after_s=300)
    assert claimed is not None
    await run_training(platform, claimed)
    await finish_job(platform, job.id, "serving-tests", JobState.SUCCEEDED, None)
    async with platform.metadata.acquire() as connection:
        registered = await models.model_versions_by_jobs(connection, [job.id])
    return registered[job.id]


async def register_bytes_as_version(
    platform: Platform,
    actor: Principal,
    dataset_version_id: uuid.UUID,
    content: bytes,
    *,
    model_name: str,
    like: models.ModelVersion | None = None,
    metrics: dict[str, float] | None = None,
) -> models.ModelVersion:
    """A version registered the way a finished job registers one, around `content`, bytes that
    no runtime can load: with `like`'s format and signature, or an empty signature, and the
    `metrics` given. For a rollout that must fail, a deployment whose model is never loaded, or
    a promotion gate."""
    job = await submit_training_job(
        platform,
        actor,
        TrainingRequest(
            dataset_version_id=dataset_version_id,
            trainer="tabular-classifier",
            target="cultivar",
            hyperparameters={"epochs": 1},
            model_name=model_name,
        ),
    )

    async def bundle() -> AsyncIterator[bytes]:
        yield content

    stored = await platform.service(VAULT).store(job.project_id, bundle())
    async with AuditedChange(platform, actor, "model.register", project_id=job.project_id) as c:
        return await models.register_model_version(
            c,
            models.NewModelVersion(
                project_id=job.project_id,
                model_name=model_name,
                job_id=job.id,
                dataset_version_id=dataset_version_id,
                trainer="tabular-classifier",
                format=like.format if like else "flax-nnx",
                artifact_key=stored.key,
                size_bytes=stored.size_bytes,
                signature=like.signature if like else {"inputs": [], "outputs": []},
                metrics=metrics or {},
                hyperparameters={},
                created_by=actor.user_id,
            ),
        )


async def wine_versions(
    platform: Platform, actor: Principal, project_id: uuid.UUID, directory: Path
) -> dict[int, models.ModelVersion]:
    """Versions 1 and 2 of a wine classifier (seeds 0 and 1), by number."""
    wine = await upload(platform, actor, project_id, wine_table(), "wine", directory)
    found = {}
    for seed in (0, 1):
        version = await train_version(
            platform, actor, wine, target="cultivar", model_name="wine", seed=seed
        )
        found[version.number] = version
    assert sorted(found) == [1, 2]
    return found


def assert_same_stats(
    found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> None:
    """Equal column statistics, a mean or a deviation to rounding (merged batch by batch, they
    depend on where the batches were cut)."""
    assert set(found) == set(expected)
    for name, stats in expected.items():
        assert set(found[name]) == set(stats), name
        for key, value in stats.items():
            if isinstance(value, float):
                assert found[name][key] == pytest.approx(value, rel=1e-9), (name, key)
            else:
                assert found[name][key] == value, (name, key)
