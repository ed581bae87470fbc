from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import strawberry
from strawberry.types import Info

from aiaas.core.identity import accounts as identity
from aiaas.graphql.errors import (
    ConflictResult,
    InvalidInputResult,
    LoginFailedResult,
    NotFoundResult,
    RateLimitedResult,
)
from aiaas.graphql.relay import Node, to_global_id


@strawberry.type(description="A person or a service account.")
class User(Node):
    username: str
    display_name: str
    is_admin: bool
    created_at: datetime
    uuid: strawberry.Private[UUID]

    @classmethod
    def from_domain(cls, user: identity.User) -> User:
        return cls(
            id=to_global_id("User", user.id),
            username=user.username,
            display_name=user.display_name,
            is_admin=user.is_admin,
            created_at=user.created_at,
            uuid=user.id,
        )


@strawberry.type(description="An API or session token. Its secret is shown once, at creation.")
class ApiToken(Node):
    name: str
    prefix: str = strawberry.field(description="The visible part: identifies a leaked token.")
    kind: str = strawberry.field(description="`api`, or `session` for one made by `login`.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_domain(cls, token: identity.ApiToken) -> ApiToken:
        return cls(
            id=to_global_id("ApiToken", token.id),
            name=token.name,
            prefix=token.prefix,
            kind=token.kind,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            last_used_at=token.last_used_at,
        )


@strawberry.type(description="The caller: their account and their tokens.")
class Viewer(User):
    @strawberry.field(description="The caller's tokens, newest last; never their secrets.")
    async def api_tokens(self, info: Info) -> list[ApiToken]:
        async with info.context.platform.metadata.acquire() as connection:
            tokens = await identity.list_api_tokens(connection, self.uuid)
        return [ApiToken.from_domain(token) for token in tokens]

    @classmethod
    def of(cls, user: identity.User) -> Viewer:
        return cls(**vars(User.from_domain(user)))


@strawberry.input
class CreateUserInput:
    username: str
    display_name: str = ""
    password: str | None = strawberry.field(
        default=None, description="Without one, the user signs in with API tokens only."
    )
    is_admin: bool = False


@strawberry.input
class CreateApiTokenInput:
    name: str
    expires_at: datetime | None = strawberry.field(
        default=None, description="When it stops working; never, if null."
    )


@strawberry.type
class LoginSuccess:
    token: str = strawberry.field(description="The session token's secret, shown only now.")
    expires_at: datetime
    user: User


@strawberry.type
class CreateUserSuccess:
    user: User


@strawberry.type
class CreateApiTokenSuccess:
    token: str = strawberry.field(description="The token's secret, shown only now.")
    api_token: ApiToken


@strawberry.type
class RevokeApiTokenSuccess:
    api_token_id: strawberry.ID


LoginResult = Annotated[
    LoginSuccess | LoginFailedResult | RateLimitedResult, strawberry.union("LoginResult")
]
CreateUserResult = Annotated[
    CreateUserSuccess | InvalidInputResult | ConflictResult, strawberry.union("CreateUserResult")
]
CreateApiTokenResult = Annotated[
    CreateApiTokenSuccess | InvalidInputResult, strawberry.union("CreateApiTokenResult")
]
RevokeApiTokenResult = Annotated[
    RevokeApiTokenSuccess | NotFoundResult | ConflictResult | InvalidInputResult,
    strawberry.union("RevokeApiTokenResult"),
]
