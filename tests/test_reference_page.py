"""docs/reference.md: generated from the code, current, and every example on it works.

The page lists each expectation kind, cleaning step and promotion gate with its arguments and an
example. One test fails while the committed page differs from what `aiaas export-reference`
prints. The others read the examples from the committed page itself and send them through the
GraphQL API, on the dataset the page shows: the expectations are set and then checked on the
version by the real validators, each step makes a version, each gate is set on a model. So no
example can rot, and a kind without one cannot hide.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from aiaas.cli import cli
from aiaas.cli.reference_page import (
    EXAMPLE_CSV,
    EXPECTATIONS,
    GATES,
    STEPS,
    builtin_shapes,
    render_reference,
)
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.core.data import datasets, read_version_table, validators_by_kind
from aiaas.core.data.expectations import check_table
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import DEFAULT_GATE_ALIASES, gate_validators
from aiaas.graphql.relay import to_global_id
from serving_support import register_bytes_as_version, upload, wine_table
from support import Team, data_of, graphql, new_team

PAGE = Path(__file__).parents[1] / "docs" / "reference.md"


def examples(section: str) -> list[dict[str, Any]]:
    """The JSON examples under the page's `## section` heading, as the page shows them."""
    found, current, block = [], "", None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line.removeprefix("## ")
        elif line == "```json" and current == section:
            block = []
        elif line == "```" and block is not None:
            found.append(json.loads("\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
    return found


# The page itself ------------------------------------------------------------------------------


def test_the_reference_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == render_reference(), (
        f"{PAGE.name} is stale: run `aiaas export-reference --output docs/reference.md`"
    )


def test_the_command_prints_the_page(tmp_path: Path) -> None:
    printed = CliRunner().invoke(cli, ["export-reference"])
    written = CliRunner().invoke(cli, ["export-reference", "--output", str(tmp_path / "r.md")])

    assert printed.exit_code == 0, printed.output
    assert written.exit_code == 0, written.output
    assert printed.output == render_reference()
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == render_reference()


@pytest.mark.parametrize("section", [EXPECTATIONS, STEPS, GATES])
def test_every_kind_has_a_section_and_an_example_of_its_own(section: str) -> None:
    shapes = builtin_shapes()[section]
    page = PAGE.read_text(encoding="utf-8")

    shown = {example["kind"].lower() for example in examples(section)}

    assert shown == {shape.kind for shape in shapes}
    for shape in shapes:
        assert f"### `{shape.kind}`" in page
        assert shape.example["kind"] == shape.kind
        assert set(shape.example) <= {"kind", *(a.name for a in shape.arguments)}, shape.kind


def test_every_kind_a_built_in_validator_claims_has_a_shape() -> None:
    offline_platform = create_platform(build_config({"disable_plugin_autoload": True}))
    shapes = builtin_shapes()

    assert {shape.kind for shape in shapes[EXPECTATIONS]} == set(
        validators_by_kind(offline_platform)
    )
    assert {shape.kind for shape in shapes[GATES]} == set(gate_validators(offline_platform))


# The examples, through the API ----------------------------------------------------------------

SET_EXPECTATIONS = """
mutation($dataset: ID!, $expectations: JSON!) {
  setDatasetExpectations(dataset: $dataset, expectations: $expectations) {
    __typename
    ... on SetDatasetExpectationsSuccess { dataset { expectations } }
    ... on InvalidInputError { message }
  }
}
"""
TRANSFORM = """
mutation($input: TransformDatasetVersionInput!) {
  transformDatasetVersion(input: $input) {
    __typename
    ... on DatasetVersionSuccess { version { rowCount transformation } }
    ... on InvalidInputError { message }
  }
}
"""
SET_GATES = """
mutation($model: ID!, $gates: JSON!) {
  setModelPromotionGates(model: $model, gates: $gates) {
    __typename
    ... on SetPromotionGatesSuccess { model { promotionGates } }
    ... on InvalidInputError { message }
  }
}
"""


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, f"reference-{uuid.uuid4().hex[:8]}", ())


@pytest.fixture(scope="module")
async def example_version(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    """The dataset the page's examples refer to, uploaded as the page shows it."""
    source = tmp_path_factory.mktemp("reference") / "customers.csv"
    source.write_text(EXAMPLE_CSV, encoding="utf-8")
    added = await datasets.upload_version(
        platform,
        team.members[ProjectRole.OWNER].principal,
        team.project_id,
        dataset_name="customers",
        source=source,
    )
    return added.version


async def test_the_expectation_examples_are_set_and_checked(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    example_version: datasets.DatasetVersion,
) -> None:
    expectations = examples(EXPECTATIONS)

    result = data_of(
        await graphql(
            client,
            SET_EXPECTATIONS,
            {
                "dataset": to_global_id("Dataset", example_version.dataset_id),
                "expectations": expectations,
            },
            token=team.members[ProjectRole.OWNER].token,
        )
    )["setDatasetExpectations"]
    checks = check_table(
        platform, await read_version_table(platform, example_version), expectations
    )

    assert result["__typename"] == "SetDatasetExpectationsSuccess", result
    assert result["dataset"]["expectations"] == expectations
    checked = [
        check.kind for check in checks if check.kind not in {"empty_cells", "duplicate_rows"}
    ]
    assert sorted(checked) == sorted(example["kind"] for example in expectations)
    assert not [check for check in checks if "no validator" in check.message]


@pytest.mark.parametrize("step", examples(STEPS), ids=lambda step: str(step["kind"]).lower())
async def test_each_step_example_makes_a_version(
    client: httpx.AsyncClient,
    team: Team,
    example_version: datasets.DatasetVersion,
    step: dict[str, Any],
) -> None:
    variables = {
        "input": {"version": to_global_id("DatasetVersion", example_version.id), "steps": [step]}
    }

    result = data_of(
        await graphql(client, TRANSFORM, variables, token=team.members[ProjectRole.OWNER].token)
    )["transformDatasetVersion"]

    assert result["__typename"] == "DatasetVersionSuccess", result
    # The lineage stores the step as the core runs it: the enums in lowercase.
    (stored,) = result["version"]["transformation"]
    assert stored["kind"] == step["kind"].lower()


@pytest.mark.parametrize("gate", examples(GATES), ids=json.dumps)
async def test_each_gate_example_is_set_on_a_model(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    tmp_path: Path,
    gate: dict[str, Any],
) -> None:
    owner = team.members[ProjectRole.OWNER]
    wine = await upload(platform, owner.principal, team.project_id, wine_table(), "wine", tmp_path)
    version = await register_bytes_as_version(
        platform, owner.principal, wine.id, b"not a model", model_name=f"m-{uuid.uuid4().hex[:6]}"
    )

    result = data_of(
        await graphql(
            client,
            SET_GATES,
            {"model": to_global_id("Model", version.model_id), "gates": [gate]},
            token=owner.token,
        )
    )["setModelPromotionGates"]

    assert result["__typename"] == "SetPromotionGatesSuccess", result
    assert result["model"]["promotionGates"] == [gate]


def test_the_page_names_the_default_aliases_of_a_gate() -> None:
    row = next(line for line in PAGE.read_text().splitlines() if line.startswith("| `aliases`"))

    assert f"`{json.dumps(list(DEFAULT_GATE_ALIASES))}`" in row
    assert re.search(r"\| no \|", row)
