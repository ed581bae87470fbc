from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.graphql.permissions import public, requires
from aiaas.graphql.system.types import Health, Plugin


@strawberry.type
class SystemQuery:
    @strawberry.field(extensions=public(), description="Liveness of the API. Needs no token.")
    def health(self) -> Health:
        return Health(status="ok")

    @strawberry.field(
        extensions=requires("plugins", "read"),
        description="Every plugin of this API process, including those that failed to load.",
    )
    def plugins(self, info: Info) -> list[Plugin]:
        return [Plugin.from_status(status) for status in info.context.platform.plugins.report()]
