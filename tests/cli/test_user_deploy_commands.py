"""`aiaas datasets download`, `aiaas deploy` and `aiaas deployments list|show|delete` as real
`aiaas` processes against a real `aiaas serve` and `aiaas worker`, with one tiny model trained:
a version downloaded as Parquet and as CSV, a model version deployed by number and by alias,
listed, shown (its V2 URL answering), stopped; and each refusal one line and its exit code, a
deployment that fails to load included."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pandas
import pyarrow.parquet as pq
import pytest

from aiaas.core.config import Config
from aiaas.core.platform import Platform
from server_watch import Server, served_with_worker
from user_cli import Cli, assert_one_line_error, cli_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with served_with_worker(config, tmp_path_factory, "deploy-cli") as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: Server, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return cli_of(
        server.running.base_url, admin_token, tmp_path_factory.mktemp("deploy-cli-config")
    )


@pytest.fixture(scope="module")
def project(cli: Cli) -> str:
    slug = f"deploy-{uuid.uuid4().hex[:8]}"
    assert cli("projects", "create", slug).returncode == 0
    return slug


@pytest.fixture(scope="module")
def trained(cli: Cli, project: str, uploaded: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of model `wine`, one epoch of the wine data."""
    job: dict[str, Any] = cli.json(
        "train",
        *("--project", project, "--dataset", "wine", "--model-name", "wine"),
        *("--trainer", "tabular-classifier", "--target", "label"),
        *("--param", "epochs=1", "--param", "batch_size=64", "--follow"),
        timeout=600,
    )
    assert job["state"] == "SUCCEEDED"
    return job


# Datasets -------------------------------------------------------------------------------------


def test_the_latest_version_downloads_as_parquet_and_a_numbered_one_as_csv(
    cli: Cli, project: str, wine_csv: Path, uploaded: dict[str, Any], tmp_path: Path
) -> None:
    original = pandas.read_csv(wine_csv)
    written = cli.json(
        "datasets", "download", "-p", project, "-n", "wine", "-o", str(tmp_path / "w.parquet")
    )
    assert (written["version"], written["format"]) == (1, "parquet")
    assert written["bytes"] == uploaded["size_bytes"]
    pandas.testing.assert_frame_equal(pq.read_table(tmp_path / "w.parquet").to_pandas(), original)

    as_csv = cli(
        "datasets", "download", "-p", project, "-n", "wine", "--version", "1",
        "-o", str(tmp_path / "out" / "w.csv"),
    )  # fmt: skip
    assert as_csv.returncode == 0, as_csv.stderr
    assert "csv" in as_csv.stdout
    # pyarrow writes 100.0 as 100: read back with the original's types.
    read_back = pandas.read_csv(tmp_path / "out" / "w.csv", dtype=original.dtypes.to_dict())
    pandas.testing.assert_frame_equal(read_back, original)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["w.csv"]


def test_refused_downloads_exit_1_in_one_line_and_write_nothing(
    cli: Cli, project: str, uploaded: dict[str, Any], tmp_path: Path
) -> None:
    target = str(tmp_path / "x.parquet")
    no_version = cli("datasets", "download", "-p", project, "-n", "wine", "-v", "7", "-o", target)
    assert "no version 7" in assert_one_line_error(no_version, 1)
    no_dataset = cli("datasets", "download", "-p", project, "-n", "none", "-o", target)
    assert_one_line_error(no_dataset, 1)
    no_project = cli("datasets", "download", "-p", "no-such-project", "-n", "w", "-o", target)
    assert_one_line_error(no_project, 1)
    assert list(tmp_path.iterdir()) == []
    bad_number = cli("datasets", "download", "-p", project, "-n", "wine", "-v", "0", "-o", target)
    assert bad_number.returncode == 2


# Deployments ------------------------------------------------------------------------------------


def test_a_model_version_is_deployed_listed_shown_and_stopped(
    cli: Cli, project: str, trained: dict[str, Any], admin_token: str
) -> None:
    deployed = cli.json(
        "deploy", "-p", project, "-m", "wine", "--version", "1", "-n", "wine-live",
        "--max-batch-size", "16", timeout=300,
    )  # fmt: skip
    assert (deployed["name"], deployed["state"]) == ("wine-live", "READY")
    assert deployed["max_batch_size"] == 16
    assert deployed["traffic"]["stable_version"]["id"] == trained["model_version_id"]
    url = deployed["v2_url"]
    assert url.endswith(f"/v2/models/{deployed['v2_model_name']}/infer")
    metadata = httpx.get(
        url.removesuffix("/infer"), headers={"authorization": f"Bearer {admin_token}"}
    )
    assert metadata.status_code == 200, metadata.text

    listed = cli.json("deployments", "list", "-p", project)
    assert [found["name"] for found in listed] == ["wine-live"]
    assert listed[0]["v2_url"] == url
    table = cli("deployments", "list", "-p", project)
    [row] = [line for line in table.stdout.splitlines() if "wine-live" in line]
    assert "READY" in row and "v1 (100%)" in row and url in row

    shown = cli("deployments", "show", "wine-live", "-p", project)
    assert shown.returncode == 0, shown.stderr
    assert "READY" in shown.stdout and url in shown.stdout and "v1 (100%)" in shown.stdout
    assert cli.json("deployments", "show", "wine-live", "-p", project)["id"] == deployed["id"]

    stopped = cli.json("deployments", "delete", "wine-live", "-p", project)
    assert stopped["state"] in ("STOPPING", "STOPPED")
    assert cli.json("deployments", "list", "-p", project) == []
    gone = cli("deployments", "show", "wine-live", "-p", project)
    assert "no deployment 'wine-live'" in assert_one_line_error(gone, 1)


def test_a_deployment_by_alias_is_made_without_waiting(
    cli: Cli, project: str, trained: dict[str, Any], server: Server, admin_token: str
) -> None:
    moved = httpx.post(
        f"{server.running.base_url}/graphql",
        json={
            "query": "mutation($input: SetModelAliasInput!) "
            "{ setModelAlias(input: $input) { __typename } }",
            "variables": {"input": {"version": trained["model_version_id"], "alias": "staging"}},
        },
        headers={"authorization": f"Bearer {admin_token}"},
    )
    assert moved.json()["data"]["setModelAlias"]["__typename"] == "SetModelAliasSuccess"
    made = cli.json(
        "deploy", "-p", project, "-m", "wine", "--alias", "staging", "-n", "wine-staging",
        "--no-wait",
    )  # fmt: skip
    assert made["source_alias"] == "staging"
    assert made["traffic"]["stable_version"]["id"] == trained["model_version_id"]
    assert made["state"] in ("CREATING", "WARMING", "READY")
    assert cli("deployments", "delete", "wine-staging", "-p", project).returncode == 0


def test_refused_deployments_exit_in_one_line(
    cli: Cli, project: str, trained: dict[str, Any]
) -> None:
    deploy = ("deploy", "-p", project, "-m", "wine", "-n", "refused")
    no_version = cli(*deploy, "--version", "9")
    assert "no version 9" in assert_one_line_error(no_version, 1)
    no_alias = cli(*deploy, "--alias", "nowhere")
    assert_one_line_error(no_alias, 1)
    no_model = cli("deploy", "-p", project, "-m", "none", "-n", "refused")
    assert_one_line_error(no_model, 1)
    both = cli(*deploy, "--version", "1", "--alias", "staging")
    assert both.returncode == 2
    assert "not both" in both.stderr
    assert_one_line_error(cli("deployments", "list", "-p", "no-such-project"), 1)
    assert_one_line_error(cli("deployments", "delete", "none", "-p", project), 1)


async def test_a_deployment_that_fails_to_load_exits_1_saying_why(
    cli: Cli, project: str, trained: dict[str, Any], server: Server, platform: Platform
) -> None:
    # Last in the module: it damages the model's sealed artifact, which a load then refuses
    # (a batch size not loaded before, so that no cached copy serves instead).
    async with platform.metadata.acquire() as connection:
        key = await connection.fetchval(
            "SELECT v.artifact_key FROM model_versions v JOIN projects p ON p.id = v.project_id "
            "WHERE p.slug = $1",
            project,
        )
    [artifact] = [path for path in server.data_dir.rglob(key) if path.is_file()]
    artifact.chmod(0o600)
    sealed = bytearray(artifact.read_bytes())
    middle = len(sealed) // 2
    sealed[middle : middle + 16] = bytes(b ^ 0xFF for b in sealed[middle : middle + 16])
    artifact.write_bytes(bytes(sealed))

    failed = cli(
        "deploy", "-p", project, "-m", "wine", "-v", "1", "-n", "broken",
        "--max-batch-size", "3", "--json", timeout=300,
    )  # fmt: skip
    line = assert_one_line_error(failed, 1)
    assert "deployment 'broken' is FAILED" in line and "could not be loaded" in line
    assert failed.stdout == ""
