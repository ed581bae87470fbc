"""Field permissions: thin wrappers over the platform's one enforcement point.

Every root field of the schema declares exactly one policy: `requires(resource, action)` or
`public()`. `build_schema` refuses a root field without one, and the authorization tests walk the
schema with `root_field_policies`, so a new field cannot slip through unguarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info
from strawberry.types.base import get_object_definition

from aiaas.core.audit import record_outside_change
from aiaas.core.auth import GLOBAL_DOMAIN
from aiaas.core.errors import AuthenticationError, PermissionDeniedError
from aiaas.graphql.context import RequestContext
from graphql import OperationType


@dataclass(frozen=True)
class FieldPolicy:
    """What a root field requires. `resource` is None for a public field."""

    resource: str | None
    action: str | None

    @property
    def is_public(self) -> bool:
        return self.resource is None


class Requires(BasePermission):
    """Allow the field only if the enforcer grants `action` on `resource`."""

    def __init__(self, resource: str, action: str) -> None:
        self.policy = FieldPolicy(resource, action)

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        context: RequestContext = info.context
        resource, action = self.policy.resource, self.policy.action
        assert resource is not None
        assert action is not None
        try:
            principal = context.require_principal()
            await context.platform.authorize(principal, GLOBAL_DOMAIN, resource, action)
        except AuthenticationError:
            context.mark_unauthenticated()
            await _audit_refused_mutation(info, self.policy)
            raise
        except PermissionDeniedError:
            await _audit_refused_mutation(info, self.policy)
            raise
        return True


class Public(BasePermission):
    """Allow the field to anyone, credentials or not."""

    policy = FieldPolicy(None, None)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return True


async def _audit_refused_mutation(info: Info, policy: FieldPolicy) -> None:
    if info.operation.operation is not OperationType.MUTATION:
        return
    context: RequestContext = info.context
    await record_outside_change(
        context.platform,
        actor=context.principal,
        action=f"graphql.{info.field_name}",
        outcome="denied",
        request_id=context.request_id,
        details={
            "resource": policy.resource,
            "action": policy.action,
            "client": context.credentials.client_address,
        },
    )


def requires(resource: str, action: str) -> list[FieldExtension]:
    """Field extensions for a field guarded by the enforcer."""
    return [PermissionExtension(permissions=[Requires(resource, action)], use_directives=False)]


def public() -> list[FieldExtension]:
    """Field extensions for a field anyone may call."""
    return [PermissionExtension(permissions=[Public()], use_directives=False)]


def field_policy(field: Any) -> FieldPolicy | None:
    """The policy a strawberry field declares, or None if it declares none."""
    for extension in field.extensions:
        if isinstance(extension, PermissionExtension):
            for permission in extension.permissions:
                if isinstance(permission, Requires | Public):
                    return permission.policy
    return None


def root_field_policies(schema: strawberry.Schema) -> dict[str, FieldPolicy | None]:
    """`{"Query.viewer": policy, ...}` for every root field of the schema."""
    policies: dict[str, FieldPolicy | None] = {}
    for root in (schema.query, schema.mutation, schema.subscription):
        if root is None:
            continue
        definition = get_object_definition(root, strict=True)
        for field in definition.fields:
            name = schema.config.name_converter.get_graphql_name(field)
            policies[f"{definition.name}.{name}"] = field_policy(field)
    return policies
