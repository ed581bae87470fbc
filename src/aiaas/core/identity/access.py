"""Who may do what: project roles, and the grants of each.

This module is the policy as data. The built-in Casbin enforcer loads it (with the memberships
stored in PostgreSQL), and docs/access-control.md is generated from what that enforcer decides,
so the documented matrix and the enforced one cannot drift apart.

- Every signed-in user holds `role:user` everywhere: `USER_GRANTS`.
- In a project, a member holds one `ProjectRole`; each role inherits every grant of the roles
  below it: `PROJECT_GRANTS` lists only what each role adds.
- A platform admin holds `role:admin`, which is granted everything in every project.
- A user may also hold `PlatformRole`s, each a narrow platform-wide grant given by an operator
  (`metrics-reader` may scrape `/metrics`): `PLATFORM_ROLE_GRANTS`.

Each grant also declares its `Effect`, which decides whether it still holds in an archived
project: an archived project is read-only, so only what reads, or what stops work already
running, is allowed there (`allowed_in_archived_project`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

from aiaas.core.auth import GLOBAL_DOMAIN


class ProjectRole(StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    MAINTAINER = "maintainer"
    OWNER = "owner"

    @property
    def subject(self) -> str:
        return f"role:{self.value}"

    @property
    def rank(self) -> int:
        return ROLE_HIERARCHY.index(self)


ROLE_HIERARCHY: tuple[ProjectRole, ...] = (
    ProjectRole.VIEWER,
    ProjectRole.DEVELOPER,
    ProjectRole.MAINTAINER,
    ProjectRole.OWNER,
)
"""Lowest first: each role inherits every grant of the ones before it."""

ADMIN_SUBJECT = "role:admin"
USER_SUBJECT = "role:user"


class PlatformRole(StrEnum):
    """A platform-wide role, held besides any project roles. Unlike admin it grants one narrow
    thing, so that a machine (a Prometheus scraper) can be given exactly what it needs."""

    METRICS_READER = "metrics-reader"

    @property
    def subject(self) -> str:
        return f"role:{self.value}"


class Effect(StrEnum):
    """What using a grant does to its project; every grant must say, so that a new one cannot
    slip into archived projects unnoticed."""

    READS = "reads"
    """Changes nothing: allowed in an archived project (predictions included, so that running
    deployments keep serving)."""
    CHANGES = "changes"
    """Adds, changes or removes something: refused in an archived project."""
    STOPS = "stops"
    """Stops work that is already running (a job, a deployment): allowed in an archived
    project, which would otherwise have no way to wind down."""


@dataclass(frozen=True)
class Grant:
    resource: str
    action: str
    description: str
    effect: Effect

    @property
    def name(self) -> str:
        return f"{self.resource}:{self.action}"


USER_GRANTS: tuple[Grant, ...] = (
    Grant("viewer", "read", "See their own account", Effect.READS),
    Grant("token", "manage", "Create, list and revoke their own API tokens", Effect.CHANGES),
    Grant("project", "create", "Create a project, and become its owner", Effect.CHANGES),
    Grant("project", "list", "List the projects they are a member of", Effect.READS),
    Grant("plugins", "read", "List the plugins of the platform", Effect.READS),
    Grant("trainer", "list", "List the trainers and their hyperparameters", Effect.READS),
    Grant(
        "node",
        "read",
        "Look an object up by id; each is then checked by its own grant",
        Effect.READS,
    ),
)

PROJECT_GRANTS: dict[ProjectRole, tuple[Grant, ...]] = {
    ProjectRole.VIEWER: (
        Grant("project", "read", "Read the project", Effect.READS),
        Grant("member", "list", "List the project's members and their roles", Effect.READS),
        Grant(
            "dataset",
            "read",
            "Read datasets, their versions, profiles and quality reports, and download a "
            "version's rows",
            Effect.READS,
        ),
        Grant(
            "job",
            "read",
            "Read the project's jobs, their progress and metric history",
            Effect.READS,
        ),
        Grant(
            "model",
            "read",
            "Read registered models, their versions, metrics and aliases, and export a version",
            Effect.READS,
        ),
        Grant(
            "deployment", "read", "Read deployments, their traffic, events and drift", Effect.READS
        ),
        Grant(
            "sweep",
            "read",
            "Read sweeps, their trials, optimization history, importances and events",
            Effect.READS,
        ),
        Grant(
            "deployment",
            "predict",
            "Call a deployment's predictions (GraphQL and V2 REST)",
            Effect.READS,
        ),
    ),
    ProjectRole.DEVELOPER: (
        Grant(
            "dataset",
            "upload",
            "Upload data as a new dataset or a new version of one",
            Effect.CHANGES,
        ),
        Grant("dataset", "transform", "Clean a version into a new version", Effect.CHANGES),
        Grant(
            "dataset",
            "validate",
            "Check a version against its dataset's expectations",
            Effect.CHANGES,
        ),
        Grant("dataset", "configure", "Set a dataset's expectations", Effect.CHANGES),
        Grant("training", "submit", "Submit training jobs", Effect.CHANGES),
        Grant("training", "cancel", "Cancel training jobs", Effect.STOPS),
        Grant(
            "sweep",
            "create",
            "Create hyperparameter sweeps, whose trials are training jobs",
            Effect.CHANGES,
        ),
        Grant("sweep", "cancel", "Cancel sweeps and their running trials", Effect.STOPS),
        Grant("model", "alias", "Move a model's aliases, except production", Effect.CHANGES),
        Grant(
            "model", "upload", "Upload a model file (ONNX) as a new model version", Effect.CHANGES
        ),
        Grant("deployment", "create", "Deploy a model version", Effect.CHANGES),
        Grant(
            "deployment",
            "update",
            "Change a deployment's canary and shadow, or roll it back",
            Effect.CHANGES,
        ),
    ),
    ProjectRole.MAINTAINER: (
        Grant(
            "member",
            "manage",
            "Add members, change and remove them, up to maintainer",
            Effect.CHANGES,
        ),
        Grant("project", "archive", "Archive the project", Effect.CHANGES),
        Grant("dataset", "delete", "Delete a dataset version that nothing uses", Effect.CHANGES),
        Grant("model", "promote", "Move a model's production alias", Effect.CHANGES),
        Grant("model", "configure", "Set a model's promotion gates", Effect.CHANGES),
        Grant(
            "deployment", "promote", "Make a deployment's canary its stable version", Effect.CHANGES
        ),
        Grant("deployment", "delete", "Stop a deployment", Effect.STOPS),
    ),
    ProjectRole.OWNER: (
        Grant(
            "member",
            "manage-owners",
            "Make members owners, and demote or remove owners",
            Effect.CHANGES,
        ),
        Grant(
            "project",
            "configure",
            "Change the project's settings: whether DICOM uploads keep their personal tags",
            Effect.CHANGES,
        ),
        Grant("audit", "read", "Read the project's audit trail", Effect.READS),
    ),
}

PLATFORM_ROLE_GRANTS: dict[PlatformRole, tuple[Grant, ...]] = {
    PlatformRole.METRICS_READER: (
        Grant(
            "metrics",
            "read",
            "Scrape `GET /metrics`, whose series name every project and deployment; also held "
            "by the platform role `metrics-reader`",
            Effect.READS,
        ),
    ),
}

ADMIN_GRANTS: tuple[Grant, ...] = (
    Grant("user", "create", "Create users", Effect.CHANGES),
    Grant("user", "read", "Read any user", Effect.READS),
    Grant(
        "platform-role",
        "manage",
        "Grant and revoke platform roles, such as `metrics-reader`",
        Effect.CHANGES,
    ),
)
"""What only admins may do. Admins are granted everything; these are listed for the matrix."""


def policy_rules() -> list[tuple[str, ...]]:
    """The built-in Casbin lines: `p` grants and the `g` links that chain the roles."""
    rules: list[tuple[str, ...]] = [("p", ADMIN_SUBJECT, "*", "*", "*")]
    rules += [("p", USER_SUBJECT, "*", g.resource, g.action) for g in USER_GRANTS]
    rules += [
        ("p", role.subject, "*", grant.resource, grant.action)
        for role, grants in PROJECT_GRANTS.items()
        for grant in grants
    ]
    rules += [
        ("p", role.subject, GLOBAL_DOMAIN, grant.resource, grant.action)
        for role, grants in PLATFORM_ROLE_GRANTS.items()
        for grant in grants
    ]
    rules += [
        ("g", higher.subject, lower.subject, GLOBAL_DOMAIN)
        for lower, higher in pairwise(ROLE_HIERARCHY)
    ]
    return rules


def membership_rule(user_subject: str, role: ProjectRole, project_domain: str) -> tuple[str, ...]:
    return ("g", user_subject, role.subject, project_domain)


def platform_role_rule(user_subject: str, role: PlatformRole) -> tuple[str, ...]:
    """The link that gives a user a platform role. It is made in the platform domain "*",
    which the enforcer matches in every domain; the role's grants are asked only there."""
    return ("g", user_subject, role.subject, GLOBAL_DOMAIN)


def user_subject(user_id: object) -> str:
    return f"user:{user_id}"


def all_grants() -> list[tuple[str, Grant]]:
    """Every grant with the scope it applies in: `platform` or `project`."""
    listed = [("platform", grant) for grant in USER_GRANTS]
    listed += [("project", grant) for role in ROLE_HIERARCHY for grant in PROJECT_GRANTS[role]]
    listed += [("platform", grant) for grants in PLATFORM_ROLE_GRANTS.values() for grant in grants]
    listed += [("platform", grant) for grant in ADMIN_GRANTS]
    return listed


def required_grant_to_manage(*roles: ProjectRole) -> Grant:
    """The grant needed to give, change or take away these roles: owners are managed only by
    owners (and admins), every other role by maintainers too."""
    wanted = "manage-owners" if ProjectRole.OWNER in roles else "manage"
    return next(g for _, g in all_grants() if g.resource == "member" and g.action == wanted)


_EFFECTS = {(grant.resource, grant.action): grant.effect for _, grant in all_grants()}


def allowed_in_archived_project(resource: str, action: str) -> bool:
    """Whether `action` on `resource` may still be done in an archived project. An action no
    grant declares counts as a change: refused, as everything not granted is."""
    return _EFFECTS.get((resource, action), Effect.CHANGES) is not Effect.CHANGES
