"""`POST /v1/projects/{project}/models/{model}/versions`: upload a model file as a new version.

The request body is the model file itself (an ONNX graph), streamed to disk as it arrives and
refused with 413 as soon as it passes `upload_max_bytes`, as a dataset upload is. Query
parameters:
- `format`: the model's format, `onnx` (the default); a serving runtime that takes uploads of
  it must be installed (the `trees` extra's ONNX runtime);
- `signature`: the model's signature as JSON (`{"inputs": [{"name", "dtype", "shape"}], ...}`),
  which must match the graph; without it, it is read from the graph;
- `dataset` and `datasetVersion`: a dataset version of the project as the version's reference
  data, which drift is measured against (both or neither).

Answers 201 with `{"version": {...}}`, the version in GraphQL's names and ids. Why REST and not
a GraphQL mutation: a model file is binary and may be large, and GraphQL's multipart uploads
would put the file through the GraphQL body limit and a request format that browsers may send
across sites without a preflight; the dataset uploads are REST for the same reasons.

Permission: `model:upload` (developers). Every upload is audited as `model.upload`: the domain's
audited change records what it decides, this route what it refuses before handing over. A
request without valid credentials never gets here (`RequirePrincipal`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.core import global_ids
from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.data.uploads import save_stream, too_large
from aiaas.core.errors import AiaasError, ClientGoneError, InputError
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.platform import Platform
from aiaas.core.signatures import ModelSignature
from aiaas.core.training.model_uploads import (
    ReferenceData,
    declared_signature,
    upload_model_version,
)
from aiaas.core.training.registry import ModelVersion, check_model_name
from aiaas.disconnects import unless_disconnected
from aiaas.requests import request_id_of
from aiaas.rest.datasets import check_text, record_refusal
from aiaas.rest.errors import error_response
from aiaas.rest.version_numbers import version_number

DEFAULT_FORMAT = "onnx"
_ACTION = "model.upload"


def model_version_json(version: ModelVersion) -> dict[str, Any]:
    """The version as GraphQL's `ModelVersion` names it, with its global ids; `uuid` is the
    raw UUID beside them."""
    return {
        "id": global_ids.encode("ModelVersion", version.id),
        "uuid": str(version.id),
        "modelId": global_ids.encode("Model", version.model_id),
        "number": version.number,
        "source": version.source.upper(),
        "trainer": version.trainer,
        "format": version.format,
        "sizeBytes": version.size_bytes,
        "signature": version.signature,
        "datasetVersionId": (
            global_ids.encode("DatasetVersion", version.dataset_version_id)
            if version.dataset_version_id is not None
            else None
        ),
        "createdAt": version.created_at.isoformat(),
    }


def _options(request: Request) -> tuple[str, ModelSignature | None, ReferenceData | None]:
    query = request.query_params
    for name in query:
        if name not in {"format", "signature", "dataset", "datasetVersion"}:
            raise InputError(f"unknown query parameter {name!r}", field_errors={name: "unknown"})
    model_format = query.get("format", DEFAULT_FORMAT)
    signature = query.get("signature")
    dataset, number = query.get("dataset"), query.get("datasetVersion")
    if (dataset is None) != (number is None):
        raise InputError(
            "dataset and datasetVersion name the reference data together",
            field_errors={"dataset" if dataset is None else "datasetVersion": "missing"},
        )
    reference = (
        ReferenceData(dataset=dataset, number=version_number(number, "datasetVersion"))
        if dataset is not None and number is not None
        else None
    )
    return model_format, declared_signature(signature) if signature else None, reference


async def upload_model(request: Request) -> Response:
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
        model_format, signature, reference = _options(request)
        async with platform.metadata.acquire() as connection:
            project = await project_by_slug(connection, request.path_params["project"])
        project_id = project.id if project else None
        await authorize_in_project(platform, principal, project_id, "model", "upload")
        assert project_id is not None
        # Checked as the domain checks it, but before the body is read.
        check_model_name(request.path_params["model"])
        with datasets.scratch(platform) as work:
            received = await save_stream(request.stream(), work / "model", limit)
            handed_over = True
            version = await unless_disconnected(
                request.receive,
                upload_model_version(
                    platform,
                    principal,
                    project_id,
                    model_name=request.path_params["model"],
                    model_format=model_format,
                    source=received.path,
                    declared=signature,
                    reference=reference,
                    request_id=request_id,
                ),
            )
    except AiaasError as exc:
        # Once handed over, the domain's audited change has recorded the refusal; a cancelled
        # change records nothing, so a client gone meanwhile is recorded here.
        if not handed_over or isinstance(exc, ClientGoneError):
            await record_refusal(platform, principal, exc, project_id, request_id, action=_ACTION)
        if isinstance(exc, InputError) and exc.field_errors.get("file", "").startswith("larger"):
            return JSONResponse(
                {"error": {"code": "PAYLOAD_TOO_LARGE", "message": exc.message}}, status_code=413
            )
        return error_response(exc)
    return JSONResponse({"version": model_version_json(version)}, status_code=201)


ROUTES = [Route("/v1/projects/{project}/models/{model}/versions", upload_model, methods=["POST"])]
