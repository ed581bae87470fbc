"""The schema: every domain's root fields, plus the fields plugins contribute."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import strawberry
from strawberry.extensions import DisableIntrospection, MaskErrors, MaxTokensLimiter
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.base import get_object_definition

from aiaas.core.config import Config
from aiaas.core.errors import PluginError
from aiaas.core.platform import Platform
from aiaas.core.tracing import tracing_enabled
from aiaas.graphql.audit.subscriptions import AuditSubscription
from aiaas.graphql.datasets.mutations import DatasetMutation
from aiaas.graphql.datasets.types import Dataset, DatasetVersion
from aiaas.graphql.deployments.batch_prediction import BatchPredictionMutation
from aiaas.graphql.deployments.mutations import DeploymentMutation
from aiaas.graphql.deployments.subscriptions import DeploymentSubscription
from aiaas.graphql.deployments.types import Deployment
from aiaas.graphql.document_caches import (
    ParsedDocuments,
    ValidationUnlessRefused,
    document_limits,
)
from aiaas.graphql.error_audit import UnexpectedErrorsAudited, unexpected_cause
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult
from aiaas.graphql.identity.mutations import IdentityMutation
from aiaas.graphql.identity.queries import IdentityQuery
from aiaas.graphql.identity.types import ApiToken, User, Viewer
from aiaas.graphql.input_checks import InputChecks
from aiaas.graphql.jobs.types import Job
from aiaas.graphql.models.mutations import ModelMutation
from aiaas.graphql.models.types import Model, ModelVersion
from aiaas.graphql.node import NodeQuery
from aiaas.graphql.operation_metrics import OperationMetrics
from aiaas.graphql.operation_spans import OperationSpans
from aiaas.graphql.outages import OutagesAnswered, outage_of
from aiaas.graphql.permissions import root_field_policies
from aiaas.graphql.projects.mutations import ProjectMutation
from aiaas.graphql.projects.queries import ProjectQuery
from aiaas.graphql.projects.types import Project
from aiaas.graphql.scalars import SCALAR_OVERRIDES
from aiaas.graphql.sweeps.mutations import SweepMutation
from aiaas.graphql.sweeps.subscriptions import SweepSubscription
from aiaas.graphql.sweeps.types import Sweep
from aiaas.graphql.system.queries import SystemQuery
from aiaas.graphql.training.mutations import TrainingMutation
from aiaas.graphql.training.queries import TrainingQuery
from aiaas.graphql.training.subscriptions import TrainingSubscription
from aiaas.graphql.training.types import TrainingJob
from graphql import GraphQLError

logger = logging.getLogger(__name__)

BUILTIN_QUERIES: tuple[type, ...] = (
    SystemQuery,
    IdentityQuery,
    ProjectQuery,
    NodeQuery,
    TrainingQuery,
)
BUILTIN_MUTATIONS: tuple[type, ...] = (
    IdentityMutation,
    ProjectMutation,
    DatasetMutation,
    TrainingMutation,
    SweepMutation,
    ModelMutation,
    DeploymentMutation,
    BatchPredictionMutation,
)
BUILTIN_SUBSCRIPTIONS: tuple[type, ...] = (
    AuditSubscription,
    TrainingSubscription,
    SweepSubscription,
    DeploymentSubscription,
)


SUBSCRIPTION_DESCRIPTION = (
    "Live events, over a WebSocket to `/graphql` that speaks the graphql-transport-ws "
    "subprotocol (the protocol of the `graphql-ws` client library). Another subprotocol is "
    'closed with 4406 "subprotocol graphql-transport-ws expected".\n\n'
    "The first message, `connection_init`, carries an API token in its payload: "
    '`{"authorization": "Bearer <token>"}`. The key is read in any case (`Authorization`), '
    'also inside `headers` (`{"headers": {"Authorization": "Bearer <token>"}}`), and '
    '`{"token": "<token>"}` takes the bare token. A payload with none of these falls back to '
    "the handshake's own `Authorization` header. Without credentials the socket is closed with "
    '4403 `connection_init needs payload {"authorization": "Bearer <token>"}`; with refused '
    "ones, with 4403 and why (such as `unknown API token` or `API token revoked`). As over "
    "HTTP, `authorization` needs the `Bearer` scheme, and two different credentials in one "
    "payload are refused. An open socket whose token is revoked or expires is closed with 4403 "
    "within seconds."
)


def is_expected(error: GraphQLError) -> bool:
    """Errors the caller should see as they are: our own, and GraphQL's (validation, variable
    coercion), which graphql-core may wrap in one another."""
    return unexpected_cause(error) is None


# graphql-core suggests field and type names in validation errors, which lets anyone map the
# schema with introspection turned off.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class ProductionErrors(MaskErrors):
    """Mask unexpected errors to a message and a code, keeping the request id to find the log,
    and drop the "Did you mean ...?" suggestions from validation errors."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if is_expected(error):
            error.message = _SUGGESTION.sub("", error.message)
            return error
        masked = super().anonymise_error(error)
        context = self.execution_context.context
        masked.extensions = {"code": "INTERNAL", "requestId": getattr(context, "request_id", None)}
        return masked


class AiaasSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected failures are answers, not incidents: log only the unexpected ones, with the
        # request id that the masked error carries.
        request_id = (
            getattr(execution_context.context, "request_id", None) if execution_context else None
        )
        for error in errors:
            outage = outage_of(error)
            if outage is not None:  # answered as a 503 by OutagesAnswered: no bug to report
                logger.warning("GraphQL request %s: %s", request_id, outage.message)
            elif not is_expected(error):
                logger.error(
                    "unexpected error in GraphQL request %s",
                    request_id,
                    exc_info=error.original_error,
                )


def schema_extensions(config: Config) -> list[Any]:
    """Limits that reject an abusive document, and values no field can store, before any
    resolver runs, and, in production, no introspection and masked unexpected errors
    (DESIGN.md section 7). Unexpected errors are audited first, before they are masked."""
    extensions: list[Any] = [
        ParsedDocuments,  # see document_caches
        UnexpectedErrorsAudited,
        InputChecks,  # before validation, which its refusal skips
        ValidationUnlessRefused,
        document_limits(config.graphql_max_depth, config.graphql_max_aliases),
        lambda: MaxTokensLimiter(max_token_count=config.graphql_max_tokens),
    ]
    if not config.is_dev:
        extensions += [DisableIntrospection, ProductionErrors]
    if tracing_enabled():  # outermost: its span holds what the others do while executing
        extensions.insert(0, OperationSpans)
    # Innermost, so that it classifies errors before ProductionErrors masks them; and within
    # it, errors that a lost service caused are typed as outages before anyone sees them.
    return [*extensions, OperationMetrics, OutagesAnswered]


def _merge(name: str, types: Iterable[type], description: str | None = None) -> Any:
    types = tuple(types)
    if not types:
        return None
    seen: dict[str, str] = {}
    for root in types:
        for field in get_object_definition(root, strict=True).fields:
            if field.python_name in seen:
                raise PluginError(
                    f"{name}.{field.python_name} is defined by both {seen[field.python_name]} "
                    f"and {root.__name__}"
                )
            seen[field.python_name] = root.__name__
    merged = merge_types(name, types)
    get_object_definition(merged, strict=True).description = description
    return merged


def build_schema(platform: Platform) -> strawberry.Schema:
    contributions = list(platform.registries.graphql)
    schema = AiaasSchema(
        query=_merge("Query", [*BUILTIN_QUERIES, *(c.query for c in contributions if c.query)]),
        mutation=_merge(
            "Mutation", [*BUILTIN_MUTATIONS, *(c.mutation for c in contributions if c.mutation)]
        ),
        subscription=_merge(
            "Subscription",
            [*BUILTIN_SUBSCRIPTIONS, *(c.subscription for c in contributions if c.subscription)],
            SUBSCRIPTION_DESCRIPTION,
        ),
        types=[
            Project,
            User,
            Viewer,
            ApiToken,
            Dataset,
            DatasetVersion,
            Job,
            TrainingJob,
            Sweep,
            Model,
            ModelVersion,
            Deployment,
            InvalidInputResult,
            NotFoundResult,
            ConflictResult,
        ],
        extensions=schema_extensions(platform.config),
        scalar_overrides=SCALAR_OVERRIDES,
    )
    unguarded = sorted(
        name for name, policy in root_field_policies(schema).items() if policy is None
    )
    if unguarded:
        raise PluginError(f"root fields without a permission: {', '.join(unguarded)}")
    return schema
