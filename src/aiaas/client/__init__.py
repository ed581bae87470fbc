"""The Python SDK of aiaas: `Client(url, token)` or `Client.from_env()`.

    from aiaas.client import Client

    client = Client.from_env()  # AIAAS_URL and AIAAS_TOKEN, else `aiaas login`'s credentials
    project = client.project("fraud")
    version = project.upload("transactions.csv", name="transactions")
    version.validate().wait()
    print(version.quality_report.q)
    job = project.train(version, trainer="tabular-classifier", target="is_fraud").wait()
    sweep = project.create_sweep(version, trainer="tabular-classifier", target="is_fraud",
                                 search_space={"hidden_size": [32, 64]}, objective="f1_macro")
    print(sweep.wait().best_trial)  # each trial a training job; `sweep.promote("staging")`
    deployment = job.model_version.deploy("fraud", max_batch_size=64).wait_ready()
    predictions = deployment.predict(test_frame)  # a DataFrame, in the rows' order
    scored = deployment.batch_predict(version).wait().output  # a new DatasetVersion

Every failure the API reports is an exception of `aiaas.client.errors`; this package imports
nothing of the server (`aiaas.core` and the rest), only httpx, pydantic and rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiaas.client.batch import BatchPredictionJob
    from aiaas.client.client import AsyncClient, Client
    from aiaas.client.deployments import Deployment, ModelVersion
    from aiaas.client.models import Model
    from aiaas.client.resources import DatasetVersion, Job, Project, QualityReport
    from aiaas.client.sweeps import Sweep, SweepTrial
    from aiaas.client.training import JobEvent, TrainingJob

__all__ = [
    "AsyncClient",
    "BatchPredictionJob",
    "Client",
    "DatasetVersion",
    "Deployment",
    "Job",
    "JobEvent",
    "Model",
    "ModelVersion",
    "Project",
    "QualityReport",
    "Sweep",
    "SweepTrial",
    "TrainingJob",
]

_HOMES = {
    "AsyncClient": "aiaas.client.client",
    "BatchPredictionJob": "aiaas.client.batch",
    "Client": "aiaas.client.client",
    "DatasetVersion": "aiaas.client.resources",
    "Deployment": "aiaas.client.deployments",
    "Model": "aiaas.client.models",
    "ModelVersion": "aiaas.client.deployments",
    "Job": "aiaas.client.resources",
    "Project": "aiaas.client.resources",
    "QualityReport": "aiaas.client.resources",
    "JobEvent": "aiaas.client.training",
    "Sweep": "aiaas.client.sweeps",
    "SweepTrial": "aiaas.client.sweeps",
    "TrainingJob": "aiaas.client.training",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m aiaas.client.regenerate` runs while the
    # generated package these import is missing or stale.
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'aiaas.client' has no attribute {name!r}")
