"""What every REST route of a project's data checks first, and how it audits a refusal.

- `check_text`: the path segments and query options are text the database can store, before any
  of them is looked up;
- `record_refusal`: the audit row of a request refused, filed under the project when there is one.
"""

from __future__ import annotations

from uuid import UUID

from starlette.requests import Request

from aiaas.core.audit import record_outside_change
from aiaas.core.auth import Principal
from aiaas.core.errors import (
    AiaasError,
    AuthenticationError,
    ConcealedDenialError,
    InputError,
    PermissionDeniedError,
)
from aiaas.core.platform import Platform
from aiaas.core.storable_text import text_problem

_MESSAGE_CHARS = 300
"""The most of a refusal's message that its audit row keeps."""


def check_text(request: Request) -> None:
    """Every path segment and query option is text the database can store, before any of it
    is looked up or read: `InputError` naming the first that is not."""
    named = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in named:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise InputError(f"{name} {problem}", field_errors={name: problem})


async def record_refusal(
    platform: Platform,
    principal: Principal,
    exc: AiaasError,
    project_id: UUID | None,
    request_id: str,
    *,
    action: str,
) -> None:
    """A `denied` row when the caller may not do `action` here (told "not found" or not), a
    `failed` one for everything else; under the project, so that its owners see it."""
    denied = isinstance(exc, AuthenticationError | PermissionDeniedError | ConcealedDenialError)
    details = {"code": exc.code}
    # A refusal of bad text may name a query option as the caller spelt it: kept only while
    # it is text the trail can store, and short.
    if text_problem(exc.message) is None:
        details["message"] = exc.message[:_MESSAGE_CHARS]
    await record_outside_change(
        platform,
        actor=principal,
        action=action,
        outcome="denied" if denied else "failed",
        request_id=request_id,
        project_id=project_id,
        details=details,
    )
