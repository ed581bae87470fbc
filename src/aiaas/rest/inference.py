"""The Open Inference Protocol (KServe V2) over REST, so that standard V2 clients work unchanged.

A V2 model is a deployment, named `<project slug>.<deployment name>` (neither holds a dot); its
versions are the model version numbers the deployment answers with. Routes:

- `GET /v2/health/live`, `GET /v2/health/ready`: public, for load balancers and probes;
- `GET /v2`: server metadata;
- `GET /v2/models/{name}[/versions/{version}]`: model metadata (`deployment:read`), with the
  deployment's `max_batch_size` beside the protocol's fields;
- `GET /v2/models/{name}[/versions/{version}]/config`: the deployment as Triton's model
  configuration (`max_batch_size`, inputs and outputs without the batch dimension), which
  tritonclient's `get_model_config` reads;
- `GET /v2/models/{name}[/versions/{version}]/ready`: 200 when serving, 400 when not (the
  protocol's 4xx for "false"); like everything but health, 401 without credentials;
- `POST /v2/models/{name}[/versions/{version}]/infer`: a prediction (`deployment:predict`).

A request may have more rows than `max_batch_size`, unlike Triton's: the batcher splits it into
batches and answers its rows in order. It may have at most the deployment's `maxQueueRows`
(`parameters.max_request_rows` of the config) and `inference_max_request_bytes`.

Every error, from any layer (authentication, routing, the route, an unexpected one), is
`{"error": message}` as the protocol has it, with our `code` (and `fieldErrors` for bad input)
beside it: 400 bad input, 401 no valid credentials, 403 denied, 404 unknown model or one the
caller may not see (or no such route), 405 a route's wrong method, 409 not ready, 413 too large,
500 a failed model or an unexpected error, 503 with Retry-After when the queue is full or a
service the server needs (PostgreSQL, Redis) is unavailable.
"""

from __future__ import annotations

from functools import partial
from importlib.metadata import version as package_version
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from aiaas.core.api_metrics import checked_readiness
from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import (
    AiaasError,
    AuthenticationError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from aiaas.core.identity.members import authorize_in_project
from aiaas.core.identity.projects import SLUG
from aiaas.core.outages import retry_after_headers
from aiaas.core.platform import Platform
from aiaas.core.serving import INFERENCE_SERVER, InferenceServer
from aiaas.core.serving.deployments import DEPLOYMENT_NAME, Deployment
from aiaas.core.signatures import ModelSignature
from aiaas.requests import error_body, request_id_of
from aiaas.rest.errors import EscapedJSONResponse
from aiaas.rest.inference_protocol import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    MAX_BYTE_COUNT_DIGITS,
    check_requested_outputs,
    encode_infer_response,
    model_config,
    model_metadata,
    parse_infer_request,
    server_metadata,
)

PUBLIC_PATHS = ("/v2/health/live", "/v2/health/ready")

PARSE_ON_LOOP_BYTES = 256 * 1024
"""Bodies up to this size are parsed on the event loop (well under a millisecond for typical
requests, less than a hand-off to a thread); larger ones in a thread."""


def _error(request: Request, exc: AiaasError) -> JSONResponse:
    """The protocol's error body. Escaped JSON: the message may quote a name the request sent,
    a lone surrogate included."""
    extra: dict[str, Any] = {}
    if isinstance(exc, InputError) and exc.field_errors:
        extra["fieldErrors"] = exc.field_errors
    return EscapedJSONResponse(
        error_body(request.scope, exc.code, exc.message, **extra),
        status_code=exc.http_status,
        headers=retry_after_headers(exc),
    )


def _declared_length(request: Request) -> int:
    """The body's length as the request declares it (0 when it does not, for a chunked body).
    ASCII digits, and few of them: str.isdigit() also takes "²", which int() refuses, and
    int() refuses 5,000 digits; either would be a 500 rather than this 400."""
    declared = request.headers.get("content-length") or "0"
    if not (declared.isascii() and declared.isdigit()) or len(declared) > MAX_BYTE_COUNT_DIGITS:
        raise InputError(
            "malformed Content-Length header", field_errors={"Content-Length": "malformed"}
        )
    return int(declared)


def _version_number(request: Request) -> int | None:
    text = request.path_params.get("version")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise NotFoundError(f"no version {text!r} of this model")
    return int(text)


async def _served_deployment(
    request: Request, action: str
) -> tuple[Platform, InferenceServer, Deployment]:
    """The deployment the path names, once the caller may `action` it. A caller who may not
    see the project is told the model does not exist, as anyone asking for a missing one is."""
    platform: Platform = request.app.state.platform
    server = platform.service(INFERENCE_SERVER)
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    name = request.path_params["name"]
    slug, dot, deployment_name = name.partition(".")
    # A name that no project and deployment can have is not looked up, and is never echoed
    # as it came: it may hold anything the path can carry, NUL included.
    well_formed = bool(dot and SLUG.fullmatch(slug) and DEPLOYMENT_NAME.fullmatch(deployment_name))
    if not well_formed:
        name = ascii(name[:200])
    deployment = await server.deployment_named(slug, deployment_name) if well_formed else None
    project_id: UUID | None = deployment.project_id if deployment else None
    try:
        await authorize_in_project(platform, principal, project_id, "deployment", action)
    except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
        if action == "predict":
            await record_outside_change(
                platform,
                actor=principal,
                action="v2.infer",
                outcome="failed" if deployment is None else "denied",
                request_id=request_id_of(request.scope),
                # Filed under the project, as GraphQL files refusals: its owners see
                # attempts on it (a caller told "not found" learns nothing from that).
                project_id=project_id,
                details={"model": name[:200], "code": exc.code},
            )
        if isinstance(exc, NotFoundError):
            raise NotFoundError(f"no model named {name!r}") from None
        raise
    assert deployment is not None
    return platform, server, deployment


async def infer(request: Request) -> Response:
    try:
        platform, server, deployment = await _served_deployment(request, "predict")
        version_number = _version_number(request)
        limit = platform.config.inference_max_request_bytes
        if _declared_length(request) > limit:
            return _too_large(request, limit)
        if request.headers.get("content-encoding", "identity") != "identity":
            raise InputError(
                "compressed request bodies are not accepted; send them uncompressed",
                field_errors={"Content-Encoding": "unsupported"},
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _too_large(request, limit)
        header_length = request.headers.get(INFERENCE_HEADER_CONTENT_LENGTH)
        if len(body) <= PARSE_ON_LOOP_BYTES:
            parsed = parse_infer_request(bytes(body), inference_header_content_length=header_length)
        else:
            parsed = await server.parse_large_body(
                partial(
                    parse_infer_request, bytes(body), inference_header_content_length=header_length
                )
            )
        target = await server.target(deployment)
        check_requested_outputs(parsed, target.signature)
        prediction = await server.predict(
            deployment.id, parsed.columns, protocol="v2", version_number=version_number
        )
    except AiaasError as exc:
        return _error(request, exc)
    content, headers = encode_infer_response(
        model_name=request.path_params["name"],
        model_version=str(prediction.version.number),
        request=parsed,
        outputs=prediction.outputs,
        signature=prediction.signature,
    )
    return Response(content, headers=headers)


def _too_large(request: Request, limit: int) -> JSONResponse:
    message = (
        f"the request body exceeds the limit of {limit} bytes (the server's "
        "inference_max_request_bytes); send the rows in several requests"
    )
    return JSONResponse(error_body(request.scope, "TOO_LARGE", message), status_code=413)


async def model_ready(request: Request) -> Response:
    try:
        _, server, deployment = await _served_deployment(request, "read")
        number = _version_number(request)
        ready = (await server.target(deployment)).ready(number)
    except AiaasError as exc:
        return _error(request, exc)
    return JSONResponse(
        {"name": request.path_params["name"], "ready": ready}, status_code=200 if ready else 400
    )


async def _described(request: Request) -> tuple[Deployment, list[str], ModelSignature]:
    """The deployment a metadata route names, the version numbers it answers with, and their
    signature; `NotFoundError` for a version it does not serve."""
    _, server, deployment = await _served_deployment(request, "read")
    target = await server.target(deployment)
    versions = target.answering()
    number = _version_number(request)
    if number is not None and number not in {version.number for version in versions}:
        raise NotFoundError(f"the model does not serve version {number}")
    return deployment, [str(version.number) for version in versions], target.signature


async def metadata(request: Request) -> Response:
    try:
        deployment, versions, signature = await _described(request)
    except AiaasError as exc:
        return _error(request, exc)
    return JSONResponse(
        model_metadata(
            request.path_params["name"],
            versions,
            f"aiaas-{deployment.runtime}",
            signature,
            max_batch_size=deployment.max_batch_size,
        )
    )


async def config(request: Request) -> Response:
    try:
        deployment, _, signature = await _described(request)
    except AiaasError as exc:
        return _error(request, exc)
    return JSONResponse(
        model_config(
            request.path_params["name"],
            f"aiaas-{deployment.runtime}",
            signature,
            max_batch_size=deployment.max_batch_size,
            max_wait_ms=deployment.max_wait_ms,
            max_request_rows=deployment.max_queue_rows,
        )
    )


async def server_info(request: Request) -> Response:
    return JSONResponse(server_metadata(package_version("aiaas")))


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    checks = await checked_readiness(platform)
    is_ready = all(result == "ok" for result in checks.values())
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


async def no_such_route(request: Request) -> Response:
    """Any other request under /v2: Starlette's own 404 and 405 are plain text, which V2 clients
    cannot read as an error."""
    allowed = sorted(
        {
            method
            for route in _PROTOCOL_ROUTES
            if route.matches(request.scope)[0] is Match.PARTIAL
            for method in route.methods or ()
        }
    )
    if allowed:
        message = f"this V2 route takes {', '.join(allowed)}, not {request.method}"
        body = error_body(request.scope, "METHOD_NOT_ALLOWED", message)
        return JSONResponse(body, status_code=405, headers={"Allow": ", ".join(allowed)})
    message = (
        "no such V2 route: the routes are /v2, /v2/health/live, /v2/health/ready and "
        "/v2/models/{name}[/versions/{version}][/ready|/config|/infer]"
    )
    return JSONResponse(error_body(request.scope, "NOT_FOUND", message), status_code=404)


_MODEL = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"

_PROTOCOL_ROUTES = [
    # First: the router tries the routes in order, and nearly every request is a prediction.
    Route(f"{_MODEL}/infer", infer, methods=["POST"]),
    Route(f"{_VERSION}/infer", infer, methods=["POST"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2", server_info, methods=["GET"]),
    Route(_MODEL, metadata, methods=["GET"]),
    Route(_VERSION, metadata, methods=["GET"]),
    Route(f"{_MODEL}/config", config, methods=["GET"]),
    Route(f"{_VERSION}/config", config, methods=["GET"]),
    Route(f"{_MODEL}/ready", model_ready, methods=["GET"]),
    Route(f"{_VERSION}/ready", model_ready, methods=["GET"]),
]

_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

ROUTES = [
    *_PROTOCOL_ROUTES,
    # Last, so that they answer only what no route above takes.
    Route("/v2", no_such_route, methods=_ANY_METHOD),
    Route("/v2/{path:path}", no_such_route, methods=_ANY_METHOD),
]
