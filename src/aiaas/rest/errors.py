"""Expected failures as JSON error responses, with the status of each error class."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from aiaas.core.errors import AiaasError, InputError
from aiaas.core.outages import retry_after_headers


class EscapedJSONResponse(JSONResponse):
    """JSON with every character beyond ASCII written as a `\\u` escape.

    An error names what the request sent (an input's name, a field), and JSON carries text that
    UTF-8 cannot: a lone surrogate such as `"\\ud800"` decodes to a Python string that Starlette's
    JSONResponse, which writes UTF-8, fails to encode, turning the answer to bad input into a
    500. Escaped, the same text travels as the client sent it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def error_response(exc: AiaasError) -> JSONResponse:
    body: dict[str, object] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, InputError) and exc.field_errors:
        body["fieldErrors"] = exc.field_errors
    return EscapedJSONResponse(
        {"error": body}, status_code=exc.http_status, headers=retry_after_headers(exc)
    )
