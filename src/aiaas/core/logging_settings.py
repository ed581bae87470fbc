"""The log settings, a base of `Config` (docs/configuration.md; docs/guides/operations.md#logs).

They live apart from config.py to keep that module readable, and apart from log_records.py,
which needs `Config` itself; `Config` inherits them, so they are plain top-level keys.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LoggingSettings(BaseModel):
    """The log settings, a base of `Config` (docs/configuration.md)."""

    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="Log level.")
    log_format: LogFormat = Field(
        LogFormat.TEXT,
        description="`text`: a line for a terminal; `json`: one JSON object a line, for "
        "Elasticsearch or Loki, with the request, user, project, job and deployment it is about.",
    )
