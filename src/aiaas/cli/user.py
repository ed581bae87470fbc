"""`aiaas login` and `aiaas logout`: the credentials the SDK and the user commands use when
AIAAS_URL and AIAAS_TOKEN are not set (`aiaas.client.credentials`, a 0600 file)."""

from __future__ import annotations

import click

from aiaas.cli.user_common import user_command
from aiaas.client import Client
from aiaas.client.credentials import Credentials, credentials_path, forget, store


@click.command()
@click.option("--url", required=True, envvar="AIAAS_URL", help="The server (also AIAAS_URL).")
@click.option(
    "--token",
    prompt="API token",
    hide_input=True,
    envvar="AIAAS_TOKEN",
    help="An API token (also AIAAS_TOKEN; prompted for, unechoed, when neither is given).",
)
@user_command
def login(url: str, token: str) -> None:
    """Check a server URL and API token, then store them for the SDK and the CLI. Exits 3 when
    the server cannot be reached or refuses the token, as the other user commands do."""
    with Client(url, token) as client:
        viewer = client.api.viewer().viewer
        stored = store(Credentials(client.url, token))
    click.echo(f"logged in to {client.url} as {viewer.username}; credentials in {stored}")


@click.command()
def logout() -> None:
    """Remove the stored credentials (the token itself stays valid: revoke it to end it)."""
    if forget():
        click.echo(f"removed {credentials_path()}")
    else:
        click.echo("no stored credentials")
