from __future__ import annotations

import strawberry
from strawberry.types import Info

from aiaas.core import errors
from aiaas.core.audit import record_outside_change
from aiaas.core.identity import accounts as identity
from aiaas.core.identity import sessions
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import (
    ConflictResult,
    InvalidInputResult,
    LoginFailedResult,
    NotFoundResult,
    RateLimitedResult,
)
from aiaas.graphql.identity.types import (
    ApiToken,
    CreateApiTokenInput,
    CreateApiTokenResult,
    CreateApiTokenSuccess,
    CreateUserInput,
    CreateUserResult,
    CreateUserSuccess,
    LoginResult,
    LoginSuccess,
    RevokeApiTokenResult,
    RevokeApiTokenSuccess,
    User,
)
from aiaas.graphql.permissions import public, requires
from aiaas.graphql.relay import to_global_id, uuid_of


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(
        extensions=public(),
        description="Sign in with a password; answers a session token. Rate limited per user "
        "and per client address.",
    )
    async def login(self, info: Info, username: str, password: str) -> LoginResult:
        context: RequestContext = info.context
        try:
            session = await sessions.login(
                context.platform,
                username=username,
                password=password,
                client_address=context.credentials.client_address,
                request_id=context.request_id,
            )
        except errors.RateLimitedError as exc:
            return RateLimitedResult.from_exception(exc)
        except errors.AuthenticationError as exc:
            return LoginFailedResult.from_exception(exc)
        assert session.token.expires_at is not None
        return LoginSuccess(
            token=session.token.secret,
            expires_at=session.token.expires_at,
            user=User.from_domain(session.user),
        )

    @strawberry.mutation(
        extensions=requires("token", "manage"),
        description="Revoke the token this request was made with (sign out).",
    )
    async def logout(self, info: Info) -> bool:
        context: RequestContext = info.context
        principal = context.require_principal()
        if principal.token_id is None:
            return False
        return await identity.revoke_token(
            context.platform, principal, principal.token_id, request_id=context.request_id
        )

    @strawberry.mutation(extensions=requires("user", "create"), description="Admins only.")
    async def create_user(self, info: Info, input: CreateUserInput) -> CreateUserResult:
        context: RequestContext = info.context
        try:
            user = await identity.create_user(
                context.platform,
                context.require_principal(),
                username=input.username,
                display_name=input.display_name,
                password=input.password,
                is_admin=input.is_admin,
                request_id=context.request_id,
            )
        except errors.InputError as exc:
            return InvalidInputResult.from_exception(exc)
        except errors.ConflictError as exc:
            return ConflictResult.from_exception(exc)
        return CreateUserSuccess(user=User.from_domain(user))

    @strawberry.mutation(extensions=requires("token", "manage"))
    async def create_api_token(
        self, info: Info, input: CreateApiTokenInput
    ) -> CreateApiTokenResult:
        context: RequestContext = info.context
        principal = context.require_principal()
        try:
            issued = await identity.create_api_token(
                context.platform,
                principal,
                name=input.name,
                expires_at=input.expires_at,
                request_id=context.request_id,
            )
        except errors.InputError as exc:
            return InvalidInputResult.from_exception(exc)
        async with context.platform.metadata.acquire() as connection:
            stored = await identity.find_token_by_prefix(connection, issued.prefix)
        assert stored is not None
        return CreateApiTokenSuccess(token=issued.secret, api_token=ApiToken.from_domain(stored))

    @strawberry.mutation(
        extensions=requires("token", "manage"),
        description="Revoke one of your tokens (admins: anyone's). It stops working at once, and "
        "its open subscriptions are closed.",
    )
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> RevokeApiTokenResult:
        context: RequestContext = info.context
        principal = context.require_principal()
        try:
            try:
                token_id = uuid_of(id, "ApiToken", "id")
            except errors.InputError as exc:
                # Refused before the domain's audited change: audited here as it would be.
                await record_outside_change(
                    context.platform,
                    actor=principal,
                    action="api_token.revoke",
                    outcome="failed",
                    request_id=context.request_id,
                    details={"code": exc.code, "message": exc.message},
                )
                raise
            revoked = await identity.revoke_token(
                context.platform, principal, token_id, request_id=context.request_id
            )
        except errors.InputError as exc:
            return InvalidInputResult.from_exception(exc)
        except errors.NotFoundError as exc:
            return NotFoundResult.from_exception(exc)
        if not revoked:
            return ConflictResult(message="the token is already revoked", code="CONFLICT")
        return RevokeApiTokenSuccess(api_token_id=to_global_id("ApiToken", token_id))
