"""`POST /v1/projects/{project}/datasets/{dataset}/versions`: upload a dataset version.

The request body is the file itself (CSV or Parquet, detected from its bytes), streamed to disk
as it arrives, never held in memory, and refused with 413 as soon as it passes
`upload_max_bytes`. Query parameters may declare what detection would otherwise decide:
`format` (csv, parquet), `encoding`, `delimiter`, `header` (true, false), and a `description`
for a dataset this upload creates. Answers 201 with the new version, or 200 with the existing one
when the same content was uploaded before.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.core.data import datasets
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.data.uploads import save_stream, too_large
from aiaas.core.errors import AiaasError, InputError
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.platform import Platform
from aiaas.core.storable_text import text_problem
from aiaas.disconnects import unless_disconnected
from aiaas.requests import request_id_of
from aiaas.rest.errors import error_response


def _check_text(request: Request) -> None:
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
    if declared_format not in {None, "csv", "parquet"}:
        raise InputError("format must be csv or parquet", field_errors={"format": "csv|parquet"})
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
    return {
        "id": str(version.id),
        "dataset_id": str(version.dataset_id),
        "number": version.number,
        "content_sha256": version.content_sha256,
        "source_format": version.source_format,
        "row_count": version.row_count,
        "size_bytes": version.size_bytes,
        "columns": version.columns,
        "created_at": version.created_at.isoformat(),
    }


async def upload_version(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    principal = request.scope["state"]["principal"]
    limit = platform.config.upload_max_bytes
    try:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        _check_text(request)
        options = _read_options(request)
        async with platform.metadata.acquire() as connection:
            project = await project_by_slug(connection, request.path_params["project"])
        await authorize_in_project(
            platform, principal, project.id if project else None, "dataset", "upload"
        )
        assert project is not None
        with datasets.scratch(platform) as work:
            received = await save_stream(request.stream(), work / "upload", limit)
            added = await unless_disconnected(
                request.receive,
                datasets.upload_version(
                    platform,
                    principal,
                    project.id,
                    dataset_name=request.path_params["dataset"],
                    source=received.path,
                    content_sha256=received.sha256,
                    options=options,
                    description=request.query_params.get("description", ""),
                    request_id=request_id_of(request.scope),
                ),
            )
    except AiaasError as exc:
        if isinstance(exc, InputError) and exc.field_errors.get("file", "").startswith("larger"):
            return JSONResponse(
                {"error": {"code": "PAYLOAD_TOO_LARGE", "message": exc.message}}, status_code=413
            )
        return error_response(exc)
    return JSONResponse(
        {"version": version_json(added.version), "created": added.created},
        status_code=201 if added.created else 200,
    )


ROUTES = [
    Route(
        "/v1/projects/{project}/datasets/{dataset}/versions",
        upload_version,
        methods=["POST"],
    )
]
