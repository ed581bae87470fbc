"""HTTP to the API: GraphQL answers unpacked, and every way a request can fail to be answered
turned into one exception of `aiaas.client.errors` whose message names the URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from aiaas.client.errors import (
    AiaasClientError,
    ApiError,
    AuthenticationError,
    ConflictError,
    GraphQLRequestError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerConnectionError,
    ServerUnreachableError,
    UnavailableError,
)

DEFAULT_TIMEOUT_S = 30.0

_CODES: dict[str, type[ApiError]] = {
    "NOT_FOUND": NotFoundError,
    "FORBIDDEN": PermissionDeniedError,
    "PERMISSION_DENIED": PermissionDeniedError,
}


def base_url(url: str) -> str:
    return url.rstrip("/")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def answered(url: str) -> Iterator[None]:
    """Turn httpx's failures to reach `url` into one sentence each."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RequestTimeoutError(f"the aiaas server at {url} did not answer in time") from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise ServerUnreachableError(
            f"cannot reach the aiaas server at {url}: {_reason(exc)}"
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ServerUnreachableError(f"{url} is not an http:// or https:// URL") from exc
    except httpx.TransportError as exc:
        raise ServerConnectionError(
            f"the request to the aiaas server at {url} failed: {_reason(exc)}"
        ) from exc


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _message_of(body: Any) -> tuple[str, str, dict[str, str]]:
    """(message, code, field errors) of any of the API's error bodies: REST's
    `{"error": {"code", "message", "fieldErrors"}}`, V2's `{"error": msg, "code"}`."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            fields = error.get("fieldErrors") or {}
            return str(error.get("message", "")), str(error.get("code", "")), dict(fields)
        if isinstance(error, str):
            return error, str(body.get("code", "")), {}
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            code = str((first.get("extensions") or {}).get("code", ""))
            return str(first.get("message", "")), code, {}
    return "", "", {}


def check_response(url: str, response: httpx.Response) -> Any:
    """The JSON body of a successful answer; the exception for any other."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and body is not None:
        return body
    message, code, fields = _message_of(body)
    message = message or f"HTTP {response.status_code}"
    if response.status_code == 401 or code == "UNAUTHENTICATED":
        raise AuthenticationError(f"the aiaas server at {url} refused the token: {message}")
    if fields or response.status_code in (400, 413, 422):
        raise InvalidInputError(message, code, fields)
    if response.status_code == 404:
        raise NotFoundError(message, code)
    if response.status_code == 403:
        raise PermissionDeniedError(message, code)
    if response.status_code == 409:
        raise ConflictError(message, code)  # as GraphQL's ConflictError: e.g. an archived project
    if response.status_code == 503:  # a service the server needs is away: retry after a while
        raise UnavailableError(message, code)
    if response.status_code >= 500 and not code:
        raise ServerConnectionError(
            f"the aiaas server at {url} failed to answer (HTTP {response.status_code})"
        )
    raise ApiError(message, code)


def graphql_data(url: str, response: httpx.Response) -> dict[str, Any]:
    """The `data` of a GraphQL answer; raises for its `errors`, with whatever `data` came along
    attached to the exception (`ApiError.data`): a 503 or an error may follow root fields of a
    mutation that ran and committed, which the caller must not think undone."""
    try:
        body = check_response(url, response)
        errors = body.get("errors")
        if errors:
            message, code, _ = _message_of(body)
            if code == "UNAUTHENTICATED":
                raise AuthenticationError(f"the aiaas server at {url} refused the token: {message}")
            raise _CODES.get(code, GraphQLRequestError)(message, code)
    except ApiError as exc:
        exc.data = _partial_data(response)
        raise
    data = body.get("data")
    if not isinstance(data, dict):
        raise AiaasClientError(f"the aiaas server at {url} answered no data")
    return data


def _partial_data(response: httpx.Response) -> dict[str, Any] | None:
    """The root fields of a GraphQL answer that returned something, if any did."""
    try:
        body = response.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or all(value is None for value in data.values()):
        return None
    return data
