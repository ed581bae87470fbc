"""The `aiaas` command: its root group, with the built-in commands and those plugins add.

Each group of commands has its module:

- `processes`: `dev`, `serve` and `worker`, the long-running processes;
- `database`: `db`, the schema and its migrations;
- `identity`: `users` and `tokens`, straight in the database;
- `maintenance`: `keys`, `gc` and `backup`;
- `audit`: `audit verify`, the audit trail's hash chains;
- `inspection`: `export-schema`, `export-access-control`, `export-error-codes`,
  `export-reference`, `export-graphql-reference` and `plugins`;
- `user`: `login` and `logout`, the credentials of the SDK (`aiaas.client`);
- `user_projects`, `user_training` and `user_deploy`: `projects`, `datasets`, `train`, `jobs`,
  `models`, `deploy` and `deployments`, the user commands, through the SDK (`user_common`: their
  exit codes and output);
- `user_predict`: `predict`, a file scored by a deployment, online or by a batch job;
- `user_sweeps`: `sweep create` and `sweeps`, hyperparameter sweeps;
- `common`: what they share (error reporting, the configuration, an operator's platform).
"""

from __future__ import annotations

from pathlib import Path

import click

from aiaas import __version__
from aiaas.cli import (
    audit,
    database,
    identity,
    inspection,
    maintenance,
    processes,
    user,
    user_deploy,
    user_predict,
    user_projects,
    user_sweeps,
    user_training,
)
from aiaas.core.config import load_config
from aiaas.core.errors import ConfigError
from aiaas.core.plugins import create_plugin_manager

__all__ = ["AiaasGroup", "cli", "main"]


class AiaasGroup(click.Group):
    """The built-in commands, plus those plugins add through `aiaas_cli_commands`."""

    def _plugin_commands(self, context: click.Context) -> dict[str, click.Command]:
        cached: dict[str, click.Command] | None = context.meta.get("aiaas.plugin_commands")
        if cached is not None:
            return cached
        commands: dict[str, click.Command] = {}
        try:
            config = load_config(config_file=context.params.get("config_file"))
        except ConfigError:
            config = None  # the command that runs will report it
        if config is not None:
            manager = create_plugin_manager(config)
            for plugin_name, result in manager.call_each("aiaas_cli_commands"):
                for command in result or ():
                    if command.name in self.commands or command.name in commands:
                        manager.record_failure(
                            plugin_name,
                            "hook aiaas_cli_commands",
                            f"command {command.name!r} already exists",
                        )
                        continue
                    commands[str(command.name)] = command
        context.meta["aiaas.plugin_commands"] = commands
        return commands

    def list_commands(self, context: click.Context) -> list[str]:
        return [*super().list_commands(context), *sorted(self._plugin_commands(context))]

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        return super().get_command(context, name) or self._plugin_commands(context).get(name)


@click.group(cls=AiaasGroup)
@click.version_option(__version__, prog_name="aiaas")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML config file (also AIAAS_CONFIG_FILE).",
)
def cli(config_file: Path | None) -> None:
    """aiaas: datasets, training jobs, a model registry and serving behind one GraphQL API."""


for _command in (
    processes.dev,
    processes.serve,
    processes.worker,
    database.db,
    identity.users,
    identity.tokens,
    maintenance.keys,
    maintenance.gc,
    maintenance.backup,
    audit.audit,
    inspection.export_schema,
    inspection.export_access_control,
    inspection.export_error_codes,
    inspection.export_reference,
    inspection.export_graphql_reference,
    inspection.plugins,
    user.login,
    user.logout,
    user_projects.projects,
    user_projects.datasets,
    user_training.train,
    user_training.jobs,
    user_training.models,
    user_sweeps.sweep,
    user_sweeps.sweeps,
    user_deploy.deploy,
    user_deploy.deployments,
    user_predict.predict,
):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="aiaas")
