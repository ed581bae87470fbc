"""Garbage collection: removing artifacts that nothing live refers to any more.

Deleting a dataset version only marks it; its sealed Parquet stays until this runs. An artifact
is kept if a live row refers to it, or if it is younger than `gc_grace_s`: an upload stores its
artifact before it inserts the row that refers to it, and must not lose it in between. Runs as a
worker's cron job and as `aiaas gc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiaas.core.audit import AuditedChange

if TYPE_CHECKING:
    from aiaas.core.platform import Platform
    from aiaas.core.storage import Connection

# Every column that refers to an artifact: (table, column, what makes the reference live).
ARTIFACT_REFERENCES: tuple[tuple[str, str, str], ...] = (
    ("dataset_versions", "artifact_key", "deleted_at IS NULL"),
    # Registered model versions are never deleted yet: their bundles are always live.
    ("model_versions", "artifact_key", "true"),
    # A training job's stored checkpoints, live while their rows exist: until the job succeeds,
    # or for `checkpoint_retention_s` after it failed (`core/training/checkpoint_uploads.py`).
    ("job_checkpoints", "artifact_key", "true"),
)


@dataclass(frozen=True)
class Collection:
    deleted: int
    kept_referenced: int
    kept_young: int
    discarded_incomplete: int


async def referenced_artifacts(connection: Connection) -> set[str]:
    keys: set[str] = set()
    for table, column, live in ARTIFACT_REFERENCES:
        keys |= {
            row[0] for row in await connection.fetch(f"SELECT {column} FROM {table} WHERE {live}")
        }
    return keys


async def is_referenced(connection: Connection, key: str, *, or_deleted: bool = False) -> bool:
    """Whether a live row refers to the artifact; with `or_deleted`, any row, a deleted
    version's included."""
    for table, column, live in ARTIFACT_REFERENCES:
        condition = "true" if or_deleted else live
        if await connection.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} = $1 AND {condition})", key
        ):
            return True
    return False


async def collect_garbage(platform: Platform, *, grace_s: float | None = None) -> Collection:
    grace = platform.config.gc_grace_s if grace_s is None else grace_s
    store = platform.artifacts
    async with platform.metadata.acquire() as connection:
        referenced = await referenced_artifacts(connection)
    deleted = kept_referenced = kept_young = 0
    async for key in store.keys():
        if key in referenced:
            kept_referenced += 1
            continue
        age = await store.age_seconds(key)
        if grace > 0 and (age is None or age < grace):
            kept_young += 1
            continue
        # Looked up again just before deleting: a row may have come to refer to it meanwhile.
        async with platform.metadata.acquire() as connection:
            if await is_referenced(connection, key):
                kept_referenced += 1
                continue
        if await store.delete(key):
            deleted += 1
    discarded = await store.discard_incomplete(grace)
    result = Collection(deleted, kept_referenced, kept_young, discarded)
    async with AuditedChange(platform, None, "artifacts.collect_garbage") as change:
        await change.record(
            object_type="artifact_store",
            object_id=platform.config.artifact_store,
            details={
                "deleted": deleted,
                "kept_referenced": kept_referenced,
                "kept_young": kept_young,
                "discarded_incomplete": discarded,
            },
        )
    return result
