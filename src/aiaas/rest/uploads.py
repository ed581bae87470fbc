"""The flow every REST upload of a file into a project shares (datasets, models).

In order, each step refusing with a typed error before the next runs, and before a byte of the
body is read unless the caller may upload here:
1. a declared `Content-Length` over `upload_max_bytes` (413);
2. path segments and query options that are not storable text, then the route's own options;
3. the project, and the caller's grant in it (an unknown project and a missing grant look alike
   to a caller who may not see the project);
4. the route's own name check (the dataset's, the model's);
5. the body, streamed to a scratch file and cut off (413) as soon as it passes the limit;
   a route that can (`start_reading`) reads the file meanwhile, while it arrives, and the
   reading is stopped, nothing of it kept, if the body never completes;
6. the domain call, cancelled if the client goes away.

A refusal before the hand-over (step 6) is audited here under `audit_action`; after it, the
domain's audited change has recorded it, except when the client went away (a cancelled change
records nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aiaas.core.auth import Principal
from aiaas.core.data import datasets
from aiaas.core.data.datasets.arriving_uploads import stop_reading
from aiaas.core.data.tabular.arriving import mark_complete
from aiaas.core.data.tabular.normalized import NormalizedTable
from aiaas.core.data.uploads import ReceivedFile, save_stream, too_large
from aiaas.core.errors import AiaasError, ClientGoneError, InputError
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import project_by_slug
from aiaas.core.platform import Platform
from aiaas.disconnects import unless_disconnected
from aiaas.requests import request_id_of
from aiaas.rest.errors import error_response
from aiaas.rest.refusals import check_text, record_refusal

Options = TypeVar("Options")
Reading = asyncio.Task[NormalizedTable]


@dataclass(frozen=True)
class UploadRoute:
    """What tells one upload route from another."""

    resource: str
    """The grant needed is `<resource>:upload` in the project."""
    audit_action: str
    scratch_name: str
    """The received file's name in its scratch folder."""


@dataclass(frozen=True)
class ReceivedUpload:
    """An upload accepted so far: who sent it, where to, and the file, ready for the domain."""

    platform: Platform
    principal: Principal
    project_id: UUID
    request_id: str
    file: ReceivedFile
    reading: Reading | None = None
    """The file's reading, started while it arrived, when the route started one."""


def _too_large_response(exc: AiaasError) -> Response | None:
    if isinstance(exc, InputError) and exc.field_errors.get("file", "").startswith("larger"):
        return JSONResponse(
            {"error": {"code": "PAYLOAD_TOO_LARGE", "message": exc.message}}, status_code=413
        )
    return None


async def receive_upload(
    request: Request,
    route: UploadRoute,
    *,
    options: Callable[[Request], Options],
    check_name: Callable[[str], object],
    name_parameter: str,
    store: Callable[[ReceivedUpload, Options], Coroutine[Any, Any, Response]],
    start_reading: Callable[[Platform, UUID, Path, Options], Reading | None] | None = None,
) -> Response:
    """Run the shared flow, handing the received file and the route's `options` to `store`,
    whose answer is the route's; `start_reading` starts reading the file as it arrives."""
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
        chosen = options(request)
        async with platform.metadata.acquire() as connection:
            project = await project_by_slug(connection, request.path_params["project"])
        project_id = project.id if project else None
        await authorize_in_project(platform, principal, project_id, route.resource, "upload")
        assert project_id is not None
        # Checked as the domain checks it, but before the body is read, and so that a bad
        # name is audited as every other refusal of the route.
        check_name(request.path_params[name_parameter])
        with datasets.scratch(platform) as work:
            destination = work / route.scratch_name
            reading = None
            if start_reading is not None:
                await asyncio.to_thread(destination.touch)  # the reader opens it at once
                reading = start_reading(platform, project_id, destination, chosen)
            try:
                received = await save_stream(request.stream(), destination, limit)
                if reading is not None:
                    await asyncio.to_thread(mark_complete, destination)
                handed_over = True
                upload = ReceivedUpload(
                    platform, principal, project_id, request_id, received, reading
                )
                return await unless_disconnected(request.receive, store(upload, chosen))
            finally:
                if reading is not None:
                    await stop_reading(reading)
    except AiaasError as exc:
        if not handed_over or isinstance(exc, ClientGoneError):
            await record_refusal(
                platform, principal, exc, project_id, request_id, action=route.audit_action
            )
        return _too_large_response(exc) or error_response(exc)
