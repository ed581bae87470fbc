"""`POST /v1/projects/{project}/datasets/{dataset}/versions`: upload a dataset version.

The request body is the file itself (CSV, Parquet, or an archive of images: zip or tar, detected
from its bytes; docs/guides/images.md), streamed to disk as it arrives, never held in memory, and
refused with 413 as soon as it passes `upload_max_bytes`; while an ingest process is idle, it
is also parsed as it arrives (`datasets.arriving_uploads`). Query parameters may declare what
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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.core import global_ids
from aiaas.core.data import datasets
from aiaas.core.data.datasets.arriving_uploads import start_reading
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.errors import InputError
from aiaas.rest.uploads import ReceivedUpload, UploadRoute, receive_upload

UPLOAD = UploadRoute(resource="dataset", audit_action="dataset.upload", scratch_name="upload")


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
    return await receive_upload(
        request,
        UPLOAD,
        options=_read_options,
        check_name=datasets.check_dataset_name,
        name_parameter="dataset",
        store=lambda upload, options: _store_version(request, upload, options),
        start_reading=start_reading,
    )


async def _store_version(
    request: Request, upload: ReceivedUpload, options: ReadOptions
) -> Response:
    added = await datasets.upload_version(
        upload.platform,
        upload.principal,
        upload.project_id,
        dataset_name=request.path_params["dataset"],
        source=upload.file.path,
        content_sha256=upload.file.sha256,
        options=options,
        description=request.query_params.get("description", ""),
        request_id=upload.request_id,
        reading=upload.reading,
    )
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
