from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.core.errors import AuthenticationError
from aiaas.graphql.context import RequestContext
from aiaas.graphql.identity.types import User
from aiaas.graphql.permissions import requires


@strawberry.type
class IdentityQuery:
    @strawberry.field(extensions=requires("viewer", "read"), description="The caller.")
    async def viewer(self, info: Info) -> User:
        context: RequestContext = info.context
        principal = context.require_principal()
        user = await context.loader("user").load(principal.user_id)
        if user is None:
            raise AuthenticationError("the user behind this token no longer exists")
        return User.from_domain(user)
