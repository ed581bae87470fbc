from __future__ import annotations

from datetime import datetime

import strawberry

from aiaas.core import identity
from aiaas.graphql.relay import Node, to_global_id


@strawberry.type
class User(Node):
    username: str
    display_name: str
    is_admin: bool
    created_at: datetime

    @classmethod
    def from_domain(cls, user: identity.User) -> User:
        return cls(
            id=to_global_id("User", user.id),
            username=user.username,
            display_name=user.display_name,
            is_admin=user.is_admin,
            created_at=user.created_at,
        )
