"""The SDK's exceptions: one per error member of the API's result unions, and one sentence for
whatever keeps a request from being answered.

Every exception derives from `AiaasClientError`. Those of an answer carry its `code` and
`message`; `InvalidInputError` also its `field_errors` (field -> what is wrong with it).
An unreachable server, a refused token or a timeout raises a `ServerConnectionError` (a
builtin `ConnectionError`) whose message names the URL, never an httpx traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AiaasClientError",
    "ApiError",
    "AuthenticationError",
    "ConflictError",
    "GraphQLRequestError",
    "InvalidInputError",
    "JobFailedError",
    "LoginFailedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerConnectionError",
    "ServerUnreachableError",
    "UnavailableError",
    "UnsupportedFileError",
    "raise_for",
]


class AiaasClientError(Exception):
    """Anything the SDK raises on purpose."""


class ApiError(AiaasClientError):
    """The API answered with a failure the caller can act on."""

    data: dict[str, Any] | None = None
    """The `data` a GraphQL answer carried along with its error, if any: what the operation did
    before it failed (a mutation's root fields that ran and committed)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidInputError(ApiError, ValueError):
    """The input is invalid; nothing was changed. `field_errors` says what is wrong where."""

    def __init__(self, message: str, code: str = "", field_errors: dict[str, str] | None = None):
        super().__init__(message, code)
        self.field_errors: dict[str, str] = dict(field_errors or {})

    def __str__(self) -> str:
        if not self.field_errors:
            return self.message
        details = "; ".join(f"{field}: {problem}" for field, problem in self.field_errors.items())
        return f"{self.message} ({details})"


class NotFoundError(ApiError, LookupError):
    """There is no such object, or none the caller may see."""


class ConflictError(ApiError):
    """The change conflicts with the current state (a duplicate, an archived project...)."""


class LoginFailedError(ApiError):
    """Wrong username or password."""


class RateLimitedError(ApiError):
    """Too many attempts; retry after `retry_after_seconds`."""

    def __init__(self, message: str, code: str = "", retry_after_seconds: int = 0) -> None:
        super().__init__(message, code)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(ApiError):
    """The server cannot do it now (a deployment not ready, a full queue); retry later."""


class PermissionDeniedError(ApiError, PermissionError):
    """The caller's token is valid but does not grant this."""


class GraphQLRequestError(ApiError):
    """The API refused the request itself (an error in `errors`, not a union member)."""


class UnsupportedFileError(AiaasClientError, ValueError):
    """A file to upload that is neither CSV nor Parquet."""


class JobFailedError(AiaasClientError):
    """A job that was waited for ended FAILED or CANCELLED; `job` is its last state."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message)
        self.job = job


class ServerConnectionError(AiaasClientError, ConnectionError):
    """The request got no answer of the API: one sentence that names the URL."""


class ServerUnreachableError(ServerConnectionError):
    """Nothing answers at the URL."""


class RequestTimeoutError(ServerConnectionError, TimeoutError):
    """The server did not answer in time."""


class AuthenticationError(ServerConnectionError):
    """The server refused the token (missing, unknown, revoked or expired)."""


_UNION_MEMBERS: dict[str, type[ApiError]] = {
    "InvalidInputError": InvalidInputError,
    "NotFoundError": NotFoundError,
    "ConflictError": ConflictError,
    "LoginFailedError": LoginFailedError,
    "RateLimitedError": RateLimitedError,
    "UnavailableError": UnavailableError,
}


def error_for(member: Any) -> ApiError:
    """The exception for an error member of a result union (a generated model)."""
    name = member.typename__
    message, code = member.message, member.code
    if name == "InvalidInputError":
        fields = {error.field: error.message for error in member.field_errors}
        return InvalidInputError(message, code, fields)
    if name == "RateLimitedError":
        return RateLimitedError(message, code, member.retry_after_seconds)
    return _UNION_MEMBERS.get(name, ApiError)(message, code)


def raise_for(result: Any) -> Any:
    """`result` if it is the success member of a result union; its exception otherwise."""
    if getattr(result, "typename__", "").endswith("Error"):
        raise error_for(result)
    return result
