"""Keyset pagination over `(created_at, id)`, with opaque cursors.

Offsets drift when rows are inserted while a client pages; a keyset cursor always resumes right
after the last row the client saw, and costs one index range scan however deep the page is.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from aiaas.core.errors import InputError
from aiaas.core.storage import Connection

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

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
        try:
            padded = value + "=" * (-len(value) % 4)
            at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            return cls(at=datetime.fromisoformat(at), id=id_type(row_id))
        except (ValueError, TypeError, UnicodeError, binascii.Error):
            raise InputError("malformed cursor", field_errors={"after": "malformed"}) from None


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
