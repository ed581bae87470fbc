"""An example aiaas plugin: the `aiaas example-greet` command and the `exampleGreeting` field.

aiaas registers this module as the plugin `example` (its entry point in the `aiaas` group), so
the hook implementations below are plain module-level functions. The CLI loads every plugin each
time it starts, so this module imports only click and aiaas's hook markers; the strawberry types
live in `aiaas_example_plugin.schema` and are imported only when the GraphQL schema is built.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import GraphQLContribution

__version__ = "0.1.0"


def greeting(name: str) -> str:
    """The one greeting both the CLI command and the GraphQL field give."""
    return f"Hello, {name}, from the aiaas example plugin!"


@click.command("example-greet")
@click.option("--name", default="world", show_default=True, help="Who to greet.")
def example_greet(name: str) -> None:
    """Print a greeting (added by the aiaas-example-plugin package)."""
    click.echo(greeting(name))


@hookimpl
def aiaas_cli_commands() -> Iterable[click.Command]:
    return [example_greet]


@hookimpl
def aiaas_graphql_schema() -> Iterable[GraphQLContribution]:
    from aiaas_example_plugin.schema import ExampleQuery

    return [GraphQLContribution(name="example", query=ExampleQuery)]
