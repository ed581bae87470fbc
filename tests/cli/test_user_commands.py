"""The user commands as real `aiaas` processes against a real `aiaas serve` and `aiaas worker`:
`projects list|create`, `datasets upload`, `train --follow`, `jobs list|show|follow|cancel`
(cancel of a training and of a batch prediction job) and `models list|show`, each as a table
and as `--json`; and the exit codes of what is refused (a
refused token, an unreachable URL, an unknown project, a file that is neither CSV nor Parquet,
a bad `--param`, a training job that did not succeed), each one line on stderr."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pandas
import pyarrow as pa
import pytest

from aiaas.client import BatchPredictionJob, Client
from aiaas.client.errors import JobFailedError
from aiaas.core.config import Config
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from aiaas.core.serving.batch_prediction import BatchPredictionRequest, submit_batch_prediction
from aiaas.graphql.relay import from_global_id, to_global_id
from server_watch import served_with_worker
from support import (
    RunningServer,
    free_port,
)
from user_cli import Cli, assert_one_line_error, cli_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with served_with_worker(config, tmp_path_factory, "user-cli") as served:
        yield served.running


@pytest.fixture(scope="module")
def cli(server: RunningServer, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return cli_of(server.base_url, admin_token, tmp_path_factory.mktemp("user-cli-config"))


@pytest.fixture(scope="module")
def project(cli: Cli) -> str:
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    result = cli("projects", "create", slug, "--name", "CLI project")
    assert result.returncode == 0, result.stderr
    assert slug in result.stdout and "CLI project" in result.stdout
    return slug


def test_projects_are_created_and_listed_as_a_table_and_as_json(cli: Cli, project: str) -> None:
    table = cli("projects", "list")
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if project in line]
    assert "CLI project" in row and "OWNER" in row
    listed = {found["slug"]: found for found in cli.json("projects", "list")}
    assert listed[project]["name"] == "CLI project"
    assert listed[project]["role"] == "OWNER"
    taken = cli("projects", "create", project)
    assert "already exists" in assert_one_line_error(taken, 1)


def test_a_refused_token_or_an_unreachable_url_exits_3_in_one_line(cli: Cli) -> None:
    refused = cli.with_(AIAAS_TOKEN="aiaas_not-a-token")("projects", "list")
    assert_one_line_error(refused, 3)
    url = f"http://127.0.0.1:{free_port()}"
    unreachable = cli.with_(AIAAS_URL=url)("projects", "list", "--json")
    assert url in assert_one_line_error(unreachable, 3)
    assert unreachable.stdout == ""
    nothing = cli.with_(AIAAS_URL="", AIAAS_TOKEN="")("jobs", "list", "--project", "p")
    assert "aiaas login" in assert_one_line_error(nothing, 3)


def test_a_csv_file_is_uploaded_once_as_a_version(
    cli: Cli, project: str, wine_csv: Path, uploaded: dict[str, Any]
) -> None:
    assert (uploaded["row_count"], uploaded["number"], uploaded["created"]) == (178, 1, True)
    assert uploaded["source_format"] == "csv"
    again = cli("datasets", "upload", str(wine_csv), "--project", project, "--name", "wine")
    assert again.returncode == 0, again.stderr
    assert uploaded["id"] in again.stdout
    assert "same content as before" in again.stdout


def test_refused_uploads_exit_with_their_codes(cli: Cli, project: str, tmp_path: Path) -> None:
    not_tabular = tmp_path / "notes.bin"
    not_tabular.write_bytes(b"\x00\x01\x02 neither CSV nor Parquet \xff\xfe")
    refused = cli("datasets", "upload", str(not_tabular), "--project", project, "--name", "x")
    assert_one_line_error(refused, 2)
    csv = tmp_path / "small.csv"
    csv.write_text("a,b\n1,2\n")
    unknown = cli("datasets", "upload", str(csv), "--project", "no-such-project", "--name", "x")
    assert_one_line_error(unknown, 1)
    missing = cli("datasets", "upload", str(tmp_path / "absent.csv"), "-p", project, "-n", "x")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr


def test_a_tiny_training_is_followed_to_its_model(
    cli: Cli, project: str, uploaded: dict[str, Any]
) -> None:
    result = cli(
        "train",
        *("--project", project, "--dataset", "wine"),
        *("--trainer", "tabular-classifier", "--target", "label"),
        *("--param", "epochs=1", "--param", "batch_size=64", "--follow", "--json"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "SUCCEEDED"
    assert job["model_version_id"]
    assert "training tabular-classifier" in result.stderr  # the progress bar

    listed = cli.json("jobs", "list", "--project", project)
    assert job["id"] in [found["id"] for found in listed]
    table = cli("jobs", "list", "--project", project)
    [row] = [line for line in table.stdout.splitlines() if job["id"] in line]
    assert "SUCCEEDED" in row and "tabular-classifier" in row
    shown = cli.json("jobs", "show", job["id"])
    assert (shown["state"], shown["target"]) == ("SUCCEEDED", "label")
    assert "SUCCEEDED" in cli("jobs", "show", job["id"]).stdout
    finished = cli("jobs", "cancel", job["id"])
    assert_one_line_error(finished, 1)  # a finished job cannot be cancelled

    [model] = cli.json("models", "list", "--project", project)
    [version] = model["versions"]["nodes"]
    assert version["id"] == job["model_version_id"]
    assert version["trainer"] == "tabular-classifier"
    assert model["name"] in cli("models", "list", "--project", project).stdout
    shown_model = cli.json("models", "show", model["name"], "--project", project)
    assert shown_model["id"] == model["id"]
    assert "tabular-classifier" in cli("models", "show", model["name"], "-p", project).stdout
    assert_one_line_error(cli("models", "show", "no-such-model", "-p", project), 1)


def test_a_cancelled_job_is_followed_to_a_non_zero_exit(
    cli: Cli, project: str, uploaded: dict[str, Any]
) -> None:
    queued = cli.json(
        "train",
        *("--project", project, "--dataset", "wine"),
        *("--trainer", "tabular-classifier", "--target", "label"),
        # No early stopping: the job must still be running when it is cancelled.
        *("--param", "epochs=500", "--param", "batch_size=8", "--param", "patience=0"),
    )
    assert queued["state"] in ("QUEUED", "RUNNING")
    cancelled = cli("jobs", "cancel", queued["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    followed = cli("jobs", "follow", queued["id"], "--json", timeout=600)
    assert followed.returncode == 1, followed.stderr
    assert "Traceback" not in followed.stderr
    # The progress bar goes to stderr too; the last line says why the exit is not 0.
    last = followed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training job") and "CANCELLED" in last
    assert json.loads(followed.stdout)["state"] == "CANCELLED"


def test_params_are_json_where_they_parse_and_bad_requests_are_refused(
    cli: Cli, project: str, uploaded: dict[str, Any]
) -> None:
    training = ("train", "-p", project, "-d", "wine", "-t", "tabular-classifier")
    as_text = cli(*training, "--target", "label", "--param", "epochs=many")
    assert "epochs" in assert_one_line_error(as_text, 1)
    no_target = cli(*training, "--target", "nope", "--param", "epochs=1")
    assert "target: no column 'nope'" in assert_one_line_error(no_target, 1)
    not_a_pair = cli(*training, "--target", "label", "--param", "epochs")
    assert not_a_pair.returncode == 2
    assert "KEY=VALUE" in not_a_pair.stderr
    assert_one_line_error(cli("jobs", "list", "--project", "no-such-project"), 1)
    assert_one_line_error(cli("train", "-p", project, "-d", "none", "-t", "x", "--target", "y"), 1)


async def test_a_batch_prediction_job_is_cancelled_by_its_kind(
    cli: Cli,
    server: RunningServer,
    platform: Platform,
    admin_token: str,
    project: str,
    wine_csv: Path,
    uploaded: dict[str, Any],
) -> None:
    trained = cli.json(
        "train",
        *("--project", project, "--dataset", "wine", "--model-name", "wine-batch"),
        *("--trainer", "tabular-classifier", "--target", "label"),
        *("--param", "epochs=1", "--follow"),
        timeout=600,
    )
    frame = pandas.read_csv(wine_csv)
    with Client(server.base_url, admin_token) as client:
        many = client.project(project).upload(
            pa.concat_tables([pa.Table.from_pandas(frame)] * 100), name="wine-many", progress=False
        )
        async with platform.metadata.acquire() as connection:
            admin = await verify_token(connection, admin_token, "test")
        # Parts of one row each, of 17,800 rows: still running well after `aiaas` starts.
        queued = await submit_batch_prediction(
            platform,
            admin,
            BatchPredictionRequest(
                dataset_version_id=from_global_id(many.id)[1],
                model_version_id=from_global_id(trained["model_version_id"])[1],
                batch_rows=1,
            ),
        )
        job_id = to_global_id("Job", queued.id)
        cancelled = cli.json("jobs", "cancel", job_id)
        assert cancelled["id"] == job_id
        assert cancelled["state"] in ("CANCELLED", "RUNNING")  # RUNNING: it stops at a part
        job = BatchPredictionJob.get(client, job_id)
        with pytest.raises(JobFailedError):
            job.wait(progress=False, timeout=120)
        assert job.state.value == "CANCELLED"
    again = cli("jobs", "cancel", job_id)
    assert "CANCELLED already" in assert_one_line_error(again, 1)
    table = cli("jobs", "cancel", trained["id"])  # a training job's id: cancelled as one
    assert "SUCCEEDED already" in assert_one_line_error(table, 1)
