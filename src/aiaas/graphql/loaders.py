"""Per-request DataLoaders, so that each nesting level of a query costs at most one SQL query.

Every loader is `loader_by_key` over a domain's `<things>_by_<keys>(connection, keys)` query,
which answers a dict by key (a key it does not find is left out, and loads as None). Loaders are
made fresh for every request (`make_loaders`, from `view.get_context`): a loader caches what it
loaded, and a cache shared between requests would serve one caller's view of the data to another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from aiaas.core.data.datasets import datasets_by_ids, latest_versions, versions_by_ids
from aiaas.core.data.quality import latest_reports
from aiaas.core.identity.accounts import users_by_ids
from aiaas.core.identity.projects import projects_by_ids, projects_by_slugs
from aiaas.core.jobs import jobs_by_ids
from aiaas.core.platform import Platform
from aiaas.core.serving.deployments import deployments_by_ids
from aiaas.core.storage import Connection
from aiaas.core.training.metric_history import latest_metrics, metric_keys
from aiaas.core.training.registry import (
    aliases_by_models,
    model_versions_by_ids,
    model_versions_by_jobs,
    models_by_ids,
)
from aiaas.core.training.sweep_records import sweeps_by_ids, trials_of

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")

FetchByKeys = Callable[[Connection, list[KeyT]], Awaitable[dict[KeyT, ValueT]]]


def loader_by_key(
    platform: Platform, fetch: FetchByKeys[KeyT, ValueT]
) -> DataLoader[KeyT, ValueT | None]:
    """Batch every `load(key)` of one tick into one `fetch` of all the keys, answered in key
    order."""

    async def load(keys: Sequence[KeyT]) -> list[ValueT | None]:
        async with platform.metadata.acquire() as connection:
            found = await fetch(connection, list(keys))
        return [found.get(key) for key in keys]

    return DataLoader(load_fn=load)


def make_loaders(platform: Platform) -> dict[str, DataLoader[Any, Any]]:
    """One request's loaders, by the name resolvers ask `RequestContext.loader` for."""
    return {
        "user": loader_by_key(platform, users_by_ids),
        "project": loader_by_key(platform, projects_by_ids),
        "project_by_slug": loader_by_key(platform, projects_by_slugs),
        "dataset": loader_by_key(platform, datasets_by_ids),
        "dataset_version": loader_by_key(platform, versions_by_ids),
        "latest_dataset_version": loader_by_key(platform, latest_versions),
        "job": loader_by_key(platform, jobs_by_ids),
        "latest_quality_report": loader_by_key(platform, latest_reports),
        "model": loader_by_key(platform, models_by_ids),
        "model_version": loader_by_key(platform, model_versions_by_ids),
        "model_version_by_job": loader_by_key(platform, model_versions_by_jobs),
        "model_aliases": loader_by_key(platform, aliases_by_models),
        "deployment": loader_by_key(platform, deployments_by_ids),
        "metric_keys": loader_by_key(platform, metric_keys),
        "latest_metrics": loader_by_key(platform, latest_metrics),
        "sweep": loader_by_key(platform, sweeps_by_ids),
        "sweep_trials": loader_by_key(platform, trials_of),
    }
