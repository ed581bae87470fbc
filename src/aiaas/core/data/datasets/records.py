"""Datasets and their versions as stored: the records, and the queries that read them (including
the row locks that order changes against each other)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from aiaas.core.errors import ConflictError, NotFoundError
from aiaas.core.jobs import unfinished_jobs_naming
from aiaas.core.pagination import Page, fetch_page
from aiaas.core.storage import Connection, Record


@dataclass(frozen=True)
class Dataset:
    id: UUID
    project_id: UUID
    name: str
    description: str
    expectations: list[dict[str, Any]]
    created_by: UUID | None
    created_at: datetime


@dataclass(frozen=True)
class DatasetVersion:
    id: UUID
    dataset_id: UUID
    project_id: UUID
    number: int
    content_sha256: str
    artifact_key: str
    source_format: str
    row_count: int
    size_bytes: int
    columns: list[dict[str, str]]
    column_stats: dict[str, Any]
    """Each column's aggregates only (null fraction, distinct count, mean, std, flags): its min,
    max and top values are values of rows, kept sealed (`sealed_profile.version_column_stats`
    answers the whole statistics)."""
    sealed_preview: bytes | None
    """The first rows, sealed (`sealed_profile.version_preview` opens them). None for a version
    written before revision 0008 whose preview is not rebuilt yet."""
    sealed_column_values: bytes | None
    """Each column's min, max and top values, sealed; None exactly when `sealed_preview` is."""
    parent_version_id: UUID | None
    transformation: list[dict[str, Any]] | None
    created_by: UUID | None
    created_at: datetime
    deleted_at: datetime | None

    @property
    def column_types(self) -> dict[str, str]:
        return {column["name"]: column["type"] for column in self.columns}


DATASET_COLUMNS = "id, project_id, name, description, expectations, created_by, created_at"
VERSION_COLUMNS = (
    "id, dataset_id, project_id, number, content_sha256, artifact_key, source_format, row_count, "
    "size_bytes, columns, column_stats, sealed_preview, sealed_column_values, parent_version_id, "
    "transformation, created_by, created_at, deleted_at"
)


def to_dataset(row: Record) -> Dataset:
    return Dataset(**dict(row))


def to_version(row: Record) -> DatasetVersion:
    return DatasetVersion(**dict(row))


# Reading ------------------------------------------------------------------------------------


async def datasets_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, Dataset]:
    rows = await connection.fetch(
        f"SELECT {DATASET_COLUMNS} FROM datasets WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: to_dataset(row) for row in rows}


async def versions_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, DatasetVersion]:
    rows = await connection.fetch(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: to_version(row) for row in rows}


async def dataset_by_name(connection: Connection, project_id: UUID, name: str) -> Dataset | None:
    row = await connection.fetchrow(
        f"SELECT {DATASET_COLUMNS} FROM datasets WHERE project_id = $1 AND name = $2",
        project_id,
        name,
    )
    return to_dataset(row) if row is not None else None


async def list_datasets(
    connection: Connection, project_id: UUID, *, first: int | None, after: str | None
) -> Page[Dataset]:
    return await fetch_page(
        connection,
        query=f"SELECT {DATASET_COLUMNS} FROM datasets",
        conditions=["project_id = $1"],
        arguments=[project_id],
        first=first,
        after=after,
        to_item=to_dataset,
    )


async def list_versions(
    connection: Connection,
    dataset_id: UUID,
    *,
    first: int | None,
    after: str | None,
    include_deleted: bool = False,
) -> Page[DatasetVersion]:
    conditions = ["dataset_id = $1"]
    if not include_deleted:
        conditions.append("deleted_at IS NULL")
    return await fetch_page(
        connection,
        query=f"SELECT {VERSION_COLUMNS} FROM dataset_versions",
        conditions=conditions,
        arguments=[dataset_id],
        first=first,
        after=after,
        to_item=to_version,
    )


async def latest_versions(
    connection: Connection, dataset_ids: list[UUID]
) -> dict[UUID, DatasetVersion]:
    """Each dataset's newest version that is not deleted, in one query."""
    rows = await connection.fetch(
        f"SELECT DISTINCT ON (dataset_id) {VERSION_COLUMNS} FROM dataset_versions "
        "WHERE dataset_id = ANY($1::uuid[]) AND deleted_at IS NULL "
        "ORDER BY dataset_id, number DESC",
        dataset_ids,
    )
    return {row["dataset_id"]: to_version(row) for row in rows}


async def latest_version(connection: Connection, dataset_id: UUID) -> DatasetVersion | None:
    return (await latest_versions(connection, [dataset_id])).get(dataset_id)


async def get_version(connection: Connection, version_id: UUID) -> DatasetVersion:
    found = (await versions_by_ids(connection, [version_id])).get(version_id)
    if found is None:
        raise NotFoundError("no such dataset version")
    return found


async def version_by_number(
    connection: Connection, dataset_id: UUID, number: int
) -> DatasetVersion | None:
    """The dataset's version `number`, deleted or not (the caller says what a deleted one
    answers)."""
    row = await connection.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE dataset_id = $1 AND number = $2",
        dataset_id,
        number,
    )
    return to_version(row) if row is not None else None


# For the changes: the same content, and the locks -------------------------------------------


async def live_version_with_content(
    connection: Connection, dataset_id: UUID, content_sha256: str
) -> DatasetVersion | None:
    row = await connection.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions "
        "WHERE dataset_id = $1 AND content_sha256 = $2 AND deleted_at IS NULL",
        dataset_id,
        content_sha256,
    )
    return to_version(row) if row is not None else None


async def version_by_content(
    connection: Connection, project_id: UUID, dataset_name: str, content_sha256: str
) -> DatasetVersion | None:
    dataset_id = await connection.fetchval(
        "SELECT id FROM datasets WHERE project_id = $1 AND name = $2", project_id, dataset_name
    )
    if dataset_id is None:
        return None
    return await live_version_with_content(connection, dataset_id, content_sha256)


async def version_with_step(
    connection: Connection, project_id: UUID, step: dict[str, Any]
) -> DatasetVersion | None:
    """The project's version whose transformation has a step holding every field of `step`:
    the one a job recorded itself in, once it made it."""
    row = await connection.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions "
        "WHERE project_id = $1 AND transformation @> $2::jsonb",
        project_id,
        [step],
    )
    return to_version(row) if row is not None else None


async def lock_live_version(connection: Connection, version_id: UUID) -> None:
    """Hold the version against deletion until the transaction ends; `ConflictError` if it
    is already deleted. A deletion that started meanwhile is waited for, then seen."""
    deleted = await connection.fetchval(
        "SELECT deleted_at IS NOT NULL FROM dataset_versions WHERE id = $1 FOR SHARE", version_id
    )
    if deleted:
        raise ConflictError("the version is deleted")


async def version_users(connection: Connection, version_id: UUID) -> list[str]:
    """The jobs still using a version: those that have not finished. The models trained on it
    are training's to tell (`delete_version` asks through its `models_using`). Derived
    versions' lineage does not count (a parent may go; the child keeps its own data)."""
    jobs = await unfinished_jobs_naming(connection, "dataset_version_id", str(version_id))
    return [f"job {job.id} ({job.kind})" for job in jobs]
