"""`aiaas deploy` and `aiaas deployments list|show|delete`, through the SDK.

`deploy` serves a model version under a name: `--version N`, or the version `--alias A` points
at (resolved by the server, which records the alias), or else the model's newest version. It
waits for the deployment to be READY unless `--no-wait`; one that ends FAILED or STOPPED, or is
not READY within `--timeout`, exits 1 with one line that says why.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from aiaas.cli.common import fail
from aiaas.cli.user_common import (
    EXIT_REFUSED,
    connect,
    emit,
    emit_record,
    json_option,
    plain,
    project_option,
    user_command,
)
from aiaas.client import Client
from aiaas.client.deployments import Deployment, DeploymentFailedError
from aiaas.client.errors import NotFoundError, raise_for
from aiaas.client.generated.deployments import DeploymentQueryNodeDeployment
from aiaas.client.generated.schema_types import CreateDeploymentInput

_LIST_COLUMNS = ("name", "state", "model", "stable", "canary", "shadow", "V2 URL")


def _v2_url(client: Client, v2_model_name: str) -> str:
    return f"{client.url}/v2/models/{quote(v2_model_name, safe='')}/infer"


def _version(version: Any, percent: int | None = None) -> str:
    """`v3` (with its share of the traffic when given), or nothing."""
    if version is None:
        return ""
    return f"v{version.number}" + (f" ({percent}%)" if percent is not None else "")


def _live(client: Client, project: str) -> list[Any]:
    """The project's live deployments, newest first, with their models and version numbers."""
    found: list[Any] = []
    after: str | None = None
    while True:
        answer = client.api.project_deployments(slug=project, after=after).project
        if answer is None:
            raise NotFoundError(f"no project {project!r} (or none you may see)", "NOT_FOUND")
        found.extend(answer.deployments.nodes)
        if not answer.deployments.page_info.has_next_page:
            return found
        after = answer.deployments.page_info.end_cursor


def _found(client: Client, project: str, name: str) -> Any:
    """The live deployment `name`, as `_live` reads it."""
    for fields in _live(client, project):
        if fields.name == name:
            return fields
    raise NotFoundError(f"no deployment {name!r} in project {project!r}", "NOT_FOUND")


def _show(client: Client, fields: Any, as_json: bool) -> None:
    traffic = fields.traffic
    url = _v2_url(client, fields.v2_model_name)
    record = [
        ("id", fields.id),
        ("name", fields.name),
        ("model", getattr(getattr(fields, "model", None), "name", "")),
        ("source alias", getattr(fields, "source_alias", None)),
        ("state", fields.state),
        ("reason", fields.reason),
        ("stable", _version(traffic.stable_version, traffic.stable_percent)),
        ("canary", _version(traffic.canary_version, traffic.canary_percent)),
        ("shadow", _version(traffic.shadow_version)),
        ("previous stable", _version(fields.previous_stable_version)),
        ("runtime", fields.runtime),
        ("max batch size", fields.max_batch_size),
        ("generation", fields.generation),
        ("V2 URL", url),
    ]
    emit_record({**plain(fields), "v2_url": url}, as_json, record, f"deployment {fields.name}")


def _create(
    client: Client,
    project: str,
    model: str,
    version: int | None,
    alias: str | None,
    name: str,
    max_batch_size: int | None,
) -> Deployment:
    handle = client.project_handle(project).model(model)
    if alias is None:
        versions = handle.versions  # newest first
        if not versions:
            raise NotFoundError(f"model {model!r} has no version", "NOT_FOUND")
        chosen = versions[0] if version is None else handle.version(version)
        return chosen.deploy(name, max_batch_size=max_batch_size)
    # By alias, the server resolves it as the deployment is made and records it.
    found = client.api.project_model(slug=project, name=model).project
    if found is None or found.model is None:
        raise NotFoundError(f"no model {model!r} in project {project!r}", "NOT_FOUND")
    settings: CreateDeploymentInput = {"name": name, "model": found.model.id, "alias": alias}
    if max_batch_size is not None:
        settings["maxBatchSize"] = max_batch_size
    answer = client.api.create_deployment(input=settings).create_deployment
    return Deployment.of(client, raise_for(answer).deployment)


@click.command()
@project_option
@click.option("--model", "-m", required=True, help="The registered model.")
@click.option("--version", "-v", "version", type=click.IntRange(min=1), help="Its version.")
@click.option("--alias", "-a", help="Deploy the version this alias points at (e.g. production).")
@click.option("--name", "-n", required=True, help="The deployment's name.")
@click.option("--max-batch-size", type=click.IntRange(min=1), help="Rows per batch.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until READY.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds to wait for READY.",
)
@json_option
@user_command
def deploy(
    project: str,
    model: str,
    version: int | None,
    alias: str | None,
    name: str,
    max_batch_size: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Serve a version of MODEL as deployment NAME: --version N, --alias A, or else the newest
    version; wait until it is READY unless --no-wait."""
    if version is not None and alias is not None:
        raise click.UsageError("give --version or --alias, not both")
    with connect() as client:
        created = _create(client, project, model, version, alias, name, max_batch_size)
        if wait:
            try:
                created.wait_ready(timeout=timeout)
            except (DeploymentFailedError, TimeoutError) as exc:
                fail(str(exc), EXIT_REFUSED)
        _show(client, _found(client, project, name), as_json)


@click.group()
def deployments() -> None:
    """A project's deployments: list them, show or stop one."""


@deployments.command("list")
@project_option
@json_option
@user_command
def list_deployments(project: str, as_json: bool) -> None:
    """A project's live deployments, newest first."""
    with connect() as client:
        found = _live(client, project)
        urls = [_v2_url(client, fields.v2_model_name) for fields in found]
    rows = [
        (
            fields.name,
            fields.state,
            fields.model.name,
            _version(fields.traffic.stable_version, fields.traffic.stable_percent),
            _version(fields.traffic.canary_version, fields.traffic.canary_percent),
            _version(fields.traffic.shadow_version),
            url,
        )
        for fields, url in zip(found, urls, strict=True)
    ]
    data = [{**plain(fields), "v2_url": url} for fields, url in zip(found, urls, strict=True)]
    emit(data, as_json, _LIST_COLUMNS, rows)


@deployments.command("show")
@click.argument("name")
@project_option
@json_option
@user_command
def show_deployment(name: str, project: str, as_json: bool) -> None:
    """Deployment NAME: its state, traffic, versions and V2 URL."""
    with connect() as client:
        _show(client, _found(client, project, name), as_json)


@deployments.command("delete")
@click.argument("name")
@project_option
@json_option
@user_command
def delete_deployment(name: str, project: str, as_json: bool) -> None:
    """Stop deployment NAME: it answers what it has queued, then nothing more."""
    with connect() as client:
        stopped = client.project_handle(project).deployment(name).delete()
        node = client.api.deployment(id=stopped.id).node
        if not isinstance(node, DeploymentQueryNodeDeployment):
            raise NotFoundError(f"deployment {name!r} is gone", "NOT_FOUND")
        _show(client, node, as_json)
