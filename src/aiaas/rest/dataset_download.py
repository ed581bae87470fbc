"""`GET /v1/projects/{project}/datasets/{dataset}/versions/{number}/data`: a version as Parquet.

Why `.../versions/{number}/data` and not `.../versions/{number}`: the upload next to it
(`rest/datasets.py`) answers a version as JSON (`version_json`), so the version itself is that
JSON; its rows are a resource of their own, and a plain GET of the version is left free to
answer its JSON one day without content negotiation.

The body is the version's normalized Parquet file, unsealed from the vault a chunk at a time as
it is sent: memory holds one sealed chunk (`crypto.CHUNK_BYTES`), never the file. Headers:
`content-type: application/vnd.apache.parquet`, `content-length` (the file's size, which the
version records), `content-disposition` with a file name, and the version's `contentSha256` as
the `ETag` and in `x-aiaas-content-sha256`. That hash is the one GraphQL answers: of the bytes
uploaded (a CSV file, say) or of a transformation's Parquet, so it names the version, not
necessarily the bytes of this body; their integrity is the vault's (every chunk is
authenticated) and the length's. The first chunk is unsealed before the answer starts, so a
missing or damaged artifact is a JSON error; one damaged later cuts the body short of its length.

Permission: `dataset:read`, the grant that already lets a viewer read a version's rows (its
preview, its profile's values); downloading them all is the same disclosure, so it needs no new
grant, and an archived project's data stays downloadable. Every download is audited as
`dataset.download`, although it changes nothing: `success` (the version, its number and size)
once the artifact is open and before the first byte goes, so that no export goes unrecorded;
`denied` or `failed` for a refusal, as the upload records its own. A HEAD answers the headers
alone, reads nothing and is not audited.

Refusals: a version number that is not one is a 400; an unknown project (or one the caller is
no member of), dataset or number is a 404; so is a deleted version, whose data is on its way
out with garbage collection. A request without valid credentials never gets here
(`RequirePrincipal`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.errors import AiaasError, NotFoundError
from aiaas.core.governance.vault import VAULT, close_stream
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.platform import Platform
from aiaas.requests import request_id_of
from aiaas.rest.errors import error_response
from aiaas.rest.refusals import check_text, record_refusal
from aiaas.rest.version_numbers import version_number

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


async def _version_to_send(
    platform: Platform, principal: Principal, project_id: UUID | None, name: str, number: int
) -> datasets.DatasetVersion:
    """The live version asked for, once the caller may read it; the refusal otherwise."""
    await authorize_in_project(platform, principal, project_id, "dataset", "read")
    assert project_id is not None  # authorize_in_project refuses a missing project
    datasets.check_dataset_name(name)
    async with platform.metadata.acquire() as connection:
        dataset = await datasets.dataset_by_name(connection, project_id, name)
        version = (
            await datasets.version_by_number(connection, dataset.id, number) if dataset else None
        )
    if dataset is None:
        raise NotFoundError(f"no dataset {name!r} in this project")
    if version is None:
        raise NotFoundError(f"dataset {name!r} has no version {number}")
    if version.deleted_at is not None:
        raise NotFoundError(f"version {number} of dataset {name!r} is deleted")
    return version


def _headers(version: datasets.DatasetVersion, name: str) -> dict[str, str]:
    return {
        "content-length": str(version.size_bytes),
        "content-disposition": f'attachment; filename="{name}-v{version.number}.parquet"',
        "etag": f'"{version.content_sha256}"',
        "x-aiaas-content-sha256": version.content_sha256,
        # Rows of a project's data: no shared cache keeps a copy.
        "cache-control": "no-store",
    }


async def _body(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        # A client gone mid-way closes the vault's stream (and its file) now.
        await close_stream(rest)


async def download_version(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    principal: Principal = request.scope["state"]["principal"]
    request_id = request_id_of(request.scope)
    slug, name = request.path_params["project"], request.path_params["dataset"]
    project_id: UUID | None = None
    chunks: AsyncIterator[bytes] | None = None
    try:
        check_text(request)
        number = version_number(request.path_params["number"])
        async with platform.metadata.acquire() as connection:
            project = await project_by_slug(connection, slug)
        project_id = project.id if project else None
        version = await _version_to_send(platform, principal, project_id, name, number)
        headers = _headers(version, name)
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers, media_type=PARQUET_MEDIA_TYPE)
        chunks = platform.service(VAULT).open(version.project_id, version.artifact_key)
        first = await anext(chunks, b"")
        await record_outside_change(
            platform,
            actor=principal,
            action="dataset.download",
            outcome="success",
            request_id=request_id,
            object_type="dataset_version",
            object_id=str(version.id),
            project_id=version.project_id,
            details={"dataset": name, "number": number, "bytes": version.size_bytes},
        )
    except BaseException as exc:
        if chunks is not None:
            await close_stream(chunks)
        if not isinstance(exc, AiaasError):
            raise
        await record_refusal(
            platform, principal, exc, project_id, request_id, action="dataset.download"
        )
        return error_response(exc)
    return StreamingResponse(_body(first, chunks), headers=headers, media_type=PARQUET_MEDIA_TYPE)


ROUTES = [
    Route(
        "/v1/projects/{project}/datasets/{dataset}/versions/{number}/data",
        download_version,
        methods=["GET", "HEAD"],
    )
]
