"""The `DateTime` scalar, parsed so that only instants PostgreSQL and Python can both hold get in.

Strawberry's own `DateTime` accepts any ISO 8601 text that `dateutil.parser.isoparse` reads, such as
`9999-12-31T23:59:59-23:59`: a valid local time whose instant lies past the year 9999 in UTC.
Python cannot convert it to UTC (`OverflowError`) and asyncpg cannot send it, so it used to fail
deep in a resolver. This scalar keeps the name, description and serialization of strawberry's
(the SDL does not change) and refuses such a value at the door.

A value without an offset is taken as UTC, so that every `DateTime` a resolver gets is aware
and compares with the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NewType, cast

import strawberry
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

from aiaas.core.errors import InputError
from graphql import GraphQLError

_ISOPARSE = cast(Callable[[str], object], DateTimeDefinition.parse_value)
"""Strawberry's parser, so that the same texts are read as before."""

NOT_ISO_8601 = "is not an ISO 8601 date and time, such as 2024-05-01T12:00:00Z"
OUT_OF_RANGE = "is outside the years 1 to 9999 in UTC"


def datetime_problem(text: str) -> str | None:
    """What is wrong with `text` as a `DateTime`, or None if nothing is."""
    try:
        parse_datetime(text)
    except ValueError as exc:
        return str(exc)
    return None


def parse_datetime(text: str) -> datetime:
    """The aware datetime `text` names; `ValueError` (saying why) unless its instant is in the
    years 1 to 9999 in UTC."""
    try:
        # It raises OverflowError for some texts it reads, such as 9999-12-31T24:00.
        value = _ISOPARSE(text)
    except (GraphQLError, ValueError, OverflowError):
        raise ValueError(NOT_ISO_8601) from None
    if not isinstance(value, datetime):
        raise ValueError(NOT_ISO_8601)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
    return value


def _parse_value(value: Any) -> datetime:
    # The input checks (`input_checks.py`) refuse a bad DateTime first, naming its field; this
    # is the last line for a path that did not go through them.
    if not isinstance(value, str):
        raise InputError(f"a DateTime is a string, not {type(value).__name__}")
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise InputError(f"the DateTime {exc}") from None


DATETIME: ScalarDefinition = dataclasses.replace(
    DateTimeDefinition, parse_value=_parse_value, implementation=None
)
"""Strawberry's `DateTime`, with a parser that checks the range: for `scalar_overrides`."""


def _output_only(value: object) -> object:
    raise InputError("a column is only ever answered, never taken as an argument")


StepColumn = NewType("StepColumn", list[int])
FloatColumn = NewType("FloatColumn", list[float | None])
"""Whole columns of numbers, each one leaf value (see `graphql/training/metric_columns.py`)."""

STEP_COLUMN: ScalarDefinition = strawberry.scalar(
    name="StepColumn",
    description="A JSON array of integer steps, ascending.",
    serialize=list,
    parse_value=_output_only,
)
FLOAT_COLUMN: ScalarDefinition = strawberry.scalar(
    name="FloatColumn",
    description="A JSON array of numbers, with null where a value was not finite.",
    serialize=list,
    parse_value=_output_only,
)

SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    datetime: DATETIME,
    StepColumn: STEP_COLUMN,
    FloatColumn: FLOAT_COLUMN,
}
