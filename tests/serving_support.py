"""Model versions to deploy, trained for real (tiny and fast) without a worker in between."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_diabetes, load_wine

from aiaas.core import datasets, models
from aiaas.core.auth import Principal
from aiaas.core.jobs import JobState, claim_job, finish_job
from aiaas.core.platform import Platform
from aiaas.core.training_jobs import TrainingRequest, run_training, submit_training_job

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
