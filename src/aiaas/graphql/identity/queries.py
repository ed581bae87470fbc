from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.core.errors import AuthenticationError
from aiaas.core.identity.accounts import list_users
from aiaas.core.pagination import DEFAULT_PAGE_SIZE
from aiaas.graphql.context import RequestContext
from aiaas.graphql.identity.types import User, Viewer
from aiaas.graphql.permissions import requires
from aiaas.graphql.relay import Connection, page_connection


@strawberry.type
class IdentityQuery:
    @strawberry.field(extensions=requires("viewer", "read"), description="The caller.")
    async def viewer(self, info: Info) -> Viewer:
        context: RequestContext = info.context
        principal = context.require_principal()
        user = await context.loader("user").load(principal.user_id)
        if user is None:
            raise AuthenticationError("the user behind this token no longer exists")
        return Viewer.of(user)

    @strawberry.field(extensions=requires("user", "read"), description="Every user (admins).")
    async def users(
        self, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[User]:
        return await page_connection(info, User.from_domain, list_users, first=first, after=after)
