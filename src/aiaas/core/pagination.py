"""Keyset pagination over `(created_at, id)`, with opaque cursors.

Offsets drift when rows are inserted while a client pages; a keyset cursor always resumes right
after the last row the client saw, and costs one index range scan however deep the page is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from aiaas.core.errors import InputError
from aiaas.core.storage import Connection

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_CURSOR_LENGTH = 256
"""Longer than any cursor `Cursor.encode` makes; a longer one is refused before decoding."""
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_BIGINT_TEXT = re.compile(r"-?[0-9]{1,19}")

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class Cursor:
    """A position in a listing: the sort key of the last row seen. The second part is the row's
    id, which breaks ties between rows of the same time; it is a UUID or an integer."""

    at: datetime
    id: UUID | int

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), str(self.id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, id_type: type[UUID] | type[int] = UUID) -> Cursor:
        """The cursor `value` encodes; `InputError` naming `after` unless it decodes to values
        that a query can use: an aware time whose instant is in the years 1 to 9999 in UTC, and
        an id of `id_type` (an integer in PostgreSQL's bigint)."""
        try:
            if len(value) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            padded = value + "=" * (-len(value) % 4)
            decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            if not (
                isinstance(decoded, list)
                and len(decoded) == 2
                and all(isinstance(part, str) for part in decoded)
            ):
                raise ValueError("not a pair of strings")
            at = datetime.fromisoformat(decoded[0])
            if at.tzinfo is None:
                raise ValueError("no time zone")
            # Raises OverflowError for an instant outside the years 1 to 9999 in UTC, which
            # asyncpg could not send.
            at.astimezone(UTC)
            return cls(at=at, id=_decode_id(decoded[1], id_type))
        except (ValueError, TypeError, OverflowError, UnicodeError, binascii.Error):
            raise InputError("malformed cursor", field_errors={"after": "malformed"}) from None


def _decode_id(text: str, id_type: type[UUID] | type[int]) -> UUID | int:
    if id_type is UUID:
        return UUID(text)
    # int() would also read " 1_000 " and thousands of digits; a bigint is at most 19.
    if _BIGINT_TEXT.fullmatch(text) is None:
        raise ValueError("not an integer")
    number = int(text)
    if not BIGINT_MIN <= number <= BIGINT_MAX:
        raise ValueError("outside bigint")
    return number


@dataclass(frozen=True)
class Order:
    """How a listing is sorted: by a timestamp column, ties broken by an id column."""

    at: str = "created_at"
    id: str = "id"
    id_type: type[UUID] | type[int] = UUID
    newest_first: bool = False


OLDEST_FIRST = Order()


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    items: list[ItemT]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool


def check_page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise InputError(
            f"first must be between 0 and {MAX_PAGE_SIZE}",
            field_errors={"first": f"must be between 0 and {MAX_PAGE_SIZE}"},
        )
    return first


async def fetch_page(
    connection: Connection,
    *,
    query: str,
    conditions: Sequence[str],
    arguments: Sequence[Any],
    first: int | None,
    after: str | None,
    to_item: Callable[[Any], ItemT],
    order: Order = OLDEST_FIRST,
) -> Page[ItemT]:
    """Run `query` (a SELECT with no WHERE clause, whose rows have the order's columns) for one
    page. `conditions` are ANDed SQL predicates over `arguments` ($1, $2, ...)."""
    limit = check_page_size(first)
    where = list(conditions)
    values = list(arguments)
    key = f"({order.at}, {order.id})"
    if after is not None:
        cursor = Cursor.decode(after, order.id_type)
        values += [cursor.at, cursor.id]
        comparison = "<" if order.newest_first else ">"
        where.append(f"{key} {comparison} (${len(values) - 1}, ${len(values)})")
    sql = query
    if where:
        sql += " WHERE " + " AND ".join(where)
    values.append(limit + 1)
    direction = "DESC" if order.newest_first else "ASC"
    sql += f" ORDER BY {order.at} {direction}, {order.id} {direction} LIMIT ${len(values)}"
    rows = await connection.fetch(sql, *values)
    visible = rows[:limit]
    return Page(
        items=[to_item(row) for row in visible],
        cursors=[Cursor(row[order.at], row[order.id]).encode() for row in visible],
        has_next_page=len(rows) > limit,
        has_previous_page=after is not None,
    )
