"""The model registry: registered models, their immutable versions, and aliases.

A successful training job registers one `ModelVersion` (its bundle encrypted in the artifact
store, its signature, its evaluation metrics, and its lineage to the job and the dataset
version). Versions never change; aliases (`staging`, `production`, ...) are the movable names
that deployments follow. Moving an alias passes the model's promotion gates for that alias first
(`promotion.py` holds what a gate is and how it is checked), and a failing gate refuses the move
with its reason.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.errors import ConflictError, InputError, NotFoundError
from aiaas.core.identity.projects import ChangeInProject
from aiaas.core.pagination import Page, fetch_page
from aiaas.core.storage import Connection, Record, returned_row
from aiaas.core.training.promotion import ALIAS_NAME, check_gates, vet_promotion_gates

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,98}[a-z0-9])?$")


@dataclass(frozen=True)
class Model:
    id: UUID
    project_id: UUID
    name: str
    description: str
    promotion_gates: list[dict[str, Any]]
    created_by: UUID | None
    created_at: datetime


@dataclass(frozen=True)
class ModelVersion:
    id: UUID
    model_id: UUID
    project_id: UUID
    number: int
    job_id: UUID | None
    """The training job that made it; None for an uploaded version."""
    dataset_version_id: UUID | None
    """The data it was trained on, or an uploaded version's reference data, if it has any."""
    source: str
    """`training` or `upload`."""
    trainer: str
    format: str
    artifact_key: str
    size_bytes: int
    signature: dict[str, Any]
    metrics: dict[str, Any]
    hyperparameters: dict[str, Any]
    created_by: UUID | None
    created_at: datetime


@dataclass(frozen=True)
class ModelAlias:
    model_id: UUID
    alias: str
    version_id: UUID
    updated_by: UUID | None
    updated_at: datetime


_MODEL_COLUMNS = "id, project_id, name, description, promotion_gates, created_by, created_at"
_VERSION_COLUMNS = (
    "id, model_id, project_id, number, job_id, dataset_version_id, source, trainer, format, "
    "artifact_key, size_bytes, signature, metrics, hyperparameters, created_by, created_at"
)
_ALIAS_COLUMNS = "model_id, alias, version_id, updated_by, updated_at"


def _model(row: Record) -> Model:
    return Model(**dict(row))


def _version(row: Record) -> ModelVersion:
    return ModelVersion(**dict(row))


# Reading ------------------------------------------------------------------------------------


async def models_by_ids(connection: Connection, ids: list[UUID]) -> dict[UUID, Model]:
    rows = await connection.fetch(
        f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: _model(row) for row in rows}


async def model_versions_by_ids(
    connection: Connection, ids: list[UUID]
) -> dict[UUID, ModelVersion]:
    rows = await connection.fetch(
        f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE id = ANY($1::uuid[])", ids
    )
    return {row["id"]: _version(row) for row in rows}


async def model_versions_by_jobs(
    connection: Connection, job_ids: list[UUID]
) -> dict[UUID, ModelVersion]:
    rows = await connection.fetch(
        f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE job_id = ANY($1::uuid[])", job_ids
    )
    return {row["job_id"]: _version(row) for row in rows}


async def aliases_by_models(
    connection: Connection, model_ids: list[UUID]
) -> dict[UUID, list[ModelAlias]]:
    rows = await connection.fetch(
        f"SELECT {_ALIAS_COLUMNS} FROM model_aliases WHERE model_id = ANY($1::uuid[]) "
        "ORDER BY alias",
        model_ids,
    )
    found: dict[UUID, list[ModelAlias]] = {model_id: [] for model_id in model_ids}
    for row in rows:
        found[row["model_id"]].append(ModelAlias(**dict(row)))
    return found


async def model_by_name(connection: Connection, project_id: UUID, name: str) -> Model | None:
    row = await connection.fetchrow(
        f"SELECT {_MODEL_COLUMNS} FROM models WHERE project_id = $1 AND name = $2",
        project_id,
        name,
    )
    return _model(row) if row is not None else None


async def list_models(
    connection: Connection, project_id: UUID, *, first: int | None, after: str | None
) -> Page[Model]:
    return await fetch_page(
        connection,
        query=f"SELECT {_MODEL_COLUMNS} FROM models",
        conditions=["project_id = $1"],
        arguments=[project_id],
        first=first,
        after=after,
        to_item=_model,
    )


async def list_model_versions(
    connection: Connection, model_id: UUID, *, first: int | None, after: str | None
) -> Page[ModelVersion]:
    return await fetch_page(
        connection,
        query=f"SELECT {_VERSION_COLUMNS} FROM model_versions",
        conditions=["model_id = $1"],
        arguments=[model_id],
        first=first,
        after=after,
        to_item=_version,
    )


async def get_model_version(connection: Connection, version_id: UUID) -> ModelVersion:
    found = (await model_versions_by_ids(connection, [version_id])).get(version_id)
    if found is None:
        raise NotFoundError("no such model version")
    return found


async def latest_model_version(connection: Connection, model_id: UUID) -> ModelVersion | None:
    """The model's version of the highest number."""
    row = await connection.fetchrow(
        f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE model_id = $1 "
        "ORDER BY number DESC LIMIT 1",
        model_id,
    )
    return _version(row) if row is not None else None


async def resolve_alias(connection: Connection, model_id: UUID, alias: str) -> ModelVersion | None:
    row = await connection.fetchrow(
        f"SELECT {', '.join('v.' + c.strip() for c in _VERSION_COLUMNS.split(','))} "
        "FROM model_aliases a JOIN model_versions v ON v.id = a.version_id "
        "WHERE a.model_id = $1 AND a.alias = $2",
        model_id,
        alias,
    )
    return _version(row) if row is not None else None


async def models_trained_on(connection: Connection, dataset_version_id: UUID) -> list[str]:
    """The model versions trained on a dataset version, as "model NAME version N", by name and
    number: what keeps the dataset version from being deleted (data's `delete_version` asks
    this through its `models_using`)."""
    rows = await connection.fetch(
        "SELECT m.name, v.number FROM model_versions v JOIN models m ON m.id = v.model_id "
        "WHERE v.dataset_version_id = $1 ORDER BY m.name, v.number",
        dataset_version_id,
    )
    return [f"model {row['name']} version {row['number']}" for row in rows]


# Registering --------------------------------------------------------------------------------


def check_model_name(name: str) -> None:
    if not MODEL_NAME.fullmatch(name):
        raise InputError(
            "a model name is 1 to 100 lowercase letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or digit",
            field_errors={"modelName": "invalid"},
        )


@dataclass(frozen=True, kw_only=True)
class NewModelVersion:
    project_id: UUID
    model_name: str
    job_id: UUID | None
    """None for an upload, which no job made."""
    dataset_version_id: UUID | None
    trainer: str
    format: str
    artifact_key: str
    size_bytes: int
    signature: Mapping[str, Any]
    metrics: Mapping[str, Any]
    hyperparameters: Mapping[str, Any]
    created_by: UUID | None


async def register_model_version(change: ChangeInProject, new: NewModelVersion) -> ModelVersion:
    """Record the version a job produced, or an uploaded one (`job_id` None), creating its model
    on first use, in a change that holds the project open: no version lands in an archived
    project. A job that registers again (its final step retried) gets the version it already
    has."""
    connection = change.connection
    if new.job_id is not None:
        existing = (await model_versions_by_jobs(connection, [new.job_id])).get(new.job_id)
        if existing is not None:
            return existing
    # Two jobs finishing at once for a new model name must not both create it.
    await connection.execute(
        "INSERT INTO models (project_id, name, created_by) VALUES ($1, $2, $3) "
        "ON CONFLICT (project_id, name) DO NOTHING",
        new.project_id,
        new.model_name,
        new.created_by,
    )
    model_id = await connection.fetchval(
        "SELECT id FROM models WHERE project_id = $1 AND name = $2 FOR UPDATE",
        new.project_id,
        new.model_name,
    )
    number = await connection.fetchval(
        "SELECT coalesce(max(number), 0) + 1 FROM model_versions WHERE model_id = $1", model_id
    )
    row = await connection.fetchrow(
        f"""
        INSERT INTO model_versions (model_id, project_id, number, job_id, dataset_version_id,
            trainer, format, artifact_key, size_bytes, signature, metrics, hyperparameters,
            created_by, source)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        RETURNING {_VERSION_COLUMNS}
        """,
        model_id,
        new.project_id,
        number,
        new.job_id,
        new.dataset_version_id,
        new.trainer,
        new.format,
        new.artifact_key,
        new.size_bytes,
        dict(new.signature),
        dict(new.metrics),
        dict(new.hyperparameters),
        new.created_by,
        "training" if new.job_id is not None else "upload",
    )
    version = _version(returned_row(row))
    await change.record(
        object_type="model_version",
        object_id=str(version.id),
        project_id=new.project_id,
        details={
            "model": new.model_name,
            "number": number,
            "job_id": _text_or_none(new.job_id),
            "dataset_version_id": _text_or_none(new.dataset_version_id),
            "format": new.format,
            "size_bytes": new.size_bytes,
        },
    )
    return version


def _text_or_none(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


# Promoting ---------------------------------------------------------------------------------


async def set_promotion_gates(
    platform: Platform,
    actor: Principal,
    model_id: UUID,
    gates: Any,
    *,
    request_id: str | None = None,
) -> Model:
    async with platform.metadata.acquire() as connection:
        model = (await models_by_ids(connection, [model_id])).get(model_id)
    if model is None:
        raise NotFoundError("no such model")
    async with ChangeInProject(
        platform, actor, "model.set_promotion_gates", request_id, project_id=model.project_id
    ) as change:
        vetted = vet_promotion_gates(platform, gates)
        row = await change.connection.fetchrow(
            f"UPDATE models SET promotion_gates = $2 WHERE id = $1 RETURNING {_MODEL_COLUMNS}",
            model_id,
            vetted,
        )
        await change.record(
            object_type="model",
            object_id=str(model_id),
            project_id=model.project_id,
            details={"gates": len(vetted)},
        )
    return _model(returned_row(row))


async def set_model_alias(
    platform: Platform,
    actor: Principal | None,
    version_id: UUID,
    alias: str,
    *,
    request_id: str | None = None,
    on_behalf_of: UUID | None = None,
) -> tuple[ModelAlias, ModelVersion]:
    """Point `alias` of the version's model at the version, once its gates pass. Without an
    actor (a sweep promoting its best trial as it ends) the move is the platform's, on behalf
    of `on_behalf_of`, who then shows as having moved it."""
    async with platform.metadata.acquire() as connection:
        version = await get_model_version(connection, version_id)
    async with ChangeInProject(
        platform, actor, "model.set_alias", request_id, project_id=version.project_id
    ) as change:
        if not ALIAS_NAME.fullmatch(alias):
            raise InputError(
                "an alias is 1 to 40 lowercase letters, digits or '-', starting with a letter",
                field_errors={"alias": "invalid"},
            )
        # Locked, so that gates changed meanwhile cannot let a failing version through.
        row = await change.connection.fetchrow(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE id = $1 FOR SHARE", version.model_id
        )
        model = _model(returned_row(row))
        results = await asyncio.to_thread(
            check_gates, platform, model.promotion_gates, version.metrics, alias
        )
        failed = [result for result in results if not result.passed]
        if failed:
            reasons = "; ".join(result.message for result in failed)
            raise ConflictError(
                f"promotion to {alias!r} blocked: {reasons}",
                details={"failedGates": [result.name for result in failed]},
            )
        previous = await change.connection.fetchval(
            "SELECT version_id FROM model_aliases WHERE model_id = $1 AND alias = $2",
            model.id,
            alias,
        )
        alias_row = await change.connection.fetchrow(
            f"""
            INSERT INTO model_aliases (model_id, alias, version_id, updated_by)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (model_id, alias) DO UPDATE
                SET version_id = excluded.version_id, updated_by = excluded.updated_by,
                    updated_at = clock_timestamp()
            RETURNING {_ALIAS_COLUMNS}
            """,
            model.id,
            alias,
            version.id,
            actor.user_id if actor is not None else on_behalf_of,
        )
        await change.record(
            object_type="model",
            object_id=str(model.id),
            project_id=model.project_id,
            details={
                "alias": alias,
                "version": version.number,
                "previous_version_id": str(previous) if previous else None,
                "gates_passed": [result.name for result in results],
            },
        )
    return ModelAlias(**dict(returned_row(alias_row))), version
