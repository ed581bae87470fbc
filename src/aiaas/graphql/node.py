"""`node(id)`: any object by its global id."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.graphql.context import RequestContext
from aiaas.graphql.identity.types import User
from aiaas.graphql.permissions import requires
from aiaas.graphql.projects.types import Project
from aiaas.graphql.relay import Node, from_global_id

# Each node type: the loader that fetches it and how to present it.
_NODE_TYPES = {
    "Project": ("project", Project.from_domain),
    "User": ("user", User.from_domain),
}


@strawberry.type
class NodeQuery:
    @strawberry.field(
        extensions=requires("node", "read"),
        description="Any object by its global id; null if there is none the caller may see.",
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        context: RequestContext = info.context
        type_name, object_id = from_global_id(id)
        if type_name not in _NODE_TYPES:
            return None
        loader_name, present = _NODE_TYPES[type_name]
        found = await context.loader(loader_name).load(object_id)
        return present(found) if found is not None else None  # type: ignore[operator]
