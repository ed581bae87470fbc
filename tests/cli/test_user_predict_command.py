"""`aiaas predict` as a real process against a real `aiaas serve` and `aiaas worker`, with one
tiny model trained and deployed: a CSV scored online, the same file scored by a batch job (past
`--batch-above`) into the same columns and predictions, Parquet in and out; and each refusal one
line with its exit code and no output file: a file that is neither CSV nor Parquet, an output
that is neither, an unknown deployment, rows without the model's feature columns (either path),
a deployment that no longer serves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas
import pytest

from aiaas.client import Client
from aiaas.core.config import Config
from server_watch import Server, served_with_worker
from user_cli import Cli, assert_one_line_error, cli_of, wine_frame

pytestmark = pytest.mark.slow

LABEL_AND_PROBABILITIES = [
    "predicted_label",
    "predicted_probabilities_0",
    "predicted_probabilities_1",
    "predicted_probabilities_2",
]


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with served_with_worker(config, tmp_path_factory, "predict-cli") as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: Server, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return cli_of(
        server.running.base_url, admin_token, tmp_path_factory.mktemp("predict-cli-config")
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predict-cli-files")


@pytest.fixture(scope="module")
def wine(files: Path) -> pandas.DataFrame:
    frame = wine_frame()
    frame.to_csv(files / "wine.csv", index=False)
    return frame


@pytest.fixture(scope="module")
def deployed(cli: Cli, wine: pandas.DataFrame, files: Path) -> dict[str, Any]:
    """Project, deployment `wine-live` of a one-epoch model of the wine data."""
    project = f"predict-{uuid.uuid4().hex[:8]}"
    assert cli("projects", "create", project).returncode == 0
    upload = cli("datasets", "upload", str(files / "wine.csv"), "-p", project, "-n", "wine")
    assert upload.returncode == 0, upload.stderr
    job = cli.json(
        "train",
        *("--project", project, "--dataset", "wine", "--model-name", "wine"),
        *("--trainer", "tabular-classifier", "--target", "label"),
        *("--param", "epochs=1", "--param", "batch_size=64", "--follow"),
        timeout=600,
    )
    assert job["state"] == "SUCCEEDED"
    deployment = cli.json("deploy", "-p", project, "-m", "wine", "-n", "wine-live", timeout=300)
    assert deployment["state"] == "READY"
    return {"project": project, "deployment": "wine-live"}


def _features(wine: pandas.DataFrame) -> pandas.DataFrame:
    return wine.drop(columns=["label"])


def test_a_csv_is_scored_online_beside_its_rows_as_the_sdk_predicts_them(
    cli: Cli,
    server: Server,
    admin_token: str,
    deployed: dict[str, Any],
    wine: pandas.DataFrame,
    files: Path,
    tmp_path: Path,
) -> None:
    _features(wine).to_csv(files / "features.csv", index=False)
    summary = cli.json(
        "predict", str(files / "features.csv"), "-p", deployed["project"],
        "-d", deployed["deployment"], "-o", str(tmp_path / "scored.csv"),
    )  # fmt: skip
    assert summary == {"rows": 178, "output": str(tmp_path / "scored.csv"), "path": "online"}

    scored = pandas.read_csv(tmp_path / "scored.csv")
    assert list(scored.columns) == [*_features(wine).columns, *LABEL_AND_PROBABILITIES]
    np.testing.assert_allclose(scored[_features(wine).columns], _features(wine), rtol=1e-6)
    with Client(server.running.base_url, admin_token) as client:
        deployment = client.project(deployed["project"]).deployment(deployed["deployment"])
        expected = deployment.predict(_features(wine))
    assert scored["predicted_label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(
        scored[LABEL_AND_PROBABILITIES[1:]].to_numpy(),
        np.stack(expected["probabilities"].to_numpy()),
        atol=1e-5,
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scored.csv"]


def test_past_the_size_a_batch_job_scores_the_file_into_the_same_columns(
    cli: Cli, deployed: dict[str, Any], wine: pandas.DataFrame, files: Path, tmp_path: Path
) -> None:
    _features(wine).to_parquet(files / "features.parquet")
    common = ("-p", deployed["project"], "-d", deployed["deployment"])
    online = cli.json(
        "predict", str(files / "features.parquet"), *common, "-o", str(tmp_path / "o.parquet")
    )
    batch = cli.json(
        "predict", str(files / "features.parquet"), *common, "--batch-above", "0",
        "-o", str(tmp_path / "b.parquet"), timeout=600,
    )  # fmt: skip
    assert (online["path"], batch["path"]) == ("online", "batch job")
    assert online["rows"] == batch["rows"] == 178

    by_batch = pandas.read_parquet(tmp_path / "b.parquet")
    by_requests = pandas.read_parquet(tmp_path / "o.parquet")
    assert list(by_batch.columns) == list(by_requests.columns)
    assert by_batch["predicted_label"].tolist() == by_requests["predicted_label"].tolist()
    np.testing.assert_allclose(
        by_batch[LABEL_AND_PROBABILITIES[1:]], by_requests[LABEL_AND_PROBABILITIES[1:]], atol=1e-5
    )
    # The file went in as a version of `<deployment>-inputs`, the scores as its predictions.
    listed = cli("datasets", "download", "-p", deployed["project"], "-n", "wine-live-inputs",
                 "-o", str(tmp_path / "inputs.parquet"))  # fmt: skip
    assert listed.returncode == 0, listed.stderr


def test_refusals_exit_in_one_line_and_write_nothing(
    cli: Cli, deployed: dict[str, Any], wine: pandas.DataFrame, files: Path, tmp_path: Path
) -> None:
    common = ("-p", deployed["project"], "-d", deployed["deployment"])
    output = str(tmp_path / "out.csv")
    (files / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    not_a_table = cli("predict", str(files / "image.png"), *common, "-o", output)
    assert "neither CSV nor Parquet" in assert_one_line_error(not_a_table, 2)
    wine.to_csv(files / "all.csv", index=False)
    bad_output = cli("predict", str(files / "all.csv"), *common, "-o", str(tmp_path / "o.txt"))
    assert ".csv or .parquet" in assert_one_line_error(bad_output, 2)
    unknown = cli("predict", str(files / "all.csv"), "-p", deployed["project"], "-d", "none",
                  "-o", output)  # fmt: skip
    assert "no deployment 'none'" in assert_one_line_error(unknown, 1)

    wine.drop(columns=["f3"]).to_csv(files / "short.csv", index=False)
    online = cli("predict", str(files / "short.csv"), *common, "-o", output)
    assert "f3" in assert_one_line_error(online, 1)
    batch = cli("predict", str(files / "short.csv"), *common, "--batch-above", "0", "-o", output)
    assert "f3" in assert_one_line_error(batch, 1)
    assert list(tmp_path.iterdir()) == []


def test_a_deployment_that_no_longer_serves_is_refused(
    cli: Cli, deployed: dict[str, Any], wine: pandas.DataFrame, files: Path, tmp_path: Path
) -> None:
    project = deployed["project"]
    made = cli.json("deploy", "-p", project, "-m", "wine", "-n", "wine-gone", timeout=300)
    assert made["state"] == "READY"
    assert cli("deployments", "delete", "wine-gone", "-p", project).returncode == 0
    _features(wine).to_csv(files / "gone.csv", index=False)
    gone = cli("predict", str(files / "gone.csv"), "-p", project, "-d", "wine-gone",
               "-o", str(tmp_path / "out.csv"))  # fmt: skip
    assert_one_line_error(gone, 1)
    assert list(tmp_path.iterdir()) == []
