"""Expected failures as GraphQL types: members of each mutation's result union.

The Python classes end in `Result` (`NotFoundResult`) and keep the schema's names
(`NotFoundError`), so that a module can hold both one of them and the core exception it answers
for without an alias.

Authentication and authorization failures are not here: they are GraphQL errors with
`extensions.code` (`UNAUTHENTICATED`, `FORBIDDEN`), because they concern the request, not the
mutation's input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from aiaas.core import errors


@strawberry.interface(description="A failure the caller can act on.")
class Error:
    message: str
    code: str


@strawberry.type(description="One input field and what is wrong with it.")
class FieldError:
    field: str
    message: str


@strawberry.type(name="InvalidInputError", description="The input is invalid; nothing was changed.")
class InvalidInputResult(Error):
    field_errors: list[FieldError]

    @classmethod
    def from_exception(cls, exc: errors.InputError) -> InvalidInputResult:
        return cls(
            message=exc.message,
            code=exc.code,
            field_errors=[
                FieldError(field=name, message=problem)
                for name, problem in sorted(exc.field_errors.items())
            ],
        )


@strawberry.type(name="NotFoundError", description="No such object, or not one the caller may see.")
class NotFoundResult(Error):
    @classmethod
    def from_exception(cls, exc: errors.NotFoundError) -> NotFoundResult:
        return cls(message=exc.message, code=exc.code)


@strawberry.type(
    name="ConflictError", description="The current state of the object refuses this change."
)
class ConflictResult(Error):
    @classmethod
    def from_exception(cls, exc: errors.ConflictError) -> ConflictResult:
        return cls(message=exc.message, code=exc.code)


@strawberry.type(
    name="LoginFailedError",
    description="Wrong username or password; the same answer whatever was wrong.",
)
class LoginFailedResult(Error):
    @classmethod
    def from_exception(cls, exc: errors.AuthenticationError) -> LoginFailedResult:
        return cls(message=exc.message, code=exc.code)


@strawberry.type(
    name="RateLimitedError",
    description="Too many attempts; nothing was tried. Wait before trying again.",
)
class RateLimitedResult(Error):
    retry_after_seconds: int

    @classmethod
    def from_exception(cls, exc: errors.RateLimitedError) -> RateLimitedResult:
        return cls(message=exc.message, code=exc.code, retry_after_seconds=exc.retry_after_s)


ExpectedError = InvalidInputResult | NotFoundResult | ConflictResult


SuccessT = TypeVar("SuccessT")


async def expected(call: Callable[[], Awaitable[SuccessT]]) -> SuccessT | ExpectedError:
    """Run a service call; an expected failure becomes its union member."""
    try:
        return await call()
    except (errors.InputError, errors.NotFoundError, errors.ConflictError) as exc:
        return as_expected_error(exc)


def as_expected_error(exc: errors.AiaasError) -> ExpectedError:
    """The union member for an expected failure; anything else is re-raised."""
    if isinstance(exc, errors.InputError):
        return InvalidInputResult.from_exception(exc)
    if isinstance(exc, errors.NotFoundError):
        return NotFoundResult.from_exception(exc)
    if isinstance(exc, errors.ConflictError):
        return ConflictResult.from_exception(exc)
    raise exc
