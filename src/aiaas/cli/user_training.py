"""`aiaas train`, `aiaas jobs list|show|follow|cancel` and
`aiaas models list|show|export|upload`, through the SDK."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from aiaas.cli.common import fail
from aiaas.cli.user_common import (
    EXIT_REFUSED,
    connect,
    emit,
    emit_record,
    json_option,
    project_option,
    user_command,
)
from aiaas.client.batch import BATCH_PREDICTION_KIND, BatchPredictionJob
from aiaas.client.downloads import download_model_version
from aiaas.client.errors import JobFailedError, NotFoundError
from aiaas.client.generated.jobs import JobQueryNodeJob
from aiaas.client.resources import ProjectModel
from aiaas.client.training import TrainingJob

_JOB_COLUMNS = ("id", "state", "trainer", "target", "model version", "reason")


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`--param k=v`s as hyperparameters: each value JSON where it parses (numbers, booleans,
    lists), else the text itself."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            parameters[key.strip()] = json.loads(text)
        except ValueError:
            parameters[key.strip()] = text
    return parameters


def _job_row(job: TrainingJob) -> tuple[Any, ...]:
    return (job.id, job.state, job.trainer, job.target, job.model_version_id, job.reason)


def _show_job(job: TrainingJob, as_json: bool) -> None:
    emit_record(job, as_json, list(zip(_JOB_COLUMNS, _job_row(job), strict=True)), "training job")


def _follow(job: TrainingJob, as_json: bool) -> None:
    """Follow `job` to its end with a progress bar on stderr, then show it; exit 1 unless it
    SUCCEEDED."""
    try:
        job.wait(progress=True)
    except JobFailedError as exc:
        _show_job(job, as_json)
        fail(str(exc), EXIT_REFUSED)
    _show_job(job, as_json)


@click.command()
@project_option
@click.option("--dataset", "-d", required=True, help="The dataset; its latest version is used.")
@click.option("--trainer", "-t", required=True, help="The trainer, e.g. tabular-classifier.")
@click.option("--target", required=True, help="The column to predict.")
@click.option("--feature", "features", multiple=True, help="A feature column (default: all).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A hyperparameter; VALUE is JSON where it parses (3, 0.1, true), else text.",
)
@click.option("--model-name", help="The model to register into (default: the dataset's name).")
@click.option("--follow", "-f", is_flag=True, help="Follow it to its end with a progress bar.")
@json_option
@user_command
def train(
    project: str,
    dataset: str,
    trainer: str,
    target: str,
    features: tuple[str, ...],
    params: tuple[str, ...],
    model_name: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Queue a training job on the latest version of a dataset; with --follow, exit non-zero
    unless it succeeds."""
    hyperparameters = parse_params(params)
    with connect() as client:
        handle = client.project_handle(project)
        version = handle.latest_version(dataset)
        job = handle.train(
            version,
            trainer=trainer,
            target=target,
            features=list(features) or None,
            model_name=model_name,
            **hyperparameters,
        )
        if follow:
            _follow(job, as_json)
        else:
            _show_job(job, as_json)


@click.group()
def jobs() -> None:
    """Training jobs: list a project's, show, follow or cancel one by its id (cancel also
    takes a batch prediction job's)."""


@jobs.command("list")
@project_option
@json_option
@user_command
def list_jobs(project: str, as_json: bool) -> None:
    """A project's training jobs, newest first."""
    with connect() as client:
        found = client.project_handle(project).training_jobs()
    emit(found, as_json, _JOB_COLUMNS, [_job_row(job) for job in found])


@jobs.command("show")
@click.argument("job_id")
@json_option
@user_command
def show_job(job_id: str, as_json: bool) -> None:
    """Training job JOB_ID as it is now."""
    with connect() as client:
        _show_job(client.training_job(job_id), as_json)


@jobs.command("follow")
@click.argument("job_id")
@json_option
@user_command
def follow_job(job_id: str, as_json: bool) -> None:
    """Follow training job JOB_ID to its end; exit non-zero unless it succeeds."""
    with connect() as client:
        _follow(client.training_job(job_id), as_json)


def _show_batch_job(job: BatchPredictionJob, as_json: bool) -> None:
    fields = [("id", job.id), ("kind", BATCH_PREDICTION_KIND), ("state", job.state)]
    emit_record(job, as_json, [*fields, ("reason", job.reason)], "batch prediction job")


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@user_command
def cancel_job(job_id: str, as_json: bool) -> None:
    """Cancel job JOB_ID, a training or a batch prediction job: at once if queued, at its
    next step (or part) if running."""
    with connect() as client:
        # A batch prediction job's id is a Job's; a training job's reads as a TrainingJob.
        found = client.api.job(id=job_id).node
        if isinstance(found, JobQueryNodeJob) and found.kind == BATCH_PREDICTION_KIND:
            _show_batch_job(BatchPredictionJob.get(client, job_id).cancel(), as_json)
        else:
            _show_job(client.training_job(job_id).cancel(), as_json)


@click.group()
def models() -> None:
    """A project's registered models and their versions."""


def _aliases(model: ProjectModel) -> str:
    return ", ".join(f"{alias.alias}->v{alias.version.number}" for alias in model.aliases)


@models.command("list")
@project_option
@json_option
@user_command
def list_models(project: str, as_json: bool) -> None:
    """A project's models, with their latest version and aliases."""
    with connect() as client:
        found = client.project_handle(project).models()
    rows = [
        (
            model.name,
            len(model.versions.nodes),
            max((version.number for version in model.versions.nodes), default=None),
            _aliases(model),
            model.id,
        )
        for model in found
    ]
    emit(found, as_json, ("name", "versions", "latest", "aliases", "id"), rows)


@models.command("show")
@click.argument("name")
@project_option
@json_option
@user_command
def show_model(name: str, project: str, as_json: bool) -> None:
    """Model NAME's versions: trainer, format, metrics and aliases."""
    with connect() as client:
        found = [model for model in client.project_handle(project).models() if model.name == name]
    if not found:
        raise NotFoundError(f"no model {name!r} in project {project!r}", "NOT_FOUND")
    [model] = found
    rows = [
        (v.number, v.trainer, v.format, v.metrics, ", ".join(v.aliases), v.created_at, v.id)
        for v in model.versions.nodes
    ]
    columns = ("version", "trainer", "format", "metrics", "aliases", "created", "id")
    emit(model, as_json, columns, rows, title=f"model {name}")


@models.command("export")
@click.argument("name")
@project_option
@click.option("--version", "-v", type=click.IntRange(min=1), help="Its version (default: latest).")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["bundle", "onnx"]),
    default="bundle",
    show_default=True,
    help="bundle: a ZIP of the native bundle and its manifest.json; onnx: the ONNX graph.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write.",
)
@json_option
@user_command
def export_model(
    name: str, project: str, version: int | None, export_format: str, output: Path, as_json: bool
) -> None:
    """Export a version of model NAME to the file --output names, written whole or not at all:
    its native bundle with a manifest (a ZIP archive), or its ONNX graph where its format
    converts."""
    with connect() as client:
        if version is None:
            version = client.project_handle(project).model(name).latest_version.number
        download_model_version(client, project, name, version, output, format=export_format)
    written = {
        "project": project,
        "model": name,
        "version": version,
        "format": export_format,
        "path": str(output),
        "bytes": output.stat().st_size,
    }
    emit_record(written, as_json, list(written.items()), f"{project}/{name}")


@models.command("upload")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@click.option(
    "--signature",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='A JSON file of the signature, {"inputs": [...], "outputs": [...]} (default: read '
    "from the graph).",
)
@click.option(
    "--reference",
    metavar="DATASET:VERSION",
    help="A dataset version of the project as its reference data, which drift is measured on.",
)
@json_option
@user_command
def upload_model(
    name: str,
    file: Path,
    project: str,
    signature: Path | None,
    reference: str | None,
    as_json: bool,
) -> None:
    """Upload the ONNX model FILE as the next version of model NAME, ready to deploy."""
    declared = json.loads(signature.read_text(encoding="utf-8")) if signature else None
    with connect() as client:
        version = client.project_handle(project).upload_model(
            file, name, signature=declared, reference=_reference(reference)
        )
    uploaded = {
        "model": name,
        "version": version.number,
        "format": version.format,
        "inputs": [spec["name"] for spec in version.signature["inputs"]],
        "id": version.id,
    }
    emit_record(uploaded, as_json, list(uploaded.items()), f"{project}/{name}")


def _reference(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    dataset, _, number = text.rpartition(":")
    if not dataset or not number.isdigit():
        raise click.BadParameter("DATASET:VERSION, e.g. transactions:3", param_hint="--reference")
    return dataset, int(number)
