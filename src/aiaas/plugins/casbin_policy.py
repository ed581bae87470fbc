"""The built-in policy enforcer: Casbin RBAC with domains, where a domain is a project.

Subjects are `role:admin` for platform admins and `user:<uuid>` for everyone else. The policy
grants the admin role everything in every domain and grants nothing else, so every other request
is denied until a policy line allows it.
"""

from __future__ import annotations

from pathlib import Path

import casbin

from aiaas.core.auth import GLOBAL_DOMAIN, PolicyEnforcer, Principal
from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl

MODEL_PATH = Path(__file__).with_name("casbin_model.conf")
ADMIN_ROLE = "role:admin"
BUILTIN_POLICY: tuple[tuple[str, str, str, str], ...] = ((ADMIN_ROLE, GLOBAL_DOMAIN, "*", "*"),)


def subject_of(principal: Principal) -> str:
    return ADMIN_ROLE if principal.is_admin else f"user:{principal.user_id}"


class CasbinPolicyEnforcer(PolicyEnforcer):
    def __init__(self) -> None:
        self._enforcer = casbin.Enforcer(str(MODEL_PATH))
        for rule in BUILTIN_POLICY:
            self._enforcer.add_policy(*rule)

    async def enforce(self, principal: Principal, domain: str, resource: str, action: str) -> bool:
        return bool(self._enforcer.enforce(subject_of(principal), domain, resource, action))


@hookimpl(trylast=True)
def aiaas_policy_enforcer(config: Config) -> PolicyEnforcer | None:
    del config
    return CasbinPolicyEnforcer()
