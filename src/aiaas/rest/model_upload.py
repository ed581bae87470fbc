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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.core import global_ids
from aiaas.core.errors import InputError
from aiaas.core.signatures import ModelSignature
from aiaas.core.training.model_uploads import (
    ReferenceData,
    declared_signature,
    upload_model_version,
)
from aiaas.core.training.registry import ModelVersion, check_model_name
from aiaas.rest.uploads import ReceivedUpload, UploadRoute, receive_upload
from aiaas.rest.version_numbers import version_number

DEFAULT_FORMAT = "onnx"
UPLOAD = UploadRoute(resource="model", audit_action="model.upload", scratch_name="model")


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


UploadOptions = tuple[str, ModelSignature | None, ReferenceData | None]
"""The format, the declared signature and the reference data."""


def _options(request: Request) -> UploadOptions:
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
    return await receive_upload(
        request,
        UPLOAD,
        options=_options,
        check_name=check_model_name,
        name_parameter="model",
        store=lambda upload, options: _store_version(request, upload, options),
    )


async def _store_version(
    request: Request, upload: ReceivedUpload, options: UploadOptions
) -> Response:
    model_format, signature, reference = options
    version = await upload_model_version(
        upload.platform,
        upload.principal,
        upload.project_id,
        model_name=request.path_params["model"],
        model_format=model_format,
        source=upload.file.path,
        declared=signature,
        reference=reference,
        request_id=upload.request_id,
    )
    return JSONResponse({"version": model_version_json(version)}, status_code=201)


ROUTES = [Route("/v1/projects/{project}/models/{model}/versions", upload_model, methods=["POST"])]
