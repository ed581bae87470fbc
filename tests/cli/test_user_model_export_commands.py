"""`aiaas models export` as a real `aiaas` process against a real `aiaas serve` and `aiaas
worker`, with one tiny model trained: its latest version exported as a ZIP of its bundle and
manifest, as a table and as `--json`; and each refusal one line with its exit code and no file
written: a format its model does not convert to, an unknown version or model, a bad option."""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aiaas.core.config import Config
from server_watch import Server, served_with_worker
from user_cli import Cli, assert_one_line_error, cli_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with served_with_worker(config, tmp_path_factory, "export-cli") as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: Server, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return cli_of(
        server.running.base_url, admin_token, tmp_path_factory.mktemp("export-cli-config")
    )


@pytest.fixture(scope="module")
def project(cli: Cli) -> str:
    slug = f"export-{uuid.uuid4().hex[:8]}"
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


def test_the_latest_version_exports_as_a_zip_of_its_bundle_and_manifest(
    cli: Cli, project: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "out" / "wine.zip"
    written = cli.json("models", "export", "wine", "-p", project, "-o", str(target))
    assert (written["model"], written["version"], written["format"]) == ("wine", 1, "bundle")
    assert written["bytes"] == target.stat().st_size
    with zipfile.ZipFile(target) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        bundle = archive.read("bundle.bin")
    assert (manifest["project"], manifest["model"], manifest["version"]) == (project, "wine", 1)
    assert manifest["id"] == trained["model_version_id"]
    assert manifest["bundle"]["sha256"] == hashlib.sha256(bundle).hexdigest()

    as_table = cli(
        "models", "export", "wine", "-p", project, "--version", "1", "--format", "bundle",
        "-o", str(target),
    )  # fmt: skip
    assert as_table.returncode == 0, as_table.stderr
    assert str(target) in as_table.stdout
    assert sorted(path.name for path in target.parent.iterdir()) == ["wine.zip"]


def test_refused_exports_exit_in_one_line_and_write_nothing(
    cli: Cli, project: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    target = str(tmp_path / "wine.onnx")
    as_onnx = cli("models", "export", "wine", "-p", project, "--format", "onnx", "-o", target)
    assert "format=bundle" in assert_one_line_error(as_onnx, 1)
    no_version = cli("models", "export", "wine", "-p", project, "-v", "7", "-o", target)
    assert "no version 7" in assert_one_line_error(no_version, 1)
    no_model = cli("models", "export", "none", "-p", project, "-o", target)
    assert_one_line_error(no_model, 1)
    no_project = cli("models", "export", "wine", "-p", "no-such-project", "-v", "1", "-o", target)
    assert_one_line_error(no_project, 1)
    assert list(tmp_path.iterdir()) == []
    bad_format = cli("models", "export", "wine", "-p", project, "--format", "pkl", "-o", target)
    assert bad_format.returncode == 2
    bad_number = cli("models", "export", "wine", "-p", project, "-v", "0", "-o", target)
    assert bad_number.returncode == 2
