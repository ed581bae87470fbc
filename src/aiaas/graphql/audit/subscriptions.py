from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.types import Info

from aiaas.core import audit
from aiaas.core.audit import audit_channel
from aiaas.graphql.context import RequestContext
from aiaas.graphql.permissions import (
    authorize_in_project,
    project_by_global_id,
    requires_in_project,
)
from aiaas.graphql.projects.types import AuditEvent
from aiaas.graphql.relay import uuid_of


@strawberry.type
class AuditSubscription:
    @strawberry.subscription(
        extensions=requires_in_project("audit", "read", project_by_global_id("project")),
        description="A project's audit events as they are committed (owners and admins). "
        "For what happened before, page through `Project.auditEvents`.",
    )
    async def project_audit_events(
        self, info: Info, project: strawberry.ID
    ) -> AsyncGenerator[AuditEvent, None]:
        context: RequestContext = info.context
        project_id = uuid_of(project, "Project", "project")
        async for event in context.platform.events.subscribe(audit_channel(project_id)):
            # Checked again for every event, not only at the start: an owner who is removed
            # or demoted must stop hearing the project at once. The enforcer answers from
            # memory, so this costs no query unless access is gone.
            await authorize_in_project(context, project_id, "audit", "read")
            event["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
            yield AuditEvent.from_domain(audit.AuditEvent(**event))
