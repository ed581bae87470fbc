"""Per-request DataLoaders, so that each nesting level of a query costs at most one SQL query.

Loaders are made fresh for every request in `view.get_context`: a loader caches what it loaded,
and a cache shared between requests would serve one caller's view of the data to another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from strawberry.dataloader import DataLoader

from aiaas.core.identity import users_by_ids
from aiaas.core.platform import Platform
from aiaas.core.projects import projects_by_ids

ValueT = TypeVar("ValueT")

FetchByIds = Callable[[Any, list[UUID]], Awaitable[dict[UUID, ValueT]]]


def loader_by_id(platform: Platform, fetch: FetchByIds[ValueT]) -> DataLoader[UUID, ValueT | None]:
    async def load(ids: Sequence[UUID]) -> list[ValueT | None]:
        async with platform.metadata.acquire() as connection:
            found = await fetch(connection, list(ids))
        return [found.get(object_id) for object_id in ids]

    return DataLoader(load_fn=load)


def make_loaders(platform: Platform) -> dict[str, DataLoader[Any, Any]]:
    return {
        "user": loader_by_id(platform, users_by_ids),
        "project": loader_by_id(platform, projects_by_ids),
    }
