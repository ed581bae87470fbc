"""`aiaas predict FILE --project P --deployment D -o OUT`: a CSV or Parquet file scored by a
deployment, written beside its rows.

A small file goes through the deployment's V2 endpoint (`Deployment.predict`: concurrent
requests of at most its batch size). A file past `--batch-above` megabytes is scored by a batch
job instead: uploaded as a version of a dataset, scored in a worker with no HTTP on the way, and
the scored version downloaded. Both paths write the same columns: the input's, then one
`predicted_<output>` per output of the model, a vector output as `predicted_<output>_<i>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aiaas.cli.common import fail
from aiaas.cli.user_common import EXIT_USAGE, connect, json_option, project_option, user_command
from aiaas.client import Client
from aiaas.client.deployments import Deployment
from aiaas.client.downloads import download_version, parquet_to_csv, replacing
from aiaas.client.uploads import format_of

if TYPE_CHECKING:
    import pyarrow

DEFAULT_BATCH_ABOVE_MB = 16.0
"""Files larger than this are scored by a batch job: past it, uploading once and scoring in a
worker beats tens of thousands of rows sent as V2 requests and answered back."""
_OUTPUT_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _output_format(output: Path) -> str:
    found = _OUTPUT_SUFFIXES.get(output.suffix.lower())
    if found is None:
        fail(f"-o {output}: name a .csv or .parquet file", EXIT_USAGE)
    return found


def _read_table(file: Path) -> pyarrow.Table:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    return pq.read_table(file) if format_of(file) == "parquet" else pa_csv.read_csv(file)


def _prediction_columns(predictions: Any) -> dict[str, Any]:
    """The DataFrame `predict` answers as flat columns, named as a batch job names them."""
    import numpy as np

    columns: dict[str, Any] = {}
    for name in predictions.columns:
        values = predictions[name].to_numpy()
        if len(values) and isinstance(values[0], np.ndarray | list):
            matrix = np.stack([np.asarray(value) for value in values])
            for index in range(matrix.shape[1]):
                columns[f"predicted_{name}_{index}"] = matrix[:, index]
        else:
            columns[f"predicted_{name}"] = values
    return columns


def _write(table: pyarrow.Table, output: Path, output_format: str) -> None:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    with replacing(output) as temporary:
        if output_format == "csv":
            pa_csv.write_csv(table, temporary)
        else:
            pq.write_table(table, temporary)


def _online(deployment: Deployment, file: Path, output: Path, output_format: str) -> int:
    import pyarrow as pa

    table = _read_table(file)
    predictions = deployment.predict(table)
    for name, values in _prediction_columns(predictions).items():
        table = table.append_column(name, pa.array(values))
    _write(table, output, output_format)
    return int(table.num_rows)


def _batch(
    client: Client,
    deployment: Deployment,
    project: str,
    file: Path,
    dataset: str,
    output: Path,
    output_format: str,
    progress: bool | None,
) -> int:
    version = client.project_handle(project).upload(file, dataset, progress=progress)
    scored = deployment.batch_predict(version).wait(progress=progress).output
    assert scored is not None  # a SUCCEEDED batch job has made its version
    if output_format == "parquet":
        download_version(client, project, scored.dataset_name, scored.number, output)
    else:
        staged = output.with_name(f".{output.name}.parquet")
        try:
            download_version(client, project, scored.dataset_name, scored.number, staged)
            parquet_to_csv(staged, output)
        finally:
            staged.unlink(missing_ok=True)
    return int(scored.row_count)


@click.command("predict")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@click.option("-d", "--deployment", "deployment_name", required=True, help="The deployment.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the rows and their predictions: a .csv or .parquet file.",
)
@click.option(
    "--batch-above",
    type=click.FloatRange(min=0),
    default=DEFAULT_BATCH_ABOVE_MB,
    show_default=True,
    help="Megabytes past which FILE is scored by a batch job in a worker.",
)
@click.option(
    "--dataset",
    help="With a batch job: the dataset FILE is uploaded into (default: <deployment>-inputs).",
)
@json_option
@user_command
def predict(
    file: Path,
    project: str,
    deployment_name: str,
    output: Path,
    batch_above: float,
    dataset: str | None,
    as_json: bool,
) -> None:
    """Score FILE (CSV or Parquet) with a deployment; write its rows and their predictions."""
    output_format = _output_format(output)
    format_of(file)  # neither CSV nor Parquet: refused before anything is sent
    batched = file.stat().st_size > batch_above * 1_000_000
    progress = False if as_json else None
    with connect() as client:
        deployment = client.project_handle(project).deployment(deployment_name)
        if batched:
            inputs = dataset or f"{deployment_name}-inputs"
            rows = _batch(
                client, deployment, project, file, inputs, output, output_format, progress
            )
        else:
            rows = _online(deployment, file, output, output_format)
    summary = {"rows": rows, "output": str(output), "path": "batch job" if batched else "online"}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{rows} rows scored ({summary['path']}) into {output}", err=True)
