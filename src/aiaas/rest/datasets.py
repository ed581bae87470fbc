"""`POST /v1/projects/{project}/datasets/{dataset}/versions`: upload a dataset version.

The request body is the file itself (CSV, Parquet, or an archive of images: zip or tar, detected
from its bytes; docs/guides/images.md), streamed to disk as it arrives, never held in memory, and
refused with 413 as soon as it passes `upload_max_bytes`. Query parameters may declare what
detection would otherwise decide: `format` (csv, parquet, images), `encoding`, `delimiter`,
`header` (true, false), and a `description` for a dataset this upload creates. Answers 201 with
the new version, or 200 with the existing one when the same content was uploaded before:
`{"version": {...}, "created": true}`, the version in GraphQL's names and ids (`version_json`).

Every refused upload is audited as `dataset.upload`: the domain's audited change records what it
refuses, and this route records what it refuses before handing over (bad options, a missing
grant, an unknown or archived project, a body over the limit), filed under the project when
there is one. A request without valid credentials never gets here (`RequirePrincipal`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.core import global_ids
from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.data.uploads import save_stream, too_large
from aiaas.core.errors import (
    AiaasError,
    AuthenticationError,
    ClientGoneError,
    ConcealedDenialError,
    InputError,
    PermissionDeniedError,
)
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.platform import Platform
from aiaas.core.storable_text import text_problem
from aiaas.disconnects import unless_disconnected
from aiaas.requests import request_id_of
from aiaas.rest.errors import error_response

_MESSAGE_CHARS = 300
"""The most of a refusal's message that its audit row keeps."""


def check_text(request: Request) -> None:
    """Every path segment and query option is text the database can store, before any of it
    is looked up or read: `InputError` naming the first that is not."""
    named = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in named:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise InputError(f"{name} {problem}", field_errors={name: problem})


def _read_options(request: Request) -> ReadOptions:
    query = request.query_params
    declared_format = query.get("format")
    if declared_format not in {None, "csv", "parquet", "images"}:
        raise InputError(
            "format must be csv, parquet or images", field_errors={"format": "csv|parquet|images"}
        )
    header = query.get("header")
    if header not in {None, "true", "false"}:
        raise InputError("header must be true or false", field_errors={"header": "true|false"})
    return ReadOptions(
        format=declared_format,  # type: ignore[arg-type]
        encoding=query.get("encoding"),
        delimiter=query.get("delimiter"),
        header=None if header is None else header == "true",
    )


def version_json(version: datasets.DatasetVersion) -> dict[str, Any]:
    """The version as GraphQL's `DatasetVersion` names it: camelCase, and global ids that
    `node(id:)` and every id argument take as they are. `uuid` is the raw UUID beside them, for
    whoever matches rows of their own against it; no argument takes it."""
    return {
        "id": global_ids.encode("DatasetVersion", version.id),
        "uuid": str(version.id),
        "datasetId": global_ids.encode("Dataset", version.dataset_id),
        "number": version.number,
        "contentSha256": version.content_sha256,
        "sourceFormat": version.source_format,
        "rowCount": version.row_count,
        "sizeBytes": version.size_bytes,
        "columns": version.columns,
        "createdAt": version.created_at.isoformat(),
    }


async def upload_version(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    principal: Principal = request.scope["state"]["principal"]
    limit = platform.config.upload_max_bytes
    request_id = request_id_of(request.scope)
    project_id: UUID | None = None
    handed_over = False
    try:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        check_text(request)
        options = _read_options(request)
        async with platform.metadata.acquire() as connection:
            project = await project_by_slug(connection, request.path_params["project"])
        project_id = project.id if project else None
        await authorize_in_project(platform, principal, project_id, "dataset", "upload")
        assert project_id is not None
        # Checked here as the domain checks it, but before the body is read, and so that a
        # bad name is audited as every other refusal of this route.
        datasets.check_dataset_name(request.path_params["dataset"])
        with datasets.scratch(platform) as work:
            received = await save_stream(request.stream(), work / "upload", limit)
            handed_over = True
            added = await unless_disconnected(
                request.receive,
                datasets.upload_version(
                    platform,
                    principal,
                    project_id,
                    dataset_name=request.path_params["dataset"],
                    source=received.path,
                    content_sha256=received.sha256,
                    options=options,
                    description=request.query_params.get("description", ""),
                    request_id=request_id,
                ),
            )
    except AiaasError as exc:
        # Once handed over, the domain's audited change has recorded the refusal; but a
        # cancelled change records nothing, so a client gone meanwhile is recorded here.
        if not handed_over or isinstance(exc, ClientGoneError):
            await record_refusal(
                platform, principal, exc, project_id, request_id, action="dataset.upload"
            )
        if isinstance(exc, InputError) and exc.field_errors.get("file", "").startswith("larger"):
            return JSONResponse(
                {"error": {"code": "PAYLOAD_TOO_LARGE", "message": exc.message}}, status_code=413
            )
        return error_response(exc)
    return JSONResponse(
        {"version": version_json(added.version), "created": added.created},
        status_code=201 if added.created else 200,
    )


async def record_refusal(
    platform: Platform,
    principal: Principal,
    exc: AiaasError,
    project_id: UUID | None,
    request_id: str,
    *,
    action: str,
) -> None:
    """A `denied` row when the caller may not do `action` here (told "not found" or not), a
    `failed` one for everything else; under the project, so that its owners see it."""
    denied = isinstance(exc, AuthenticationError | PermissionDeniedError | ConcealedDenialError)
    details = {"code": exc.code}
    # A refusal of bad text may name a query option as the caller spelt it: kept only while
    # it is text the trail can store, and short.
    if text_problem(exc.message) is None:
        details["message"] = exc.message[:_MESSAGE_CHARS]
    await record_outside_change(
        platform,
        actor=principal,
        action=action,
        outcome="denied" if denied else "failed",
        request_id=request_id,
        project_id=project_id,
        details=details,
    )


ROUTES = [
    Route(
        "/v1/projects/{project}/datasets/{dataset}/versions",
        upload_version,
        methods=["POST"],
    )
]
