"""Identity: who the callers are, and what they may do in which project.

The domain owns the tables `users`, `api_tokens`, `projects` and `project_members`; nothing
outside it queries them. Its modules:

- `access`: the policy as data, the project roles and the grants of each;
- `accounts`: users (argon2id passwords) and API tokens (sha256 hashes);
- `sessions`: signing in with a password, rate limited;
- `projects`: projects, the unit of ownership;
- `members`: who holds which role in a project, and authorizing within a project;
- `platform_roles`: narrow platform-wide roles (`metrics-reader`), kept on `users`.

What is listed in `__all__` here is the surface that plugins build on: the policy an enforcer
loads, and the token check an authenticator makes. Services and interfaces may import the
modules themselves.
"""

from aiaas.core.identity.access import (
    ADMIN_SUBJECT,
    ROLE_HIERARCHY,
    Grant,
    PlatformRole,
    ProjectRole,
    membership_rule,
    platform_role_rule,
    policy_rules,
    user_subject,
)
from aiaas.core.identity.accounts import (
    User,
    looks_like_token,
    token_hash,
    token_prefix,
    verify_token,
    verify_token_lifetime,
)
from aiaas.core.identity.members import Membership, all_memberships, authorize_in_project
from aiaas.core.identity.platform_roles import PlatformRoleHolding, all_platform_roles
from aiaas.core.identity.projects import Project

__all__ = [
    "ADMIN_SUBJECT",
    "ROLE_HIERARCHY",
    "Grant",
    "Membership",
    "PlatformRole",
    "PlatformRoleHolding",
    "Project",
    "ProjectRole",
    "User",
    "all_memberships",
    "all_platform_roles",
    "authorize_in_project",
    "looks_like_token",
    "membership_rule",
    "platform_role_rule",
    "policy_rules",
    "token_hash",
    "token_prefix",
    "user_subject",
    "verify_token",
    "verify_token_lifetime",
]
