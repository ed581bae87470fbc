"""The Casbin model and the built-in policy, as properties over generated requests.

- The model alone, with no policy at all, denies everything: nothing is allowed by default.
- With the built-in policy and any memberships, a project-scoped grant is never allowed in a
  project where the caller has no membership, nor in the platform domain "*" (admins aside).
- Each role holds exactly the grants `aiaas.core.identity.access` gives it and the roles below it.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import casbin
import pytest
from casbin.util import key_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.auth import GLOBAL_DOMAIN, Principal
from aiaas.core.identity.access import (
    ADMIN_GRANTS,
    ADMIN_SUBJECT,
    PROJECT_GRANTS,
    ROLE_HIERARCHY,
    USER_GRANTS,
    USER_SUBJECT,
    ProjectRole,
    all_grants,
    membership_rule,
    policy_rules,
    user_subject,
)
from aiaas.plugins.casbin_policy import MODEL_PATH, CasbinPolicyEnforcer

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
WORLD_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=100)
"""For properties that check every caller, domain and grant of each generated world."""

PROJECT_SCOPED = [grant for scope, grant in all_grants() if scope == "project"]
USER_GRANT_NAMES = {grant.name for grant in USER_GRANTS}
KNOWN_RESOURCES = sorted({grant.resource for _, grant in all_grants()})
KNOWN_ACTIONS = sorted({grant.action for _, grant in all_grants()})
ROLE_SUBJECTS = [role.subject for role in ROLE_HIERARCHY]


def cumulative_grants(role: ProjectRole) -> set[str]:
    """What `aiaas.core.identity.access` says a role holds in its project: its own grants and those
    of every role below it."""
    return {
        grant.name for lower in ROLE_HIERARCHY[: role.rank + 1] for grant in PROJECT_GRANTS[lower]
    }


def model_enforcer(rules: list[tuple[str, ...]]) -> casbin.Enforcer:
    """An enforcer on the plugin's own model file, holding exactly `rules`, with the domain
    matching the plugin sets up."""
    enforcer = casbin.Enforcer(str(MODEL_PATH))
    enforcer.add_named_domain_matching_func("g", key_match)
    for ptype, *values in rules:
        if ptype == "p":
            enforcer.add_named_policy("p", values)
        else:
            enforcer.add_named_grouping_policy("g", values)
    return enforcer


def principal(user_id: uuid.UUID, *, is_admin: bool = False) -> Principal:
    return Principal(
        user_id=user_id, username=f"user-{user_id}", is_admin=is_admin, authenticated_by="test"
    )


# (a) The model with no policy ---------------------------------------------------------------

names = st.text(max_size=20)
subjects = st.one_of(
    st.uuids().map(user_subject),
    st.sampled_from([ADMIN_SUBJECT, USER_SUBJECT, *ROLE_SUBJECTS, "*", ""]),
    names,
)
domains = st.one_of(st.uuids().map(str), st.just(GLOBAL_DOMAIN), names)
resources = st.one_of(st.sampled_from([*KNOWN_RESOURCES, "*"]), names)
actions = st.one_of(st.sampled_from([*KNOWN_ACTIONS, "*"]), names)

EMPTY = model_enforcer([])


def test_the_empty_enforcer_holds_no_policy_and_the_model_is_the_plugins() -> None:
    assert EMPTY.get_policy() == []
    assert EMPTY.get_grouping_policy() == []
    assert MODEL_PATH.name == "casbin_model.conf"
    assert MODEL_PATH.is_file()


def test_control_the_same_construction_with_the_built_in_policy_allows() -> None:
    # If the empty enforcer denied because it was built wrongly, this one would deny too.
    enforcer = model_enforcer(policy_rules())
    member = user_subject(uuid.uuid4())
    project = str(uuid.uuid4())
    enforcer.add_named_grouping_policy("g", [member, ProjectRole.OWNER.subject, project])

    assert enforcer.enforce(user_subject(uuid.uuid4()), GLOBAL_DOMAIN, "viewer", "read")
    assert enforcer.enforce(member, project, "audit", "read")
    assert enforcer.enforce(ADMIN_SUBJECT, project, "anything", "at-all")


@PROPERTY_SETTINGS
@given(subject=subjects, domain=domains, resource=resources, action=actions)
def test_an_empty_policy_denies_every_request(
    subject: str, domain: str, resource: str, action: str
) -> None:
    assert not EMPTY.enforce(subject, domain, resource, action)


# (b) Cross-domain requests with the built-in policy and random memberships ------------------


@dataclass(frozen=True)
class Memberships:
    users: list[uuid.UUID]
    projects: list[uuid.UUID]
    roles: dict[tuple[uuid.UUID, uuid.UUID], ProjectRole]
    """`{(user, project): role}`: one role per user and project, as the database keeps it."""

    def rules(self) -> list[tuple[str, ...]]:
        return [
            membership_rule(user_subject(user), role, str(project))
            for (user, project), role in self.roles.items()
        ]


@st.composite
def memberships(draw: st.DrawFn) -> Memberships:
    users = draw(st.lists(st.uuids(), min_size=1, max_size=5, unique=True))
    projects = draw(st.lists(st.uuids(), min_size=1, max_size=4, unique=True))
    pairs = st.tuples(st.sampled_from(users), st.sampled_from(projects))
    roles = draw(st.dictionaries(pairs, st.sampled_from(ROLE_HIERARCHY), max_size=12))
    return Memberships(users, projects, roles)


@WORLD_SETTINGS
@given(world=memberships(), stranger=st.uuids(), unknown_project=st.uuids())
async def test_a_project_grant_needs_a_membership_in_that_very_project(
    world: Memberships, stranger: uuid.UUID, unknown_project: uuid.UUID
) -> None:
    enforcer = CasbinPolicyEnforcer(extra_rules=world.rules())
    callers = [*world.users, stranger]
    project_domains = [str(project) for project in [*world.projects, unknown_project]]

    for user in callers:
        caller = principal(user)
        for grant in PROJECT_SCOPED:
            # The platform domain is no project: no membership counts in it.
            assert not await enforcer.enforce(
                caller, GLOBAL_DOMAIN, grant.resource, grant.action
            ), (user, grant.name, world.roles)
            for domain in project_domains:
                role = world.roles.get((user, uuid.UUID(domain)))
                allowed = await enforcer.enforce(caller, domain, grant.resource, grant.action)
                # Denied without a membership there, whatever the caller holds elsewhere; with
                # one, exactly what the role holds.
                expected = role is not None and grant.name in cumulative_grants(role)
                assert allowed is expected, (user, domain, grant.name, role, world.roles)


@WORLD_SETTINGS
# Any domain a request can name; an empty one is refused outright, for admins too.
@given(world=memberships(), admin_id=st.uuids(), domain=domains.filter(bool))
async def test_the_admin_subject_is_allowed_every_grant_in_every_domain(
    world: Memberships, admin_id: uuid.UUID, domain: str
) -> None:
    enforcer = CasbinPolicyEnforcer(extra_rules=world.rules())
    admin = principal(admin_id, is_admin=True)

    for _, grant in all_grants():
        assert await enforcer.enforce(admin, domain, grant.resource, grant.action), grant.name


# (c) Each role holds exactly its grants -----------------------------------------------------


async def test_an_empty_request_value_is_refused_even_for_an_admin() -> None:
    enforcer = CasbinPolicyEnforcer()
    admin = principal(uuid.uuid4(), is_admin=True)

    assert await enforcer.enforce(admin, GLOBAL_DOMAIN, "user", "create")
    assert not await enforcer.enforce(admin, "", "user", "create")
    assert not await enforcer.enforce(admin, GLOBAL_DOMAIN, "", "create")
    assert not await enforcer.enforce(admin, GLOBAL_DOMAIN, "user", "")


async def grants_held(enforcer: CasbinPolicyEnforcer, caller: Principal, domain: str) -> set[str]:
    return {
        grant.name
        for _, grant in all_grants()
        if await enforcer.enforce(caller, domain, grant.resource, grant.action)
    }


@pytest.mark.parametrize("role", ROLE_HIERARCHY, ids=lambda role: role.value)
async def test_a_member_holds_exactly_the_grants_of_their_role_and_those_below(
    role: ProjectRole,
) -> None:
    member, project, other_project = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    enforcer = CasbinPolicyEnforcer(
        extra_rules=[membership_rule(user_subject(member), role, str(project))]
    )
    caller = principal(member)

    assert await grants_held(enforcer, caller, str(project)) == (
        cumulative_grants(role) | USER_GRANT_NAMES
    )
    # The role counts only in its own project: elsewhere, only what every signed-in user holds.
    assert await grants_held(enforcer, caller, str(other_project)) == USER_GRANT_NAMES
    assert await grants_held(enforcer, caller, GLOBAL_DOMAIN) == USER_GRANT_NAMES


async def test_each_role_holds_every_grant_of_the_roles_below_it_and_more() -> None:
    project = str(uuid.uuid4())
    callers = {role: principal(uuid.uuid4()) for role in ROLE_HIERARCHY}
    enforcer = CasbinPolicyEnforcer(
        extra_rules=[
            membership_rule(user_subject(caller.user_id), role, project)
            for role, caller in callers.items()
        ]
    )

    held = {role: await grants_held(enforcer, caller, project) for role, caller in callers.items()}

    for lower, higher in itertools.pairwise(ROLE_HIERARCHY):
        assert held[lower] <= held[higher], (lower, higher)
    # Only the owner holds every project grant; no role holds what only admins do.
    assert {grant.name for grant in PROJECT_SCOPED} <= held[ProjectRole.OWNER]
    assert not any(held[role] & {grant.name for grant in ADMIN_GRANTS} for role in ROLE_HIERARCHY)


async def test_a_signed_in_user_with_no_membership_holds_only_the_user_grants() -> None:
    enforcer = CasbinPolicyEnforcer()
    caller = principal(uuid.uuid4())

    assert await grants_held(enforcer, caller, GLOBAL_DOMAIN) == USER_GRANT_NAMES
    assert await grants_held(enforcer, caller, str(uuid.uuid4())) == USER_GRANT_NAMES
    assert not USER_GRANT_NAMES & {grant.name for grant in ADMIN_GRANTS}


@PROPERTY_SETTINGS
@given(
    role=st.sampled_from(ROLE_HIERARCHY),
    resource=resources,
    action=actions,
)
async def test_no_role_holds_anything_beyond_its_grants(
    role: ProjectRole, resource: str, action: str
) -> None:
    member, project = uuid.uuid4(), uuid.uuid4()
    enforcer = CasbinPolicyEnforcer(
        extra_rules=[membership_rule(user_subject(member), role, str(project))]
    )

    allowed = await enforcer.enforce(principal(member), str(project), resource, action)

    held = {
        (grant.resource, grant.action)
        for grant in [*USER_GRANTS, *PROJECT_SCOPED]
        if grant.name in cumulative_grants(role) | USER_GRANT_NAMES
    }
    assert allowed is ((resource, action) in held), (role, resource, action)
