"""`aiaas projects list|create` and `aiaas datasets upload|download`, through the SDK."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from aiaas.cli.user_common import (
    connect,
    emit,
    emit_record,
    json_option,
    project_option,
    user_command,
)
from aiaas.client.downloads import download_version, parquet_to_csv
from aiaas.client.resources import DatasetVersion, Project

_PROJECT_COLUMNS = ("slug", "name", "role", "description", "id")


def _project_row(project: Project) -> tuple[str, ...]:
    return (project.slug, project.name, project.role or "", project.description, project.id)


@click.group()
def projects() -> None:
    """Your projects (AIAAS_URL and AIAAS_TOKEN, else `aiaas login`'s credentials)."""


@projects.command("list")
@json_option
@user_command
def list_projects(as_json: bool) -> None:
    """The projects you are a member of, oldest first."""
    with connect() as client:
        found = client.projects()
    emit(found, as_json, _PROJECT_COLUMNS, [_project_row(project) for project in found])


@projects.command("create")
@click.argument("slug")
@click.option("--name", help="Its display name (the slug when left out).")
@click.option("--description", default="", help="What it is for.")
@json_option
@user_command
def create_project(slug: str, name: str | None, description: str, as_json: bool) -> None:
    """Create project SLUG, owned by you."""
    with connect() as client:
        project = client.create_project(slug, name=name, description=description)
    emit(project, as_json, _PROJECT_COLUMNS, [_project_row(project)])


@click.group()
def datasets() -> None:
    """Datasets of a project: upload a CSV or Parquet file as a new version, download one."""


def version_fields(version: DatasetVersion) -> list[tuple[str, object]]:
    return [
        ("id", version.id),
        ("version", version.number),
        ("created", "yes" if version.created else "no (same content as before)"),
        ("rows", version.row_count),
        ("bytes", version.size_bytes),
        ("format", version.source_format),
        ("columns", ", ".join(f"{c['name']}:{c['type']}" for c in version.columns)),
        ("sha256", version.content_sha256),
    ]


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@click.option("--name", "-n", required=True, help="The dataset (created if there is none).")
@click.option("--description", default="", help="What this version holds.")
@json_option
@user_command
def upload(file: Path, project: str, name: str, description: str, as_json: bool) -> None:
    """Upload FILE (CSV or Parquet) as a new version of dataset NAME, with a progress bar in a
    terminal; content uploaded before answers its existing version."""
    with connect() as client:
        version = client.upload(
            project, name, file, description=description, progress=None if not as_json else False
        )
    emit_record(version, as_json, version_fields(version), f"{project}/{name}")


@datasets.command("download")
@project_option
@click.option("--name", "-n", required=True, help="The dataset.")
@click.option("--version", "-v", type=click.IntRange(min=1), help="Its version (default: latest).")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write: Parquet, or CSV when its name ends in .csv.",
)
@json_option
@user_command
def download(project: str, name: str, version: int | None, output: Path, as_json: bool) -> None:
    """Download a version of dataset NAME to the file --output names (Parquet, or CSV for a
    .csv name), written whole or not at all."""
    with connect() as client:
        if version is None:
            version = client.project_handle(project).latest_version(name).number
        if output.suffix.lower() != ".csv":
            download_version(client, project, name, version, output)
        else:
            with tempfile.TemporaryDirectory(prefix="aiaas-download-") as directory:
                parquet = download_version(
                    client, project, name, version, Path(directory) / "version.parquet"
                )
                parquet_to_csv(parquet, output)
    file_format = "csv" if output.suffix.lower() == ".csv" else "parquet"
    written = {
        "project": project,
        "dataset": name,
        "version": version,
        "format": file_format,
        "path": str(output),
        "bytes": output.stat().st_size,
    }
    emit_record(written, as_json, list(written.items()), f"{project}/{name}")
