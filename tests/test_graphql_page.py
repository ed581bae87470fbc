"""docs/graphql.md is the schema the server serves, rendered: a test fails while the committed
page differs from what `aiaas export-graphql-reference` prints, and the page names every type,
operation and argument of the schema."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from aiaas.cli import cli
from aiaas.cli.graphql_page import render_graphql_reference
from aiaas.cli.inspection import builtin_schema_sdl
from graphql import GraphQLObjectType, build_schema

PAGE = Path(__file__).parents[1] / "docs" / "graphql.md"


def test_the_committed_page_is_what_the_schema_renders_now() -> None:
    assert PAGE.read_text(encoding="utf-8") == render_graphql_reference(builtin_schema_sdl()), (
        f"{PAGE.name} is stale: run `aiaas export-graphql-reference --output docs/graphql.md`"
    )


def test_every_operation_and_named_type_has_its_section() -> None:
    sdl = builtin_schema_sdl()
    page = render_graphql_reference(sdl)
    schema = build_schema(sdl)
    for root in (schema.query_type, schema.mutation_type, schema.subscription_type):
        assert isinstance(root, GraphQLObjectType)
        for name in root.fields:
            assert f"### {name} {{ #{root.name.lower()}-{name.lower()} }}" in page
    unsectioned = {"Query", "Mutation", "Subscription", "String", "Int", "Float", "Boolean", "ID"}
    for name in schema.type_map:
        if not name.startswith("__") and name not in unsectioned:
            assert f"\n### {name}\n" in page, name


def test_a_type_links_to_its_section_and_a_pipe_does_not_break_a_table() -> None:
    widget_field = '"""Either a | b,\n  over two lines."""'
    page = render_graphql_reference(
        f"""
        type Query {{
          "The widgets."
          widgets(first: Int! = 3): [Widget!]!
        }}
        "A widget."
        type Widget {{
          {widget_field}
          size: Int
        }}
        """
    )
    assert "Answers \\[[`Widget`](#widget)!]!." in page
    assert "| `first` | `Int!` | `3` |  |" in page
    assert "| `size` | `Int` | Either a \\| b, over two lines. |" in page
    assert "### Widget\n\nA widget.\n\n| Field | Type | Description |" in page


def test_the_command_prints_or_writes_the_page(tmp_path: Path) -> None:
    printed = CliRunner().invoke(cli, ["export-graphql-reference"])
    written = CliRunner().invoke(
        cli, ["export-graphql-reference", "--output", str(tmp_path / "g.md")]
    )
    assert printed.exit_code == 0 and written.exit_code == 0
    assert printed.output == (tmp_path / "g.md").read_text(encoding="utf-8")
