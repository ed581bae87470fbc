"""What the user commands (`projects`, `datasets`, `train`, `jobs`, `models`, `deploy`,
`deployments`) share: the SDK client they run through, their exit codes, and their output (a rich
table, or JSON with `--json`).

Exit codes, the same for every user command:

- 0: done;
- 1: the server refused the operation or it failed (an unknown project, a name taken, a
  training job that FAILED or was CANCELLED);
- 2: a usage or input error found before anything was sent (a missing option, a bad
  `--param`, a file that is neither CSV nor Parquet);
- 3: the server cannot be reached or refused the credentials (a wrong URL or token, none set);
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import httpx
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aiaas.cli.common import fail
from aiaas.client import Client
from aiaas.client.errors import AiaasClientError, ServerConnectionError, UnsupportedFileError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class NotConnectedError(Exception):
    """No usable server URL or credentials: nothing was sent."""


def connect() -> Client:
    """The SDK client of AIAAS_URL and AIAAS_TOKEN, else of `aiaas login`'s credentials."""
    try:
        client = Client.from_env()
    except AiaasClientError as exc:
        raise NotConnectedError(str(exc)) from exc
    if urlsplit(client.url).scheme not in ("http", "https") or not urlsplit(client.url).netloc:
        client.close()
        raise NotConnectedError(f"{client.url!r} is not an http(s) URL of an aiaas server")
    return client


def user_command(command: F) -> F:
    """Each expected failure as one line on stderr and its exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except (NotConnectedError, ServerConnectionError) as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except httpx.HTTPError as exc:  # what `answered` does not name: a malformed URL...
            fail(f"cannot reach the aiaas server: {exc}", EXIT_UNREACHABLE)
        except UnsupportedFileError as exc:
            fail(str(exc), EXIT_USAGE)
        except AiaasClientError as exc:
            fail(str(exc), EXIT_REFUSED)

    return wrapper  # type: ignore[return-value]


project_option = click.option("-p", "--project", required=True, help="The project's slug.")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Machine output: JSON on stdout, for scripts."
)


def plain(value: Any) -> Any:
    """`value` as JSON can hold it: SDK objects without their client, generated models by
    their field names, enums by value, datetimes in ISO 8601."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump(exclude={"typename__"}))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: plain(getattr(value, item.name))
            for item in dataclasses.fields(value)
            if item.name not in ("client", "cursor")
        }
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, enum.Enum | datetime):
        return value.value if isinstance(value, enum.Enum) else value.isoformat()
    return value


def cell(value: Any) -> str:
    """One table cell: empty for nothing, compact JSON for structures."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def emit(
    data: Any, as_json: bool, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = ""
) -> None:
    """`data` as JSON with `--json`, else `rows` as a table under `columns`."""
    if as_json:
        click.echo(json.dumps(plain(data), indent=2))
        return
    table = Table(*columns, title=title or None, title_justify="left")
    for row in rows:
        table.add_row(*(Text(cell(value)) for value in row))  # text, never rich markup
    Console().print(table)


def emit_record(data: Any, as_json: bool, fields: Sequence[tuple[str, Any]], title: str) -> None:
    """One object: JSON with `--json`, else a two-column table of `fields`."""
    emit(data, as_json, ("field", "value"), fields, title)
