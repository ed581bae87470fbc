"""Changing datasets: a version made from an upload or by transforming another, a version
deleted, expectations set. Each change is one transaction with its audit event, holding its
project open (`ChangeInProject`: none lands in an archived project); the slow table work runs in a
worker thread before the transaction opens."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import pyarrow as pa

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data.datasets.files import read_version_table, scratch
from aiaas.core.data.datasets.records import (
    DATASET_COLUMNS,
    VERSION_COLUMNS,
    Dataset,
    DatasetVersion,
    datasets_by_ids,
    get_version,
    latest_version,
    live_version_with_content,
    lock_live_version,
    to_dataset,
    to_version,
    version_by_content,
    version_users,
)
from aiaas.core.data.datasets.sealed_profile import SealedProfile, seal_profile
from aiaas.core.data.expectations import vet_expectations
from aiaas.core.data.ingest_processes import INGEST_PROCESSES
from aiaas.core.data.tabular.normalized import NormalizedTable, write_normalized
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.data.tabular.transforms import apply_steps
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.governance import artifacts_kept_on_success
from aiaas.core.identity.project_settings import keeps_dicom_personal_tags
from aiaas.core.identity.projects import ChangeInProject
from aiaas.core.storage import Connection, sha256_of

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

DETECT_EVERYTHING = ReadOptions()
DATASET_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,98}[a-z0-9])?")


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
    connection: Connection, project_id: UUID, name: str, actor: Principal, description: str
) -> Dataset:
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
        f"SELECT {DATASET_COLUMNS} FROM datasets WHERE project_id = $1 AND name = $2 FOR UPDATE",
        project_id,
        name,
    )
    assert row is not None  # inserted above if it was missing; datasets are never deleted
    return to_dataset(row)


@dataclass(frozen=True)
class NewVersion:
    version: DatasetVersion
    created: bool
    """False when the same content was there already and that version is answered."""


async def _record_version(
    change: AuditedChange,
    dataset: Dataset,
    table: NormalizedTable,
    profile: SealedProfile,
    content_sha256: str,
    artifact_key: str,
    actor: Principal,
    parent: DatasetVersion | None = None,
    transformation: list[dict[str, Any]] | None = None,
) -> NewVersion:
    connection: Connection = change.connection
    existing = await live_version_with_content(connection, dataset.id, content_sha256)
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
        INSERT INTO dataset_versions (id, dataset_id, project_id, number, content_sha256,
            artifact_key, source_format, row_count, size_bytes, columns, column_stats,
            sealed_preview, sealed_column_values, parent_version_id, transformation, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        RETURNING {VERSION_COLUMNS}
        """,
        profile.version_id,
        dataset.id,
        dataset.project_id,
        number,
        content_sha256,
        artifact_key,
        table.source_format,
        table.row_count,
        table.size_bytes,
        table.columns,
        profile.column_stats,
        profile.sealed_preview,
        profile.sealed_column_values,
        parent.id if parent else None,
        transformation,
        actor.user_id,
    )
    assert row is not None  # an INSERT ... RETURNING returns its row
    version = to_version(row)
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
            # An archive of images: how many files were skipped, how many were DICOM and
            # whether their personal tags were kept.
            **({"images": table.ingest_summary} if table.ingest_summary else {}),
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
    reading: Awaitable[NormalizedTable] | None = None,
) -> NewVersion:
    """Read an uploaded file into a new version of the named dataset (made if need be).
    `content_sha256` is the file's hash when its receiver took it already; `reading`, the
    reading its receiver started while the file arrived (`arriving_uploads`), if any."""
    check_dataset_name(dataset_name)
    async with (
        artifacts_kept_on_success(platform) as pending,
        ChangeInProject(
            platform, actor, "dataset.upload", request_id, project_id=project_id, deferred=True
        ) as change,
    ):
        if content_sha256 is None:
            content_sha256 = await asyncio.to_thread(sha256_of, source)
        async with platform.metadata.acquire() as connection:
            existing = await version_by_content(
                connection, project_id, dataset_name, content_sha256
            )
            # The project's, never the uploader's: a DICOM file's personal tags are dropped
            # unless the project keeps them.
            options = dataclasses.replace(
                options,
                keep_dicom_personal_tags=await keeps_dicom_personal_tags(connection, project_id),
            )
        if existing is None:
            # Read and sealed before the transaction opens: the slow part holds no lock and no
            # connection. The read runs in a child process under a memory ceiling, killed if
            # this upload is cancelled.
            with scratch(platform) as work:
                ingest = platform.service(INGEST_PROCESSES)
                table = await (reading or ingest.normalize(source, work, options))
                stored = await pending.store_file(project_id, table.path)
            profile = await seal_profile(platform, project_id, table)
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
        return await _record_version(
            change, dataset, table, profile, content_sha256, stored.key, actor
        )


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
    async with (
        artifacts_kept_on_success(platform) as pending,
        ChangeInProject(
            platform,
            actor,
            "dataset.transform",
            request_id,
            project_id=parent.project_id,
            deferred=True,
        ) as change,
    ):
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
            stored = await pending.store_file(parent.project_id, normalized.path)
        profile = await seal_profile(platform, parent.project_id, normalized)
        connection = await change.begin()
        await lock_live_version(connection, version_id)
        dataset_row = await connection.fetchrow(
            f"SELECT {DATASET_COLUMNS} FROM datasets WHERE id = $1 FOR UPDATE",
            parent.dataset_id,
        )
        assert dataset_row is not None  # datasets are never deleted
        return await _record_version(
            change,
            to_dataset(dataset_row),
            normalized,
            profile,
            content_sha256,
            stored.key,
            actor,
            parent=parent,
            transformation=steps,
        )


async def record_derived_version(
    change: AuditedChange,
    *,
    parent: DatasetVersion,
    dataset_name: str,
    table: NormalizedTable,
    profile: SealedProfile,
    content_sha256: str,
    artifact_key: str,
    owner: Principal,
    transformation: list[dict[str, Any]],
) -> NewVersion:
    """Record a version that another domain's work made from `parent` (batch scoring), as a
    version of `dataset_name` in the parent's project (made if need be), inside the caller's
    begun change: its file already written, profiled, sealed (`profile`) and stored."""
    check_dataset_name(dataset_name)
    connection: Connection = change.connection
    await lock_live_version(connection, parent.id)
    dataset = await _dataset_for_update(connection, parent.project_id, dataset_name, owner, "")
    return await _record_version(
        change,
        dataset,
        table,
        profile,
        content_sha256,
        artifact_key,
        owner,
        parent=parent,
        transformation=transformation,
    )


class ModelsUsingVersion(Protocol):
    """What answers which registered models were trained on a dataset version, one description
    each ("model NAME version N"), inside the caller's transaction.

    Training owns the models and sits above data, so data cannot ask it: whoever deletes a
    version passes training's answer in (`aiaas.core.training.models_trained_on`)."""

    async def __call__(self, connection: Connection, dataset_version_id: UUID, /) -> list[str]: ...


async def delete_version(
    platform: Platform,
    actor: Principal,
    version_id: UUID,
    *,
    models_using: ModelsUsingVersion,
    request_id: str | None = None,
) -> DatasetVersion:
    """Mark a version deleted, unless a job or a registered model still uses it. Its artifact
    goes at the next garbage collection, once nothing live refers to it.

    `models_using` has no default on purpose: a caller that could leave it out could delete a
    version a model was trained on."""
    async with platform.metadata.acquire() as connection:
        project_id = (await get_version(connection, version_id)).project_id
    async with ChangeInProject(
        platform, actor, "dataset.delete_version", request_id, project_id=project_id
    ) as change:
        connection = change.connection
        locked = await connection.fetchrow(
            f"SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE id = $1 FOR UPDATE",
            version_id,
        )
        assert locked is not None  # found above; versions are only ever marked deleted
        version = to_version(locked)
        if version.deleted_at is not None:
            raise ConflictError("the version is already deleted")
        jobs = await version_users(connection, version_id)
        models = await models_using(connection, version_id)
        users = jobs + models  # jobs first: the order the refusal names them in
        if users:
            raise ConflictError(
                f"the version is still used by {', '.join(users)}: it cannot be deleted"
            )
        row = await connection.fetchrow(
            "UPDATE dataset_versions SET deleted_at = clock_timestamp() WHERE id = $1 "
            f"RETURNING {VERSION_COLUMNS}",
            version_id,
        )
        assert row is not None  # the row is locked: it is still there
        await change.record(
            object_type="dataset_version",
            object_id=str(version_id),
            project_id=version.project_id,
            details={"number": version.number},
        )
    return to_version(row)


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
    async with platform.metadata.acquire() as connection:
        dataset = (await datasets_by_ids(connection, [dataset_id])).get(dataset_id)
        if dataset is None:
            raise NotFoundError("no such dataset")
        latest = await latest_version(connection, dataset_id)
    async with ChangeInProject(
        platform, actor, "dataset.set_expectations", request_id, project_id=dataset.project_id
    ) as change:
        vet_expectations(platform, expectations, latest.column_types if latest else {})
        row = await change.connection.fetchrow(
            f"UPDATE datasets SET expectations = $2 WHERE id = $1 RETURNING {DATASET_COLUMNS}",
            dataset_id,
            expectations,
        )
        assert row is not None  # found above; datasets are never deleted
        await change.record(
            object_type="dataset",
            object_id=str(dataset_id),
            project_id=dataset.project_id,
            details={"expectations": len(expectations)},
        )
    return to_dataset(row)
