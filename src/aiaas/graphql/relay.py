"""Relay-style building blocks: global ids, the `Node` interface, and cursor connections, with
`page_connection`, the whole body of a resolver that answers one page of a domain's `list_*`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Concatenate, Generic, ParamSpec, TypeVar
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core import global_ids, storage
from aiaas.core.pagination import Page

NodeT = TypeVar("NodeT")
ItemT = TypeVar("ItemT")
ListArgs = ParamSpec("ListArgs")


def to_global_id(type_name: str, object_id: UUID) -> strawberry.ID:
    return strawberry.ID(global_ids.encode(type_name, object_id))


def from_global_id(
    global_id: str, argument: str = "id", expected: str | Sequence[str] = global_ids.ANY_TYPE
) -> tuple[str, UUID]:
    """`(type name, uuid)` of an id argument that must name one of the `expected` types (any
    type when none is given); `InputError` otherwise, naming the argument as the schema spells
    it (`input.datasetVersion`) and saying what it expected (`core/global_ids.py`)."""
    return global_ids.read(global_id, expected, argument)


def uuid_of(global_id: str, expected: str | Sequence[str], argument: str) -> UUID:
    """The uuid of an id argument that must name an object of the `expected` type(s)."""
    return global_ids.read(global_id, expected, argument)[1]


@strawberry.interface(description="An object with a globally unique, opaque id.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


def connection_from_page(page: Page[ItemT], convert: Callable[[ItemT], NodeT]) -> Connection[NodeT]:
    edges = [
        Edge(cursor=cursor, node=convert(item))
        for item, cursor in zip(page.items, page.cursors, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
    )


async def page_connection(
    info: Info,
    convert: Callable[[ItemT], NodeT],
    list_page: Callable[Concatenate[storage.Connection, ListArgs], Awaitable[Page[ItemT]]],
    *args: ListArgs.args,
    **kwargs: ListArgs.kwargs,
) -> Connection[NodeT]:
    """`list_page(connection, *args, **kwargs)` on a pooled connection, as a connection of
    `convert`ed nodes. Authorization is the field's business (its permission extension), not
    this function's: it runs only once the field was allowed."""
    async with info.context.platform.metadata.acquire() as connection:
        page = await list_page(connection, *args, **kwargs)
    return connection_from_page(page, convert)
