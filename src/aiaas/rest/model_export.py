"""`GET /v1/projects/{project}/models/{model}/versions/{number}/export`: a model version to take
away, as its native bundle with a manifest or as an ONNX graph.

`?format=bundle`, the default because it works for every version, answers a ZIP archive
(`application/zip`, `{model}-v{number}.zip`) of two members:

- `manifest.json`: what the registry knows of the version, in the camelCase of the GraphQL API:
  `manifestVersion` (1), `project` (its slug), `model`, `version` (its number), `id` (the
  version's global id) and `uuid`, `format` (the bundle's, such as `flax-nnx` or `onnx`),
  `trainer`, `signature`, `metrics`, `hyperparameters`, `lineage` (`jobId`, the training job's
  global id, and `datasetVersionId`, the dataset version's: both null for an uploaded version),
  `createdAt`, and `bundle`: the member's `path`, `sha256` and `sizeBytes`.
- `bundle.bin`: the version's bundle, unsealed from the vault: byte for byte what a serving
  runtime of its format loads. Stored uncompressed (weights barely compress); the manifest is
  deflated.

Every member is dated with the version's creation, so one version exports to the same bytes
every time.

`?format=onnx` answers the bare ONNX graph (`application/octet-stream`,
`{model}-v{number}.onnx`), as the serving runtime that serves the version's format converts it
(`ServingRuntime.onnx_graph`; the runtime is picked by format as a deployment picks it). A format
whose runtime cannot convert its models (the built-in `flax-nnx`) is a 400 that says to ask for
`format=bundle`.

Memory: unlike the dataset download, the export is built whole before it is sent (the bundle,
and the archive holding it: about twice the bundle's size). Serving runtimes load whole bundles
anyway, a model is far smaller than a dataset, and the archive needs the bundle's hash in its
manifest; in exchange every answer carries its exact `content-length`, and the sha256 of the
body as its `ETag` and in `x-aiaas-content-sha256`. `cache-control: no-store`: a model is a
project's asset. A HEAD builds the same export to answer the same status and headers (a
conversion that cannot happen is its 400 too) without the body, and is not audited.

Permission: `model:read`, the grant that lets a viewer read everything the manifest holds and
list the versions; a viewer may also call any deployment of the version (`deployment:predict`).
The weights are the model itself, but the issue asks for exports governed by the existing
grants, and a viewer is a member the project trusts with its models; a grant of its own
(`model:export`) would be the place to split it should operators need to. An archived project's
versions stay exportable. Every export is audited as `model.export`, although it changes
nothing: `success` (the version, its number, the format and the bytes sent) once the artifact
has been read and before the first byte goes, so that no export goes unrecorded; `denied` or
`failed` for a refusal, as the dataset download records its own.

Refusals: a version number that is not one, or a format that is neither `bundle` nor `onnx`, is
a 400; an unknown project (or one the caller is no member of), model or number is a 404. A
stored bundle that its runtime fails to convert is an `ARTIFACT_ERROR` whose details are in the
server log. A request without valid credentials never gets here (`RequirePrincipal`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.core import global_ids
from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import AiaasError, ArtifactError, InputError, NotFoundError
from aiaas.core.governance.vault import VAULT, close_stream
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.platform import Platform
from aiaas.core.serving.deployments import runtime_for_format
from aiaas.core.training import registry as models
from aiaas.requests import request_id_of
from aiaas.rest.errors import error_response
from aiaas.rest.refusals import check_text, record_refusal
from aiaas.rest.version_numbers import version_number

logger = logging.getLogger(__name__)

BUNDLE = "bundle"
ONNX = "onnx"
EXPORT_FORMATS = (BUNDLE, ONNX)
DEFAULT_FORMAT = BUNDLE
"""The native bundle: every version has one, whatever runtime serves it."""
ZIP_MEDIA_TYPE = "application/zip"
ONNX_MEDIA_TYPE = "application/octet-stream"
"""ONNX has no registered media type; the file name says what it is."""
MANIFEST_MEMBER = "manifest.json"
BUNDLE_MEMBER = "bundle.bin"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Export:
    body: bytes
    media_type: str
    file_name: str


def _export_format(request: Request) -> str:
    asked = request.query_params.getlist("format")
    if not asked:
        return DEFAULT_FORMAT
    if len(asked) > 1 or asked[0] not in EXPORT_FORMATS:
        raise InputError(
            "format must be bundle or onnx", field_errors={"format": " or ".join(EXPORT_FORMATS)}
        )
    return asked[0]


async def _version_to_export(
    platform: Platform, principal: Principal, project_id: UUID | None, name: str, number: int
) -> models.ModelVersion:
    """The version asked for, once the caller may read it; the refusal otherwise."""
    await authorize_in_project(platform, principal, project_id, "model", "read")
    assert project_id is not None  # authorize_in_project refuses a missing project
    models.check_model_name(name)
    async with platform.metadata.acquire() as connection:
        model = await models.model_by_name(connection, project_id, name)
        version_id: UUID | None = (
            await connection.fetchval(
                "SELECT id FROM model_versions WHERE model_id = $1 AND number = $2",
                model.id,
                number,
            )
            if model
            else None
        )
        found = await models.model_versions_by_ids(connection, [version_id] if version_id else [])
    if model is None:
        raise NotFoundError(f"no model {name!r} in this project")
    if version_id is None or version_id not in found:
        raise NotFoundError(f"model {name!r} has no version {number}")
    return found[version_id]


async def _unsealed_bundle(platform: Platform, version: models.ModelVersion) -> bytes:
    """The version's bundle, whole, as the model cache reads it to load a model."""
    chunks = platform.service(VAULT).open(version.project_id, version.artifact_key)
    try:
        return b"".join([chunk async for chunk in chunks])
    finally:
        await close_stream(chunks)


def _global_id(type_name: str, object_id: UUID | None) -> str | None:
    return None if object_id is None else global_ids.encode(type_name, object_id)


def manifest_of(slug: str, name: str, version: models.ModelVersion, bundle: bytes) -> bytes:
    """`manifest.json` of the archive: the version as the registry holds it, and the hash and
    size of the bundle member."""
    manifest: dict[str, Any] = {
        "manifestVersion": MANIFEST_VERSION,
        "project": slug,
        "model": name,
        "version": version.number,
        "id": global_ids.encode("ModelVersion", version.id),
        "uuid": str(version.id),
        "format": version.format,
        "trainer": version.trainer,
        "signature": version.signature,
        "metrics": version.metrics,
        "hyperparameters": version.hyperparameters,
        "lineage": {
            "source": version.source.upper(),  # TRAINING or UPLOAD, as GraphQL names it
            # Null for a version uploaded rather than trained (an upload's reference data, if
            # it named some, is its dataset version).
            "jobId": _global_id("TrainingJob", version.job_id),
            "datasetVersionId": _global_id("DatasetVersion", version.dataset_version_id),
        },
        "createdAt": version.created_at.isoformat(),
        "bundle": {
            "path": BUNDLE_MEMBER,
            "sha256": hashlib.sha256(bundle).hexdigest(),
            "sizeBytes": len(bundle),
        },
    }
    return json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"


def bundle_archive(manifest: bytes, bundle: bytes, version: models.ModelVersion) -> bytes:
    """The ZIP archive of `manifest` and `bundle`, dated with the version's creation so that
    a version always exports to the same bytes."""
    stamp = version.created_at.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, content, compression in (
            (MANIFEST_MEMBER, manifest, zipfile.ZIP_DEFLATED),
            (BUNDLE_MEMBER, bundle, zipfile.ZIP_STORED),
        ):
            info = zipfile.ZipInfo(member, date_time=stamp)
            info.compress_type = compression
            info.external_attr = 0o644 << 16  # a plain file, readable by all, when unzipped
            archive.writestr(info, content)
    return buffer.getvalue()


async def _onnx_graph(platform: Platform, version: models.ModelVersion, bundle: bytes) -> bytes:
    """The version as an ONNX graph, converted by the runtime that serves its format."""
    try:
        runtime_name = runtime_for_format(platform, version.format)
    except InputError:
        raise InputError(
            f"no installed serving runtime loads {version.format!r} models, so none converts "
            "this version to ONNX; ask for format=bundle",
            field_errors={"format": f"{version.format} models cannot be converted"},
        ) from None
    runtime = platform.serving_runtime(runtime_name)
    try:
        graph = await asyncio.to_thread(runtime.onnx_graph, bundle)
    except Exception as error:
        logger.exception("could not convert model version %s to ONNX", version.id)
        # The detail (a runtime's internals) is for the log, not for callers.
        raise ArtifactError(
            f"the model version could not be converted to ONNX ({type(error).__name__}); the "
            "server log has the details"
        ) from error
    if graph is None:
        raise InputError(
            f"{version.format!r} models cannot be converted to ONNX; ask for format=bundle to "
            "download the native bundle with its manifest",
            field_errors={"format": f"{version.format} models cannot be converted"},
        )
    return graph


async def build_export(
    platform: Platform, slug: str, name: str, version: models.ModelVersion, export_format: str
) -> Export:
    """The body of the export, whole, with its media type and file name."""
    bundle = await _unsealed_bundle(platform, version)
    if export_format == ONNX:
        graph = await _onnx_graph(platform, version, bundle)
        return Export(graph, ONNX_MEDIA_TYPE, f"{name}-v{version.number}.onnx")
    manifest = manifest_of(slug, name, version, bundle)
    archive = bundle_archive(manifest, bundle, version)
    return Export(archive, ZIP_MEDIA_TYPE, f"{name}-v{version.number}.zip")


def _headers(export: Export) -> dict[str, str]:
    digest = hashlib.sha256(export.body).hexdigest()
    return {
        "content-length": str(len(export.body)),
        # Model names are [a-z0-9._-]: nothing in the file name needs quoting.
        "content-disposition": f'attachment; filename="{export.file_name}"',
        "etag": f'"{digest}"',
        "x-aiaas-content-sha256": digest,
        # A project's model: no shared cache keeps a copy.
        "cache-control": "no-store",
    }


async def export_version(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    principal: Principal = request.scope["state"]["principal"]
    request_id = request_id_of(request.scope)
    slug, name = request.path_params["project"], request.path_params["model"]
    project_id: UUID | None = None
    try:
        check_text(request)
        number = version_number(request.path_params["number"])
        export_format = _export_format(request)
        async with platform.metadata.acquire() as connection:
            project = await project_by_slug(connection, slug)
        project_id = project.id if project else None
        version = await _version_to_export(platform, principal, project_id, name, number)
        export = await build_export(platform, slug, name, version, export_format)
        headers = _headers(export)
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers, media_type=export.media_type)
        await record_outside_change(
            platform,
            actor=principal,
            action="model.export",
            outcome="success",
            request_id=request_id,
            object_type="model_version",
            object_id=str(version.id),
            project_id=version.project_id,
            details={
                "model": name,
                "number": number,
                "format": export_format,
                "bytes": len(export.body),
            },
        )
    except AiaasError as exc:
        await record_refusal(
            platform, principal, exc, project_id, request_id, action="model.export"
        )
        return error_response(exc)
    return Response(export.body, headers=headers, media_type=export.media_type)


ROUTES = [
    Route(
        "/v1/projects/{project}/models/{model}/versions/{number}/export",
        export_version,
        methods=["GET", "HEAD"],
    )
]
