"""The root fields this plugin adds to the GraphQL schema."""

from __future__ import annotations

import strawberry

from aiaas.graphql.permissions import requires
from aiaas_example_plugin import greeting


@strawberry.type
class ExampleQuery:
    # aiaas refuses a root field without a permission: this one needs `read` on `example`, which
    # the built-in policy grants to admins only until a policy line grants it to others.
    @strawberry.field(
        extensions=requires("example", "read"),
        description="A greeting from the example plugin.",
    )
    def example_greeting(self, name: str) -> str:
        return greeting(name)
