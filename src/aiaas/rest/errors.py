"""Expected failures as JSON error responses, with the status of each error class."""

from __future__ import annotations

from starlette.responses import JSONResponse

from aiaas.core.errors import AiaasError, InputError


def error_response(exc: AiaasError) -> JSONResponse:
    body: dict[str, object] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, InputError) and exc.field_errors:
        body["fieldErrors"] = exc.field_errors
    return JSONResponse({"error": body}, status_code=exc.http_status)
