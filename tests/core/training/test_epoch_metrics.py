"""Metrics a user can trust, through the worker's own path (`run_training`, the handler a worker
runs): every epoch records its training loss and its validation loss and metrics in the metric
history and the job's live events; names say how a figure is averaged (binary for two classes,
macro for more); and a job without a validation split is refused while the model it would
register under has promotion gates, which could never pass a version without metrics."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aiaas.core.auth import Principal
from aiaas.core.data.datasets import DatasetVersion
from aiaas.core.errors import InputError
from aiaas.core.event_streams import job_stream_key
from aiaas.core.identity.projects import create_project
from aiaas.core.jobs import JobState
from aiaas.core.platform import Platform
from aiaas.core.training import (
    TrainingRequest,
    cancel_training_job,
    metric_keys,
    metric_series,
    set_promotion_gates,
    submit_training_job,
)
from serving_support import (
    diabetes_table,
    register_bytes_as_version,
    train_version,
    upload,
    wine_table,
)
from support import bootstrap_admin_principal

EPOCHS = 2
TINY = {"epochs": EPOCHS, "batch_size": 32, "hidden_size": 8, "hidden_layers": 1}


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin: Principal) -> uuid.UUID:
    slug = f"epoch-metrics-{uuid.uuid4().hex[:8]}"
    return (await create_project(platform, admin, slug=slug, name=slug)).id


@pytest.fixture(scope="module")
async def wine(
    platform: Platform,
    admin: Principal,
    project_id: uuid.UUID,
    tmp_path_factory: pytest.TempPathFactory,
) -> DatasetVersion:
    directory = tmp_path_factory.mktemp("wine")
    return await upload(platform, admin, project_id, wine_table(), "wine", directory)


def binary_wine() -> pa.Table:
    """Wine's first cultivar against the other two: sorted, the positive class is "rest"."""
    table = wine_table()
    first = pc.equal(table.column("cultivar"), "c0")
    index = table.schema.get_field_index("cultivar")
    return table.set_column(index, "cultivar", pc.if_else(first, "c0", "rest"))


CASES = {
    "binary": (
        binary_wine,
        "cultivar",
        "tabular-classifier",
        {"accuracy", "precision", "recall", "f1", "roc_auc"},
    ),
    "three classes": (
        wine_table,
        "cultivar",
        "tabular-classifier",
        {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_macro"},
    ),
    "regression": (diabetes_table, "progression", "tabular-regressor", {"mae", "rmse", "r2"}),
}


async def stream_events(platform: Platform, job_id: uuid.UUID) -> list[dict[str, Any]]:
    entries = await platform.redis.xrange(job_stream_key(job_id))
    return [json.loads(fields.get(b"event", fields.get("event"))) for _, fields in entries]


@pytest.mark.parametrize("case", list(CASES))
async def test_every_epoch_records_training_and_validation_metrics(
    platform: Platform,
    admin: Principal,
    project_id: uuid.UUID,
    tmp_path: Path,
    case: str,
) -> None:
    make_table, target, trainer, figures = CASES[case]
    dataset = await upload(platform, admin, project_id, make_table(), f"d-{case[:3]}", tmp_path)
    version = await train_version(
        platform,
        admin,
        dataset,
        target=target,
        model_name=f"m-{uuid.uuid4().hex[:8]}",
        trainer=trainer,
        hyperparameters=TINY,
    )

    # The model version's metrics: named for their averaging, from the validation split.
    metrics = version.metrics
    assert figures <= set(metrics), metrics
    wrong = {"f1_macro", "precision_macro"} if case == "binary" else {"f1", "precision"}
    assert not wrong & set(metrics)
    if case == "binary":
        assert metrics["labels"] == ["c0", "rest"]
        assert metrics["positive_label"] == "rest"
    else:
        assert "positive_label" not in metrics

    # The history: `loss` every step, the epoch's metrics once an epoch at its last step.
    async with platform.metadata.acquire() as connection:
        keys = (await metric_keys(connection, [version.job_id]))[version.job_id]
        steps = {
            key: [
                point.step for point in await metric_series(connection, version.job_id, key, 1000)
            ]
            for key in keys
        }
        final = {
            key: (await metric_series(connection, version.job_id, key, 1000))[-1].value
            for key in keys
        }
    epoch_keys = {"train_loss", "val_loss"} | {f"val_{figure}" for figure in figures}
    assert set(keys) == {"loss"} | epoch_keys
    total = len(steps["loss"])
    assert steps["loss"] == list(range(1, total + 1))
    per_epoch = total // EPOCHS
    for key in epoch_keys:
        assert steps[key] == [per_epoch * epoch for epoch in range(1, EPOCHS + 1)], key
    # The last epoch's evaluation is the version's.
    for figure in {"loss"} | figures:
        assert final[f"val_{figure}"] == pytest.approx(metrics[figure]), figure

    # The live events carry them too: the last progress event, which is always sent.
    progress = [e for e in await stream_events(platform, version.job_id) if e["type"] == "progress"]
    assert progress[-1]["step"] == total
    assert epoch_keys | {"loss"} <= set(progress[-1]["metrics"])
    assert progress[-1]["metrics"]["val_loss"] == pytest.approx(metrics["loss"])


async def test_no_validation_split_is_refused_while_the_model_has_gates(
    platform: Platform, admin: Principal, project_id: uuid.UUID, wine: DatasetVersion
) -> None:
    gated = await register_bytes_as_version(
        platform, admin, wine.id, b"never loaded", model_name="gated"
    )
    await set_promotion_gates(
        platform,
        admin,
        gated.model_id,
        [{"kind": "metric_threshold", "metric": "f1_macro", "min": 0.5}],
    )

    def request(model_name: str, validation_fraction: float) -> TrainingRequest:
        return TrainingRequest(
            dataset_version_id=wine.id,
            trainer="tabular-classifier",
            target="cultivar",
            hyperparameters={"epochs": 1},
            validation_fraction=validation_fraction,
            model_name=model_name,
        )

    async def training_jobs() -> int:
        async with platform.metadata.acquire() as connection:
            return int(
                await connection.fetchval(
                    "SELECT count(*) FROM jobs WHERE project_id = $1 AND kind = 'training'",
                    project_id,
                )
            )

    before = await training_jobs()
    with pytest.raises(InputError) as refused:
        await submit_training_job(platform, admin, request("gated", 0.0))
    problem = refused.value.field_errors["validationFraction"]
    assert "promotion gates" in problem and "f1_macro" in problem
    assert await training_jobs() == before

    # Accepted with a validation split, and without one for a model that has no gates.
    for model_name, fraction in (("gated", 0.2), ("ungated", 0.0)):
        job = await submit_training_job(platform, admin, request(model_name, fraction))
        assert job.state is JobState.QUEUED
        await cancel_training_job(platform, admin, job.id)
    assert await training_jobs() == before + 2
