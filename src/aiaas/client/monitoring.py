"""A deployment's monitoring as the SDK reads it: the newest drift report of each version it
serves, feature by feature (`Deployment.drift()`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiaas.client.connection import Client
from aiaas.client.errors import NotFoundError
from aiaas.client.generated.monitoring import (
    DeploymentDriftQueryNodeDeployment,
    DeploymentDriftQueryNodeDeploymentDrift,
)

__all__ = ["DriftReport", "FeatureDrift", "drift_reports"]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's population stability index against the training data: below 0.1 stable,
    up to 0.25 moderate, above that drifting. `psi` is None without enough samples."""

    feature: str
    psi: float | None
    sample_count: int


@dataclass(frozen=True)
class VersionNumber:
    id: str
    number: int


@dataclass(frozen=True)
class DriftReport:
    """One drift check of one served version: the samples of the window since `window_start`
    against the version's training data. `alert` is True when some feature's PSI passed
    `threshold`; `max_psi` is None until a check saw enough samples."""

    computed_at: datetime
    window_start: datetime
    sample_count: int
    max_psi: float | None
    threshold: float
    alert: bool
    features: tuple[FeatureDrift, ...]
    model_version: VersionNumber

    @classmethod
    def of(cls, fields: DeploymentDriftQueryNodeDeploymentDrift) -> DriftReport:
        return cls(
            computed_at=fields.computed_at,
            window_start=fields.window_start,
            sample_count=fields.sample_count,
            max_psi=fields.max_psi,
            threshold=fields.threshold,
            alert=fields.alert,
            features=tuple(
                FeatureDrift(found.feature, found.psi, found.sample_count)
                for found in fields.features
            ),
            model_version=VersionNumber(fields.model_version.id, fields.model_version.number),
        )


def drift_reports(client: Client, deployment_id: str) -> list[DriftReport]:
    """The newest report of each version the deployment serves; empty before its first check."""
    node = client.api.deployment_drift(id=deployment_id).node
    if not isinstance(node, DeploymentDriftQueryNodeDeployment):
        raise NotFoundError(f"deployment {deployment_id} is gone", "NOT_FOUND")
    return [DriftReport.of(report) for report in node.drift]
