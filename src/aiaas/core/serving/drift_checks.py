"""The scheduled drift check: recent prediction samples of each served version against the
distributions of the data the version was trained on (`aiaas.core.serving.drift`).

A worker runs `check_drift` every `drift_check_every_minutes`. For every version a serving
deployment answers with (stable, canary and shadow), it reads the newest samples of the last
`drift_window_s`, computes the PSI of every input feature, and stores a report; the report
alerts when any feature's PSI passes the deployment's threshold (or the configured one). Each
version's training distributions are computed once, from its dataset version, and kept.
The check also deletes samples older than `prediction_sample_retention_s`.

A baseline holds training data: a text feature's categories are its most frequent values, and a
numeric one's bin edges are quantiles, values of rows. So it is sealed with the project's data
key, bound to its model version (`sealed_baseline`). A report holds only feature names, PSIs and
counts, and stays in clear. Revision 0008 dropped the baselines and samples stored in clear
before it: baselines are computed again at the next check, and the samples, a rolling window,
fill again with traffic; until `drift_min_samples` have come, a version's report has no PSI.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.data.datasets import get_version, read_version_table
from aiaas.core.governance.sealed_values import SealedColumn
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity.projects import projects_by_ids
from aiaas.core.serving.deployments import COLUMNS, Deployment, to_deployment
from aiaas.core.serving.drift import (
    FeatureBaseline,
    baselines_from_json,
    baselines_to_json,
    feature_drift,
    training_baselines,
)
from aiaas.core.serving.image_requests import image_inputs
from aiaas.core.serving.image_statistics import image_baselines
from aiaas.core.serving.metrics import DriftReport as DriftGauge
from aiaas.core.serving.prediction_samples import stored_samples
from aiaas.core.signatures import ModelSignature
from aiaas.core.storage import Connection
from aiaas.core.training.registry import ModelVersion, model_versions_by_ids

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

BASELINE = SealedColumn("feature_baselines", "sealed_baseline")
MAX_SAMPLES_PER_CHECK = 10_000
"""The newest samples a check reads per version: plenty for a PSI over ten bins, and a bound on
the memory and time of one check whatever the traffic."""


@dataclass(frozen=True)
class DriftReport:
    id: UUID
    deployment_id: UUID
    version_id: UUID
    computed_at: datetime
    window_start: datetime
    sample_count: int
    features: dict[str, Any]
    """{feature: {"psi": float | None, "sampleCount": int}}"""
    max_psi: float | None
    threshold: float
    alert: bool


_REPORT_COLUMNS = (
    "id, deployment_id, version_id, computed_at, window_start, sample_count, features, max_psi, "
    "threshold, alert"
)


async def baselines_for(platform: Platform, version: ModelVersion) -> dict[str, FeatureBaseline]:
    """The training distributions of the version's inputs, computed on first use and kept
    sealed."""
    key = await platform.service(VAULT).data_key(version.project_id)
    async with platform.metadata.acquire() as connection:
        stored = await connection.fetchval(
            "SELECT sealed_baseline FROM feature_baselines WHERE version_id = $1", version.id
        )
        if stored is not None:
            return baselines_from_json(
                BASELINE.open_json(key, version.project_id, version.id, stored)
            )
        if version.dataset_version_id is None:
            # An uploaded version whose uploader named no reference data: nothing to compare
            # its requests with, so its reports count samples and measure no PSI.
            return {}
        dataset_version = await get_version(connection, version.dataset_version_id)
    table = await read_version_table(platform, dataset_version)
    signature = ModelSignature.from_json(version.signature)
    # One value per row of a number or a string is what can be binned; an image input is
    # monitored by per-image statistics (`image_statistics`), other wide inputs not at all.
    features = [spec for spec in signature.inputs if len(spec.shape) == 1 and _binnable(spec.dtype)]
    baselines = await asyncio.to_thread(training_baselines, table, features)
    if image_inputs(signature):
        baselines |= await asyncio.to_thread(image_baselines, table, image_inputs(signature))
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "INSERT INTO feature_baselines (version_id, sealed_baseline) VALUES ($1, $2) "
            "ON CONFLICT (version_id) DO NOTHING",
            version.id,
            BASELINE.seal_json(key, version.project_id, version.id, baselines_to_json(baselines)),
        )
    return baselines


def _binnable(dtype: str) -> bool:
    return dtype in {"str", "bool"} or dtype.startswith(("int", "uint", "float"))


async def _samples(
    platform: Platform, deployment: Deployment, version_id: UUID, window_s: int
) -> tuple[dict[str, list[Any]], datetime]:
    async with platform.metadata.acquire() as connection:
        window_start: datetime = await connection.fetchval(
            "SELECT clock_timestamp() - $1 * interval '1 second'", window_s
        )
    samples = await stored_samples(
        platform,
        deployment.project_id,
        deployment.id,
        version_id=version_id,
        since=window_start,
        limit=MAX_SAMPLES_PER_CHECK,
        with_outputs=False,
    )
    columns: dict[str, list[Any]] = {}
    for sample in samples:
        for name, value in sample.inputs.items():
            columns.setdefault(name, []).append(value)
    return columns, window_start


async def check_version(
    platform: Platform, deployment: Deployment, version: ModelVersion
) -> DriftReport:
    config = platform.config
    columns, window_start = await _samples(platform, deployment, version.id, config.drift_window_s)
    sample_count = max((len(values) for values in columns.values()), default=0)
    threshold = deployment.drift_threshold or config.drift_psi_threshold
    features: dict[str, Any] = {}
    max_psi: float | None = None
    if sample_count >= config.drift_min_samples:
        baselines = await baselines_for(platform, version)
        drift = await asyncio.to_thread(feature_drift, baselines, columns)
        features = {
            name: {"psi": found.psi, "sampleCount": found.sample_count}
            for name, found in drift.items()
        }
        measured = [found.psi for found in drift.values() if found.psi is not None]
        max_psi = max(measured, default=None)
    alert = max_psi is not None and max_psi > threshold
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(
            f"""
            INSERT INTO drift_reports (deployment_id, version_id, window_start, sample_count,
                features, max_psi, threshold, alert)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_REPORT_COLUMNS}
            """,
            deployment.id,
            version.id,
            window_start,
            sample_count,
            features,
            max_psi,
            threshold,
            alert,
        )
    if alert:
        logger.warning(
            "deployment %s, version %s: drift alert, PSI %.3f above %.3f",
            deployment.name,
            version.number,
            max_psi,
            threshold,
        )
    assert row is not None  # an INSERT ... RETURNING returns its row
    return DriftReport(**dict(row))


async def check_drift(platform: Platform) -> list[DriftReport]:
    """One drift report per version of every serving deployment."""
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            f"SELECT {COLUMNS} FROM deployments WHERE state IN ('READY', 'UPDATING')"
        )
        deployments = [to_deployment(row) for row in rows]
        version_ids = list({v for d in deployments for v in d.traffic.versions()})
        versions = await model_versions_by_ids(connection, version_ids)
        await connection.execute(
            "DELETE FROM prediction_samples WHERE sampled_at < clock_timestamp() - "
            "$1 * interval '1 second'",
            platform.config.prediction_sample_retention_s,
        )
    reports = []
    for deployment in deployments:
        for version_id in deployment.traffic.versions():
            try:
                reports.append(await check_version(platform, deployment, versions[version_id]))
            except Exception:
                # One version's trouble (its dataset deleted, a bad baseline) must not stop
                # the others' checks.
                logger.exception("drift check of %s/%s failed", deployment.name, version_id)
    return reports


async def latest_reports(connection: Connection, deployment_id: UUID) -> list[DriftReport]:
    """The newest report of each version of the deployment."""
    rows = await connection.fetch(
        f"SELECT DISTINCT ON (version_id) {_REPORT_COLUMNS} FROM drift_reports "
        "WHERE deployment_id = $1 ORDER BY version_id, computed_at DESC",
        deployment_id,
    )
    return [DriftReport(**dict(row)) for row in rows]


async def latest_drift_gauges(platform: Platform) -> list[DriftGauge]:
    """The newest report of each version of every serving deployment, as /metrics shows it."""
    # Three reads, not one JOIN: projects and model versions are identity's and training's to
    # read. A /metrics scrape is no hot path, and each lookup is one query whatever the
    # number of deployments. Foreign keys keep every project and version a row names.
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            """
            SELECT DISTINCT ON (r.deployment_id, r.version_id)
                d.project_id, d.name, r.version_id, r.features, r.alert
            FROM drift_reports r
            JOIN deployments d ON d.id = r.deployment_id
            WHERE d.state IN ('READY', 'UPDATING')
            ORDER BY r.deployment_id, r.version_id, r.computed_at DESC
            """
        )
        projects = await projects_by_ids(connection, list({row["project_id"] for row in rows}))
        versions = await model_versions_by_ids(
            connection, list({row["version_id"] for row in rows})
        )
    return [
        DriftGauge(
            project=projects[row["project_id"]].slug,
            deployment=row["name"],
            version=str(versions[row["version_id"]].number),
            alert=row["alert"],
            feature_psi={
                name: found["psi"]
                for name, found in row["features"].items()
                if found.get("psi") is not None
            },
        )
        for row in rows
    ]
