"""Datasets and their immutable versions: upload, clean, look up, delete.

A version is identified by its content: the sha256 of the uploaded bytes, or of the normalized
Parquet a transformation made. Uploading the same content again answers the existing version.
The normalized Parquet is sealed in the vault with the project's data key; the row in
`dataset_versions` holds its schema, profile, preview and lineage. Versions never change; a
deleted one is only marked, and its artifact goes when garbage collection finds nothing refers
to it.

The table work (parsing, profiling, transforming) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pyarrow as pa

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data.tabular.ingest import (
    NormalizedTable,
    ReadOptions,
    normalize_upload,
    read_table,
    sha256_of,
    write_normalized,
)
from aiaas.core.data.tabular.transforms import apply_steps
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.governance.vault import VAULT
from aiaas.core.pagination import Page, fetch_page

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

DETECT_EVERYTHING = ReadOptions()
DATASET_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,98}[a-z0-9])?")


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
    preview: list[dict[str, Any]]
    parent_version_id: UUID | None
    transformation: list[dict[str, Any]] | None
    created_by: UUID | None
    created_at: datetime
    deleted_at: datetime | None

    @property
    def column_types(self) -> dict[str, str]:
        return {column["name"]: column["type"] for column in self.columns}


_DATASET_COLUMNS = "id, project_id, name, description, expectations, created_by, created_at"
_VERSION_COLUMNS = (
    "id, dataset_id, project_id, number, content_sha256, artifact_key, source_format, row_count, "
    "size_bytes, columns, column_stats, preview, parent_version_id, transformation, created_by, "
    "created_at, deleted_at"
)


def _dataset(row: Any) -> Dataset:
    return Dataset(**dict(row))


def _version(row: Any) -> DatasetVersion:
    return DatasetVersion(**dict(row))


# Reading ------------------------------------------------------------------------------------


async def datasets_by_ids(connection: Any, ids: list[UUID]) -> dict[UUID, Dataset]:
    rows = await connection.fetch(
        f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: _dataset(row) for row in rows}


async def versions_by_ids(connection: Any, ids: list[UUID]) -> dict[UUID, DatasetVersion]:
    rows = await connection.fetch(
        f"SELECT {_VERSION_COLUMNS} FROM dataset_versions WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: _version(row) for row in rows}


async def dataset_by_name(connection: Any, project_id: UUID, name: str) -> Dataset | None:
    row = await connection.fetchrow(
        f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE project_id = $1 AND name = $2",
        project_id,
        name,
    )
    return _dataset(row) if row is not None else None


async def list_datasets(
    connection: Any, project_id: UUID, *, first: int | None, after: str | None
) -> Page[Dataset]:
    return await fetch_page(
        connection,
        query=f"SELECT {_DATASET_COLUMNS} FROM datasets",
        conditions=["project_id = $1"],
        arguments=[project_id],
        first=first,
        after=after,
        to_item=_dataset,
    )


async def list_versions(
    connection: Any,
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
        query=f"SELECT {_VERSION_COLUMNS} FROM dataset_versions",
        conditions=conditions,
        arguments=[dataset_id],
        first=first,
        after=after,
        to_item=_version,
    )


async def latest_versions(connection: Any, dataset_ids: list[UUID]) -> dict[UUID, DatasetVersion]:
    """Each dataset's newest version that is not deleted, in one query."""
    rows = await connection.fetch(
        f"SELECT DISTINCT ON (dataset_id) {_VERSION_COLUMNS} FROM dataset_versions "
        "WHERE dataset_id = ANY($1::uuid[]) AND deleted_at IS NULL "
        "ORDER BY dataset_id, number DESC",
        dataset_ids,
    )
    return {row["dataset_id"]: _version(row) for row in rows}


async def latest_version(connection: Any, dataset_id: UUID) -> DatasetVersion | None:
    return (await latest_versions(connection, [dataset_id])).get(dataset_id)


async def get_version(connection: Any, version_id: UUID) -> DatasetVersion:
    found = (await versions_by_ids(connection, [version_id])).get(version_id)
    if found is None:
        raise NotFoundError("no such dataset version")
    return found


# Writing ------------------------------------------------------------------------------------


@contextmanager
def scratch(platform: Platform) -> Iterator[Path]:
    """A private directory for one operation's files, removed afterwards whatever happens."""
    base = platform.config.scratch_dir
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(dir=base))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def check_dataset_name(name: str) -> None:
    if not DATASET_NAME.fullmatch(name):
        raise InputError(
            "invalid dataset name",
            field_errors={
                "name": "1 to 100 lowercase letters, digits, dots, hyphens and underscores, "
                "starting and ending with a letter or digit"
            },
        )


async def _dataset_for_update(
    connection: Any, project_id: UUID, name: str, actor: Principal, description: str
) -> Dataset:
    archived = await connection.fetchval(
        "SELECT archived_at IS NOT NULL FROM projects WHERE id = $1 FOR SHARE", project_id
    )
    if archived is None:
        raise NotFoundError("no such project")
    if archived:
        raise ConflictError("the project is archived: it takes no new data")
    await connection.execute(
        "INSERT INTO datasets (project_id, name, description, created_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (project_id, name) DO NOTHING",
        project_id,
        name,
        description,
        actor.user_id,
    )
    # The row lock orders the versions of one dataset: their numbers never collide.
    row = await connection.fetchrow(
        f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE project_id = $1 AND name = $2 FOR UPDATE",
        project_id,
        name,
    )
    return _dataset(row)


async def _live_version_with_content(
    connection: Any, dataset_id: UUID, content_sha256: str
) -> DatasetVersion | None:
    row = await connection.fetchrow(
        f"SELECT {_VERSION_COLUMNS} FROM dataset_versions "
        "WHERE dataset_id = $1 AND content_sha256 = $2 AND deleted_at IS NULL",
        dataset_id,
        content_sha256,
    )
    return _version(row) if row is not None else None


@dataclass(frozen=True)
class NewVersion:
    version: DatasetVersion
    created: bool
    """False when the same content was there already and that version is answered."""


async def _record_version(
    change: AuditedChange,
    dataset: Dataset,
    table: NormalizedTable,
    content_sha256: str,
    artifact_key: str,
    actor: Principal,
    parent: DatasetVersion | None = None,
    transformation: list[dict[str, Any]] | None = None,
) -> NewVersion:
    connection = change.connection
    existing = await _live_version_with_content(connection, dataset.id, content_sha256)
    if existing is not None:
        # Made meanwhile by another upload of the same content: answer that one.
        await change.record(
            object_type="dataset_version",
            object_id=str(existing.id),
            project_id=dataset.project_id,
            details={"dataset": dataset.name, "deduplicated": True},
        )
        return NewVersion(existing, created=False)
    number = await connection.fetchval(
        "SELECT coalesce(max(number), 0) + 1 FROM dataset_versions WHERE dataset_id = $1",
        dataset.id,
    )
    row = await connection.fetchrow(
        f"""
        INSERT INTO dataset_versions (dataset_id, project_id, number, content_sha256, artifact_key,
            source_format, row_count, size_bytes, columns, column_stats, preview,
            parent_version_id, transformation, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        RETURNING {_VERSION_COLUMNS}
        """,
        dataset.id,
        dataset.project_id,
        number,
        content_sha256,
        artifact_key,
        table.source_format,
        table.row_count,
        table.size_bytes,
        table.columns,
        table.column_stats,
        table.preview,
        parent.id if parent else None,
        transformation,
        actor.user_id,
    )
    version = _version(row)
    await change.record(
        object_type="dataset_version",
        object_id=str(version.id),
        project_id=dataset.project_id,
        details={
            "dataset": dataset.name,
            "number": number,
            "rows": table.row_count,
            "content_sha256": content_sha256,
            "parent": str(parent.id) if parent else None,
        },
    )
    return NewVersion(version, created=True)


async def upload_version(
    platform: Platform,
    actor: Principal,
    project_id: UUID,
    *,
    dataset_name: str,
    source: Path,
    options: ReadOptions = DETECT_EVERYTHING,
    description: str = "",
    content_sha256: str | None = None,
    request_id: str | None = None,
) -> NewVersion:
    """Read an uploaded file into a new version of the named dataset (made if need be).
    `content_sha256` is the file's hash when its receiver took it already."""
    check_dataset_name(dataset_name)
    async with AuditedChange(
        platform, actor, "dataset.upload", request_id, project_id=project_id, deferred=True
    ) as change:
        if content_sha256 is None:
            content_sha256 = await asyncio.to_thread(sha256_of, source)
        async with platform.metadata.acquire() as connection:
            existing = await _version_by_content(
                connection, project_id, dataset_name, content_sha256
            )
        if existing is None:
            # Read and sealed before the transaction opens: the slow part holds no lock and no
            # connection. Should the insert below fail, the artifact is left for the garbage
            # collector.
            with scratch(platform) as work:
                table = await asyncio.to_thread(normalize_upload, source, work, options)
                stored = await platform.service(VAULT).store_file(project_id, table.path)
        connection = await change.begin()
        dataset = await _dataset_for_update(
            connection, project_id, dataset_name, actor, description
        )
        if existing is not None:
            await change.record(
                object_type="dataset_version",
                object_id=str(existing.id),
                project_id=project_id,
                details={"dataset": dataset_name, "deduplicated": True},
            )
            return NewVersion(existing, created=False)
        return await _record_version(change, dataset, table, content_sha256, stored.key, actor)


async def _version_by_content(
    connection: Any, project_id: UUID, dataset_name: str, content_sha256: str
) -> DatasetVersion | None:
    dataset_id = await connection.fetchval(
        "SELECT id FROM datasets WHERE project_id = $1 AND name = $2", project_id, dataset_name
    )
    if dataset_id is None:
        return None
    return await _live_version_with_content(connection, dataset_id, content_sha256)


async def read_version_table(platform: Platform, version: DatasetVersion) -> pa.Table:
    with scratch(platform) as work:
        path = work / "version.parquet"
        await platform.service(VAULT).read_to_file(version.project_id, version.artifact_key, path)
        return await asyncio.to_thread(read_table, path)


def _transform_to_file(
    table: pa.Table, steps: list[dict[str, Any]], destination: Path
) -> tuple[NormalizedTable, str]:
    result = apply_steps(table, steps)
    normalized = write_normalized(
        iter(result.to_batches(max_chunksize=64 * 1024)), result.schema, destination, "derived"
    )
    return normalized, sha256_of(destination)


async def transform_version(
    platform: Platform,
    actor: Principal,
    version_id: UUID,
    steps: list[dict[str, Any]],
    *,
    request_id: str | None = None,
) -> NewVersion:
    """Clean a version into a new version of the same dataset, with its lineage."""
    async with platform.metadata.acquire() as connection:
        parent = await get_version(connection, version_id)
    async with AuditedChange(
        platform,
        actor,
        "dataset.transform",
        request_id,
        project_id=parent.project_id,
        deferred=True,
    ) as change:
        if parent.deleted_at is not None:
            raise ConflictError("the version is deleted")
        table = await read_version_table(platform, parent)
        with scratch(platform) as work:
            normalized, content_sha256 = await asyncio.to_thread(
                _transform_to_file, table, steps, work / "normalized.parquet"
            )
            if normalized.row_count == 0:
                raise InputError(
                    "the transformation leaves no rows", field_errors={"steps": "no rows left"}
                )
            stored = await platform.service(VAULT).store_file(parent.project_id, normalized.path)
        connection = await change.begin()
        await lock_live_version(connection, version_id)
        dataset_row = await connection.fetchrow(
            f"SELECT {_DATASET_COLUMNS} FROM datasets WHERE id = $1 FOR UPDATE",
            parent.dataset_id,
        )
        return await _record_version(
            change,
            _dataset(dataset_row),
            normalized,
            content_sha256,
            stored.key,
            actor,
            parent=parent,
            transformation=steps,
        )


async def lock_live_version(connection: Any, version_id: UUID) -> None:
    """Hold the version against deletion until the transaction ends; `ConflictError` if it
    is already deleted. A deletion that started meanwhile is waited for, then seen."""
    deleted = await connection.fetchval(
        "SELECT deleted_at IS NOT NULL FROM dataset_versions WHERE id = $1 FOR SHARE", version_id
    )
    if deleted:
        raise ConflictError("the version is deleted")


async def delete_version(
    platform: Platform, actor: Principal, version_id: UUID, *, request_id: str | None = None
) -> DatasetVersion:
    """Mark a version deleted, unless a job still uses it. Its artifact goes at the next
    garbage collection, once nothing live refers to it."""
    async with platform.metadata.acquire() as connection:
        project_id = (await get_version(connection, version_id)).project_id
    async with AuditedChange(
        platform, actor, "dataset.delete_version", request_id, project_id=project_id
    ) as change:
        connection = change.connection
        version = _version(
            await connection.fetchrow(
                f"SELECT {_VERSION_COLUMNS} FROM dataset_versions WHERE id = $1 FOR UPDATE",
                version_id,
            )
        )
        if version.deleted_at is not None:
            raise ConflictError("the version is already deleted")
        users = await version_users(connection, version_id)
        if users:
            raise ConflictError(
                f"the version is still used by {', '.join(users)}: it cannot be deleted"
            )
        row = await connection.fetchrow(
            "UPDATE dataset_versions SET deleted_at = clock_timestamp() WHERE id = $1 "
            f"RETURNING {_VERSION_COLUMNS}",
            version_id,
        )
        await change.record(
            object_type="dataset_version",
            object_id=str(version_id),
            project_id=version.project_id,
            details={"number": version.number},
        )
    return _version(row)


async def version_users(connection: Any, version_id: UUID) -> list[str]:
    """What still uses a version: jobs that have not finished and models trained on it.
    Derived versions' lineage does not count (a parent may go; the child keeps its own data)."""
    rows = await connection.fetch(
        "SELECT id, kind FROM jobs WHERE state IN ('QUEUED', 'RUNNING') "
        "AND payload ->> 'dataset_version_id' = $1",
        str(version_id),
    )
    users = [f"job {row['id']} ({row['kind']})" for row in rows]
    models = await connection.fetch(
        "SELECT m.name, v.number FROM model_versions v JOIN models m ON m.id = v.model_id "
        "WHERE v.dataset_version_id = $1 ORDER BY m.name, v.number",
        version_id,
    )
    return users + [f"model {row['name']} version {row['number']}" for row in models]


async def set_expectations(
    platform: Platform,
    actor: Principal,
    dataset_id: UUID,
    expectations: list[dict[str, Any]],
    *,
    request_id: str | None = None,
) -> Dataset:
    """Declare what a dataset's versions should satisfy; every expectation is vetted by the
    validator of its kind against the columns of the latest version."""
    from aiaas.core.data.quality import vet_expectations

    async with platform.metadata.acquire() as connection:
        dataset = (await datasets_by_ids(connection, [dataset_id])).get(dataset_id)
        if dataset is None:
            raise NotFoundError("no such dataset")
        latest = await latest_version(connection, dataset_id)
    async with AuditedChange(
        platform, actor, "dataset.set_expectations", request_id, project_id=dataset.project_id
    ) as change:
        vet_expectations(platform, expectations, latest.column_types if latest else {})
        row = await change.connection.fetchrow(
            f"UPDATE datasets SET expectations = $2 WHERE id = $1 RETURNING {_DATASET_COLUMNS}",
            dataset_id,
            expectations,
        )
        await change.record(
            object_type="dataset",
            object_id=str(dataset_id),
            project_id=dataset.project_id,
            details={"expectations": len(expectations)},
        )
    return _dataset(row)
