"""The exported SDL stays current, and no root field goes without a policy."""

from __future__ import annotations

from aiaas.cli.inspection import builtin_schema_sdl
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.graphql.permissions import root_field_policies
from aiaas.graphql.schema import build_schema
from support import REPOSITORY

SCHEMA_FILE = REPOSITORY / "schema.graphql"


def test_schema_graphql_is_the_current_sdl() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == builtin_schema_sdl(), (
        "schema.graphql is stale: run `aiaas export-schema --output schema.graphql`"
    )


def test_every_root_field_declares_a_policy_and_only_health_is_public() -> None:
    schema = build_schema(create_platform(build_config({"disable_plugin_autoload": True})))

    policies = root_field_policies(schema)

    assert all(policy is not None for policy in policies.values())
    public = sorted(name for name, policy in policies.items() if policy and policy.is_public)
    assert public == ["Mutation.login", "Query.health"]
    # The core names frontends depend on (DESIGN.md section 9) that exist so far.
    assert {
        "Query.health",
        "Query.viewer",
        "Query.plugins",
        "Query.projects",
        "Query.project",
        "Query.node",
        "Mutation.createProject",
    } <= set(policies)
