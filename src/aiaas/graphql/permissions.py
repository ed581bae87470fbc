"""The gate every guarded field passes: one field extension over the platform's one enforcement
point (`Platform.authorize`).

Each root field declares exactly one policy, with `public()`, `requires(resource, action)` for
platform-wide fields, or `requires_in_project(resource, action, locate)` for fields that act in
one project. `build_schema` refuses a root field without one, and the authorization tests walk
the schema with `root_field_policies`, so no field can slip through unguarded.

In a project, a caller who has no part in it (neither member nor admin) is told "not found",
whatever they asked for, so that nothing reveals which projects exist. A member whose role lacks
the grant is told FORBIDDEN. A change to an archived project is answered with the field's
`ConflictError` member (`members.authorize_in_project` decides). Refused mutations and
subscriptions are written to the audit trail: `denied` when the caller may not, `failed` when the
object does not exist, its state refuses, or the id that names it is malformed or of another
type. Refused queries are not: they change nothing and start nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info
from strawberry.types.base import StrawberryOptional, get_object_definition
from strawberry.types.field import StrawberryField
from strawberry.types.union import StrawberryUnion

from aiaas.core.audit import Outcome, record_outside_change
from aiaas.core.auth import GLOBAL_DOMAIN
from aiaas.core.errors import (
    AuthenticationError,
    ConcealedDenialError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from aiaas.core.identity import members
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import ConflictResult, NotFoundResult
from aiaas.graphql.relay import from_global_id
from graphql import GraphQLObjectType, OperationType

Scope = Literal["public", "platform", "project"]
ProjectLocator = Callable[[RequestContext, Any, dict[str, Any]], Awaitable[UUID | None]]


@dataclass(frozen=True)
class FieldPolicy:
    """What a field requires: nothing (`public`), or a grant in the platform or in a project."""

    scope: Scope
    resource: str | None = None
    action: str | None = None

    @property
    def is_public(self) -> bool:
        return self.scope == "public"


_AUDITED_OPERATIONS = (OperationType.MUTATION, OperationType.SUBSCRIPTION)
"""The operations whose refusals are audited: those that change something or start a feed."""


class _RefusalError(Exception):
    def __init__(self, error: Exception, outcome: Outcome, project_id: UUID | None) -> None:
        self.error = error
        self.outcome = outcome
        self.project_id = project_id


async def authorize_in_project(
    context: RequestContext, project_id: UUID | None, resource: str, action: str
) -> None:
    """`members.authorize_in_project` for the caller of this request."""
    await members.authorize_in_project(
        context.platform, context.require_principal(), project_id, resource, action
    )


async def require_more_in_project(
    context: RequestContext, project_id: UUID, resource: str, action: str, field: str
) -> None:
    """A grant a field needs beyond its own policy in some cases (moving `production` needs
    model:promote); a refusal is audited under the field, as its own policy's refusals are."""
    try:
        await authorize_in_project(context, project_id, resource, action)
    except PermissionDeniedError as exc:
        await record_outside_change(
            context.platform,
            actor=context.principal,
            action=f"graphql.{field}",
            outcome="denied",
            request_id=context.request_id,
            project_id=project_id,
            details={"resource": resource, "action": action, "code": exc.code},
        )
        raise


class Authorize(FieldExtension):
    """Apply a `FieldPolicy` before the resolver runs."""

    def __init__(self, policy: FieldPolicy, locate: ProjectLocator | None = None) -> None:
        if policy.scope == "project" and locate is None:
            raise ValueError("a project-scoped field needs a way to find its project")
        self.policy = policy
        self.locate = locate
        self._not_found_answer: Callable[[NotFoundError], Any] | None = None
        self._conflict_answer: Callable[[ConflictError], Any] | None = None

    def apply(self, field: StrawberryField) -> None:
        # What a caller is told when the object is not theirs to see: the field's NotFoundError
        # union member, else null where the field allows it, else the GraphQL error itself.
        field_type = field.type
        if isinstance(field_type, StrawberryUnion) and NotFoundResult in field_type.types:
            self._not_found_answer = NotFoundResult.from_exception
        elif isinstance(field_type, StrawberryOptional):
            self._not_found_answer = lambda _: None
        # A change refused by the project's state (it is archived) is told as the field's
        # ConflictError member where it has one, as the resolver itself would tell it.
        if isinstance(field_type, StrawberryUnion) and ConflictResult in field_type.types:
            self._conflict_answer = ConflictResult.from_exception

    async def resolve_async(
        self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        if not self.policy.is_public:
            try:
                await self._check(info.context, source, kwargs)
            except _RefusalError as refusal:
                return await self._refuse(info, refusal)
        result = next_(source, info, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def _check(self, context: RequestContext, source: Any, kwargs: dict[str, Any]) -> None:
        resource, action = self.policy.resource, self.policy.action
        assert resource is not None
        assert action is not None
        project_id: UUID | None = None
        try:
            if self.policy.scope == "platform":
                principal = context.require_principal()
                await context.platform.authorize(principal, GLOBAL_DOMAIN, resource, action)
            else:
                assert self.locate is not None
                context.require_principal()
                project_id = await self.locate(context, source, kwargs)
                await authorize_in_project(context, project_id, resource, action)
        except (AuthenticationError, PermissionDeniedError, ConcealedDenialError) as exc:
            raise _RefusalError(exc, "denied", project_id) from exc
        except (NotFoundError, ConflictError, InputError) as exc:
            raise _RefusalError(exc, "failed", project_id) from exc

    async def _refuse(self, info: Info, refusal: _RefusalError) -> Any:
        context: RequestContext = info.context
        error = refusal.error
        if isinstance(error, AuthenticationError):
            context.mark_unauthenticated()
        if info.operation.operation in _AUDITED_OPERATIONS:
            await record_outside_change(
                context.platform,
                actor=context.principal,
                action=f"graphql.{info.field_name}",
                outcome=refusal.outcome,
                request_id=context.request_id,
                # Filed under the project, so that its owners see attempts on it.
                project_id=refusal.project_id,
                details={
                    "resource": self.policy.resource,
                    "action": self.policy.action,
                    "code": getattr(error, "code", None),
                    "client": context.credentials.client_address,
                },
            )
        if isinstance(error, NotFoundError) and self._not_found_answer is not None:
            return self._not_found_answer(error)
        if isinstance(error, ConflictError) and self._conflict_answer is not None:
            return self._conflict_answer(error)
        raise error


def public() -> list[FieldExtension]:
    """A field anyone may call, with credentials or without."""
    return [Authorize(FieldPolicy("public"))]


def requires(resource: str, action: str) -> list[FieldExtension]:
    """A field that needs `action` on `resource` in the platform as a whole."""
    return [Authorize(FieldPolicy("platform", resource, action))]


def requires_in_project(resource: str, action: str, locate: ProjectLocator) -> list[FieldExtension]:
    """A field that needs `action` on `resource` in the project that `locate` finds."""
    return [Authorize(FieldPolicy("project", resource, action), locate)]


# Ways to find the project a field acts in ---------------------------------------------------


def project_by_slug(argument: str = "slug") -> ProjectLocator:
    async def locate(context: RequestContext, source: Any, kwargs: dict[str, Any]) -> UUID | None:
        project = await context.loader("project_by_slug").load(kwargs[argument])
        return project.id if project is not None else None

    return locate


# The loader that fetches each kind of object a global id can name, to find its project.
OWNED_TYPES = {
    "Project": "project",
    "Dataset": "dataset",
    "DatasetVersion": "dataset_version",
    "Job": "job",
    "TrainingJob": "job",
    "Model": "model",
    "ModelVersion": "model_version",
    "Deployment": "deployment",
    "Sweep": "sweep",
}


def schema_name(python_name: str) -> str:
    """An argument's name as the schema spells it (strawberry's camelCase)."""
    first, *rest = python_name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def project_by_global_id(
    argument: str = "id", *, within: str | None = None, of: str | tuple[str, ...] = "Project"
) -> ProjectLocator:
    """The project of the object of type `of` (or one of the types) that a global id names,
    given directly or as a field of an input object (`within` names the input argument)."""
    accepted = (of,) if isinstance(of, str) else of
    named = f"{within}.{schema_name(argument)}" if within else schema_name(argument)

    async def locate(context: RequestContext, source: Any, kwargs: dict[str, Any]) -> UUID | None:
        value = getattr(kwargs[within], argument) if within else kwargs[argument]
        # An id of another type is refused here, naming the argument, before anything is
        # looked up: the resolvers read it again, knowing it is of the right type.
        type_name, object_id = from_global_id(value, named, accepted)
        found = await context.loader(OWNED_TYPES[type_name]).load(object_id)
        if found is None:
            return None
        project_id: UUID = found.id if type_name == "Project" else found.project_id
        return project_id

    return locate


async def project_of_source(context: RequestContext, source: Any, kwargs: dict[str, Any]) -> UUID:
    """For fields of a type that belongs to a project: the `project_uuid` of the object."""
    project_id: UUID = source.project_uuid
    return project_id


# Reading the policies back ------------------------------------------------------------------


def field_policy(field: Any) -> FieldPolicy | None:
    """The policy a strawberry field declares, or None if it declares none."""
    for extension in field.extensions:
        if isinstance(extension, Authorize):
            return extension.policy
    return None


def nested_field_policies(schema: strawberry.Schema) -> dict[str, FieldPolicy]:
    """`{"Project.auditEvents": policy, ...}`: the fields of object types (not the root types)
    that guard themselves with a policy of their own."""
    roots = {
        root.name for root in (schema._schema.query_type, schema._schema.mutation_type) if root
    }
    if schema._schema.subscription_type is not None:
        roots.add(schema._schema.subscription_type.name)
    policies: dict[str, FieldPolicy] = {}
    for type_name, graphql_type in schema._schema.type_map.items():
        if type_name in roots or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, graphql_field in graphql_type.fields.items():
            definition = (graphql_field.extensions or {}).get(
                GraphQLCoreConverter.DEFINITION_BACKREF
            )
            policy = field_policy(definition) if definition is not None else None
            if policy is not None:
                policies[f"{type_name}.{field_name}"] = policy
    return policies


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
