"""What the platform is made of, printed: the GraphQL schema (`aiaas export-schema`), the
access-control page (`aiaas export-access-control`), the error codes (`aiaas export-error-codes`),
the reference of expectations, cleaning steps and gates (`aiaas export-reference`) and the
plugins (`aiaas plugins`).

The schema and the pages are those of the built-in plugins alone, whatever is installed, so that
the committed `schema.graphql` and `docs/*.md` can be checked against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aiaas.cli.common import current_config, reports_errors
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.registry import load_registries

if TYPE_CHECKING:
    import strawberry


def builtin_schema() -> strawberry.Schema:
    """The GraphQL schema of a platform with the built-in plugins only."""
    from aiaas.core.bootstrap import create_platform
    from aiaas.core.config import build_config
    from aiaas.graphql.schema import build_schema

    return build_schema(create_platform(build_config({"disable_plugin_autoload": True})))


def builtin_schema_sdl() -> str:
    return str(builtin_schema().as_str()) + "\n"


output_option = click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write it to this file instead of standard output.",
)


def write_page(page: str, output: Path | None) -> None:
    """What each `export-*` command prints: to standard output, or to `--output`."""
    if output is None:
        click.echo(page, nl=False)
    else:
        output.write_text(page, encoding="utf-8")


@click.command("export-schema")
@output_option
def export_schema(output: Path | None) -> None:
    """Print the GraphQL schema (SDL) of the built-in plugins, as schema.graphql holds it."""
    write_page(builtin_schema_sdl(), output)


@click.command("export-access-control")
@output_option
def export_access_control(output: Path | None) -> None:
    """Print docs/access-control.md: the grants of each role and the grant of each field."""
    from aiaas.access_matrix import render_access_control

    page = render_access_control(builtin_schema())
    write_page(page, output)


@click.command("export-error-codes")
@output_option
def export_error_codes(output: Path | None) -> None:
    """Print docs/errors.md: every error code, its HTTP status and what it means."""
    from aiaas.error_reference import render_error_reference

    page = render_error_reference()
    write_page(page, output)


@click.command("export-reference")
@output_option
def export_reference(output: Path | None) -> None:
    """Print docs/reference.md: each expectation kind, cleaning step and promotion gate, with
    its arguments and an example."""
    from aiaas.cli.reference_page import render_reference

    page = render_reference()
    write_page(page, output)


@click.command("export-graphql-reference")
@output_option
def export_graphql_reference(output: Path | None) -> None:
    """Print docs/graphql.md: every query, mutation, subscription and type of the GraphQL
    API, from the schema the server serves."""
    from aiaas.cli.graphql_page import render_graphql_reference

    page = render_graphql_reference(builtin_schema_sdl())
    write_page(page, output)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def plugins(as_json: bool) -> None:
    """List the plugins, their versions and hooks, and any that failed to load."""
    manager = create_plugin_manager(current_config())
    load_registries(manager)  # a hook that raises is reported by this, not hidden
    report = manager.report()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": status.name,
                        "version": status.version,
                        "source": status.source,
                        "state": status.status,
                        "hooks": list(status.hooks),
                        "failures": [
                            {"stage": f.stage, "reason": f.reason} for f in status.failures
                        ],
                    }
                    for status in report
                ],
                indent=2,
            )
        )
        return
    for status in report:
        click.echo(f"{status.name} {status.version} [{status.source}, {status.status}]")
        if status.hooks:
            click.echo(f"    hooks: {', '.join(status.hooks)}")
        for failure in status.failures:
            click.echo(f"    FAILED at {failure.stage}: {failure.reason}")
