"""Logs: the context every line carries, the two `log_format`s, and their redaction.

`text` is a line for a person at a terminal; `json` is one flat JSON object a line, for
Elasticsearch or Loki: `timestamp` (ISO 8601, UTC), `level`, `logger`, `message`, `process`,
then whichever of `request_id`, `user`, `project`, `job_id`, `deployment_id` and `trace_id`
apply, and `exc_info`, the traceback as text. The context rides in a context variable, so it
follows a request or a job into the tasks and threads it starts, and needs no `extra=` at the
call sites: the request middleware, authentication, the project check, the worker's job runner
and the inference path bind it where they learn it. A task that outlives the request starting
it (a batcher, a listener) starts from `detached_context()` instead.

Both formats redact what they write, as defence in depth behind code that never logs secrets:
API and session tokens (`aiaas_<prefix>_<secret>` keeps its prefix), `Bearer` credentials, the
passwords in URLs, and the literal secret values of the configuration (master keys, the
passwords of its URLs, every `SecretStr` setting). uvicorn's access lines keep the names of
their query parameters and lose the values, whatever the format.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any
from urllib.parse import unquote

from pydantic import SecretStr

from aiaas.core.config import Config
from aiaas.core.logging_settings import LogFormat
from aiaas.core.setting_types import redact_url

# The context ---------------------------------------------------------------------------------

CONTEXT_FIELDS = ("request_id", "user", "project", "job_id", "deployment_id")

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "aiaas_log_context", default=MappingProxyType({})
)


def _merged(fields: Mapping[str, object]) -> Mapping[str, str]:
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not log context fields: {sorted(unknown)}")
    added = {name: str(value) for name, value in fields.items() if value is not None}
    return MappingProxyType({**_context.get(), **added})


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Within this block (and the tasks and threads it starts), log lines carry `fields`.
    What `bind_log_context` adds inside the block ends with it."""
    token = _context.set(_merged(fields))
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: object) -> None:
    """Add `fields` to the lines of the rest of the current context, up to the end of the
    enclosing `log_context`: for what is learnt midway (the user, once authenticated)."""
    _context.set(_merged(fields))


def current_log_context() -> Mapping[str, str]:
    return _context.get()


def detached_context() -> Context:
    """The current context without its log context: for a task that a request or job starts
    but that outlives it, working for all that come after (a batcher, a listener). Its lines
    must not name the request that happened to start it."""
    context = copy_context()
    context.run(_context.set, MappingProxyType({}))
    return context


@functools.cache
def _trace_api() -> Any:
    # OpenTelemetry is optional: its trace id is logged where it is installed and a span is
    # active. Looked up once; a failed import is not retried on every line.
    try:
        return importlib.import_module("opentelemetry.trace")
    except ImportError:
        return None


def current_trace_id() -> str | None:
    trace = _trace_api()
    if trace is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


# Redaction -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"\b(aiaas_[0-9a-f]{12})_[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!aiaas_[0-9a-f]{12}_\*\*\*)[^\s'\",;}\]]+")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_PARAMETER = re.compile(
    r"(?i)([?&](?:password|passwd|secret|token|access_token|api_key|key)=)[^&\s'\"]*"
)
MIN_SECRET_CHARS = 6
"""A configured secret shorter than this is not searched for: it would blank common words."""


def _url_password(url: str) -> str | None:
    userinfo = url.partition("://")[2].rpartition("@")[0]
    _, has_password, password = userinfo.partition(":")
    return password if has_password else None


def known_secrets(config: Config) -> tuple[str, ...]:
    """The configuration's secret values, longest first (so that a secret holding another is
    blanked whole): master keys, the passwords of its URLs, every `SecretStr` setting."""
    values: list[str] = [*config.previous_master_keys]
    if config.master_key:
        values.append(config.master_key)
    for url in (config.database_url, config.database_owner_url, config.redis_url):
        password = _url_password(url) if url else None
        if password:
            values += [password, unquote(password)]
    for _, value in config:
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    kept = {value for value in values if len(value) >= MIN_SECRET_CHARS}
    return tuple(sorted(kept, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without tokens, `Bearer` credentials, URL passwords and the `secrets` given."""
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _TOKEN.sub(r"\1_***", text)
    text = _BEARER.sub(r"\1***", text)
    text = _SECRET_PARAMETER.sub(r"\1***", text)
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


class AccessLogQueries(logging.Filter):
    """Blanks the query string's values in uvicorn's access lines, whatever their format: a
    client may put anything there (a token, a GraphQL document holding a password)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            if isinstance(path, str) and "?" in path:
                route, _, query = path.partition("?")
                blanked = "&".join(f"{pair.partition('=')[0]}=***" for pair in query.split("&"))
                record.args = (client, method, f"{route}?{blanked}", version, status)
        return True


# The formats ---------------------------------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RedactingTextFormatter(logging.Formatter):
    """The text format, as `logging.basicConfig` wrote it before `log_format` existed."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds")
    return moment.replace("+00:00", "Z")


_ACCESS_FIELDS = ("client", "http_method", "http_path", "http_version", "http_status")


class JsonFormatter(logging.Formatter):
    """One JSON object a line. The context is read as the line is formatted, which is in the
    task or thread that logged it: the handlers installed here write synchronously."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            **current_log_context(),
        }
        trace_id = current_trace_id()
        if trace_id is not None:
            entry["trace_id"] = trace_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access line, as fields a log store can count and filter by.
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=False))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for name, value in entry.items():
            if isinstance(value, str):
                entry[name] = redact(value, self.secrets)
        # ASCII only: a raw U+2028 in a message would split the line for some readers.
        return json.dumps(entry, default=str)


# Installing them -----------------------------------------------------------------------------

_OURS = "_aiaas_log_handler"


def log_formatter(config: Config) -> logging.Formatter:
    secrets = known_secrets(config)
    if config.log_format is LogFormat.JSON:
        return JsonFormatter(secrets)
    return RedactingTextFormatter(secrets)


def configure_logging(config: Config, stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's lines to `stream` (stderr) in `log_format`, from `log_level` up.
    The handler replaces the one an earlier call installed and leaves any other in place."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(log_formatter(config))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for earlier in [each for each in root.handlers if getattr(each, _OURS, False)]:
        root.removeHandler(earlier)
    root.addHandler(handler)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(each, AccessLogQueries) for each in access.filters):
        access.addFilter(AccessLogQueries())
    root.setLevel(config.log_level.upper())
    # Casbin logs its whole model at INFO each time an enforcer is built.
    logging.getLogger("casbin").setLevel(max(logging.WARNING, root.level))
    # absl, which flax imports (and Orbax logged through, about 25 lines a checkpoint), speaks
    # at INFO about its own workings: heard only when debugging is asked for.
    logging.getLogger("absl").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    )
    return handler
