"""The Python SDK of aiaas: `Client(url, token)` or `Client.from_env()`.

    from aiaas.client import Client

    client = Client.from_env()  # AIAAS_URL and AIAAS_TOKEN, else `aiaas login`'s credentials
    project = client.project("fraud")
    version = project.upload("transactions.csv", name="transactions")
    version.validate().wait()
    print(version.quality_report.q)

Every failure the API reports is an exception of `aiaas.client.errors`; this package imports
nothing of the server (`aiaas.core` and the rest), only httpx, pydantic and rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiaas.client.client import AsyncClient, Client
    from aiaas.client.resources import DatasetVersion, Job, Project, QualityReport
    from aiaas.client.training import JobEvent, TrainingJob

__all__ = [
    "AsyncClient",
    "Client",
    "DatasetVersion",
    "Job",
    "JobEvent",
    "Project",
    "QualityReport",
    "TrainingJob",
]

_HOMES = {
    "AsyncClient": "aiaas.client.client",
    "Client": "aiaas.client.client",
    "DatasetVersion": "aiaas.client.resources",
    "Job": "aiaas.client.resources",
    "Project": "aiaas.client.resources",
    "QualityReport": "aiaas.client.resources",
    "JobEvent": "aiaas.client.training",
    "TrainingJob": "aiaas.client.training",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m aiaas.client.regenerate` runs while the
    # generated package these import is missing or stale.
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'aiaas.client' has no attribute {name!r}")
