"""Promotion gates as the README, docs/reference.md and the schema say (issue 20): a gate guards
the aliases it lists in `aliases`, `["production"]` when it lists none, and moving an alias that
no gate guards checks nothing. A key a gate does not take is refused, naming the keys it takes,
and every problem is named by its path (`gates.0.aliases`). Through the GraphQL API, on model
versions registered with the metrics each test needs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiaas.cli.inspection import builtin_schema_sdl
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import DEFAULT_GATE_ALIASES
from aiaas.graphql.relay import to_global_id
from serving_support import register_bytes_as_version, upload, wine_table
from support import Team, data_of, graphql, new_team

REPOSITORY = Path(__file__).parents[2]
ALIASES = ("staging", "production", "canary")

SET_GATES = """
mutation($model: ID!, $gates: JSON!) {
  setModelPromotionGates(model: $model, gates: $gates) {
    __typename
    ... on SetPromotionGatesSuccess { model { promotionGates } }
    ... on InvalidInputError { message fieldErrors { field message } }
  }
}
"""
SET_ALIAS = """
mutation($version: ID!, $alias: String!) {
  setModelAlias(input: {version: $version, alias: $alias}) {
    __typename
    ... on ConflictError { message }
  }
}
"""
GATES_OF = """
query($id: ID!) { node(id: $id) { ... on Model { promotionGates } } }
"""


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, f"gates-{uuid.uuid4().hex[:8]}", ())


async def model_version(
    platform: Platform, team: Team, tmp_path: Path, metrics: dict[str, float]
) -> tuple[str, str]:
    """The global ids of a new model and of its one version, which has `metrics`."""
    owner = team.members[ProjectRole.OWNER].principal
    wine = await upload(platform, owner, team.project_id, wine_table(), "wine", tmp_path)
    version = await register_bytes_as_version(
        platform,
        owner,
        wine.id,
        b"weights",
        model_name=f"m-{uuid.uuid4().hex[:8]}",
        metrics=metrics,
    )
    return to_global_id("Model", version.model_id), to_global_id("ModelVersion", version.id)


async def set_gates(
    client: httpx.AsyncClient, team: Team, model: str, gates: Any
) -> dict[str, Any]:
    result: dict[str, Any] = data_of(
        await graphql(
            client,
            SET_GATES,
            {"model": model, "gates": gates},
            token=team.members[ProjectRole.OWNER].token,
        )
    )["setModelPromotionGates"]
    return result


async def move(client: httpx.AsyncClient, team: Team, version: str, alias: str) -> dict[str, Any]:
    result: dict[str, Any] = data_of(
        await graphql(
            client,
            SET_ALIAS,
            {"version": version, "alias": alias},
            token=team.members[ProjectRole.OWNER].token,
        )
    )["setModelAlias"]
    return result


ACCURACY = {"kind": "metric_threshold", "metric": "accuracy", "min": 0.8}


@pytest.mark.parametrize(
    ("aliases", "guarded"),
    [
        (None, set(DEFAULT_GATE_ALIASES)),
        (["staging"], {"staging"}),
        (["staging", "production"], {"staging", "production"}),
        (["canary"], {"canary"}),
    ],
    ids=["default", "staging", "staging-and-production", "any-name"],
)
async def test_a_gate_guards_the_aliases_it_lists_and_no_other(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    tmp_path: Path,
    aliases: list[str] | None,
    guarded: set[str],
) -> None:
    model, version = await model_version(platform, team, tmp_path, {"accuracy": 0.5})
    gate = ACCURACY if aliases is None else {**ACCURACY, "aliases": aliases}
    assert (await set_gates(client, team, model, [gate]))["__typename"] == (
        "SetPromotionGatesSuccess"
    )

    answers = {alias: await move(client, team, version, alias) for alias in ALIASES}

    blocked = {
        alias for alias, answer in answers.items() if answer["__typename"] == "ConflictError"
    }
    assert blocked == guarded, answers
    for alias in blocked:
        assert "accuracy = 0.5 is below the minimum 0.8" in answers[alias]["message"]
    assert all(
        answers[alias]["__typename"] == "SetModelAliasSuccess" for alias in set(ALIASES) - guarded
    )


async def test_a_version_that_passes_moves_every_guarded_alias(
    platform: Platform, client: httpx.AsyncClient, team: Team, tmp_path: Path
) -> None:
    model, version = await model_version(platform, team, tmp_path, {"accuracy": 0.9})
    gates = [ACCURACY, {**ACCURACY, "aliases": ["staging", "canary"]}]
    assert (await set_gates(client, team, model, gates))["__typename"] == "SetPromotionGatesSuccess"

    answers = [await move(client, team, version, alias) for alias in ALIASES]

    assert [answer["__typename"] for answer in answers] == ["SetModelAliasSuccess"] * 3


async def test_a_guessed_key_is_refused_naming_the_keys_a_gate_takes(
    platform: Platform, client: httpx.AsyncClient, team: Team, tmp_path: Path
) -> None:
    model, _ = await model_version(platform, team, tmp_path, {"accuracy": 0.9})

    result = await set_gates(client, team, model, [{**ACCURACY, "alias": "staging"}])

    assert result["__typename"] == "InvalidInputError"
    [error] = result["fieldErrors"]
    assert error["field"] == "gates.0.alias"
    assert "unknown field 'alias' (did you mean 'aliases'?)" in error["message"]
    assert error["message"].endswith("known fields: kind, metric, min, max, aliases")
    assert "gates.0.alias: unknown field 'alias'" in result["message"]
    stored = data_of(
        await graphql(client, GATES_OF, {"id": model}, token=team.members[ProjectRole.OWNER].token)
    )["node"]["promotionGates"]
    assert stored == []


@pytest.mark.parametrize(
    ("gate", "field", "complaint"),
    [
        ({**ACCURACY, "aliases": []}, "gates.0.aliases", "non-empty list of names"),
        ({**ACCURACY, "aliases": "staging"}, "gates.0.aliases", "non-empty list of names"),
        ({**ACCURACY, "aliases": ["Prod"]}, "gates.0.aliases", "'Prod' is not an alias name"),
        ({**ACCURACY, "blocking": False}, "gates.0.blocking", "unknown field 'blocking'"),
        ({"kind": "metric_threshold", "metric": "accuracy"}, "gates.0", "give min, max or both"),
        ({**ACCURACY, "max": 0.1}, "gates.0.min", "min (0.8) is more than max (0.1)"),
        ({**ACCURACY, "min": "high"}, "gates.0.min", "must be a finite number"),
        ({"metric": "accuracy", "min": 0.8}, "gates.0.kind", "required; known kinds:"),
        ({**ACCURACY, "kind": "metric"}, "gates.0.kind", "unknown kind 'metric'"),
        ({**ACCURACY, "metric": ""}, "gates.0.metric", "must be non-empty text"),
    ],
    ids=[
        "no-aliases",
        "aliases-not-a-list",
        "bad-alias-name",
        "blocking",
        "no-bound",
        "min-above-max",
        "min-not-a-number",
        "no-kind",
        "unknown-kind",
        "empty-metric",
    ],
)
async def test_each_problem_is_named_by_its_path(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    tmp_path: Path,
    gate: dict[str, Any],
    field: str,
    complaint: str,
) -> None:
    model, _ = await model_version(platform, team, tmp_path, {"accuracy": 0.9})

    result = await set_gates(client, team, model, [gate])

    assert result["__typename"] == "InvalidInputError"
    assert {error["field"]: error["message"] for error in result["fieldErrors"]}.keys() == {field}
    assert complaint in result["fieldErrors"][0]["message"]


def test_the_schema_states_which_aliases_a_gate_guards_by_default() -> None:
    default = json.dumps(list(DEFAULT_GATE_ALIASES))
    committed = (REPOSITORY / "schema.graphql").read_text(encoding="utf-8")

    for sdl in (builtin_schema_sdl(), committed):
        gates_argument = sdl[sdl.index("setModelPromotionGates(") :].split("): ")[0]
        assert f"a gate that lists none guards {default} only" in gates_argument


def test_the_readme_states_what_a_gate_guards() -> None:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    paragraph = next(part for part in readme.split("\n\n") if "setModelPromotionGates" in part)

    assert "`aliases`" in paragraph
    assert f"`{json.dumps(list(DEFAULT_GATE_ALIASES))}` when it lists none" in paragraph
    assert "docs/reference.md" in paragraph
