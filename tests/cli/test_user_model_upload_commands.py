"""`aiaas models upload` as a real `aiaas` process against a real `aiaas serve` with the trees
extra loaded: an ONNX file becomes the next version of its model, with a signature read from the
graph or from a JSON file; a file the server refuses, or a malformed `--reference`, is one line
with its exit code and registers nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiaas.cli.user_common import EXIT_REFUSED
from aiaas.core.config import Config
from onnx_graphs import linear_graph, signature
from server_watch import Server, served_with_worker
from support import with_trees
from user_cli import Cli, assert_one_line_error, cli_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    return with_trees(config)


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with served_with_worker(config, tmp_path_factory, "upload-cli") as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: Server, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return cli_of(
        server.running.base_url, admin_token, tmp_path_factory.mktemp("upload-cli-config")
    )


@pytest.fixture(scope="module")
def project(cli: Cli) -> str:
    slug = f"upload-{uuid.uuid4().hex[:8]}"
    assert cli("projects", "create", slug).returncode == 0
    return slug


def test_an_onnx_file_uploads_as_the_next_version(cli: Cli, project: str, tmp_path: Path) -> None:
    model = tmp_path / "linear.onnx"
    model.write_bytes(linear_graph())
    first = cli.json("models", "upload", "linear", str(model), "-p", project)
    assert (first["model"], first["version"], first["format"]) == ("linear", 1, "onnx")
    assert first["inputs"] == ["x"]

    declared = tmp_path / "signature.json"
    declared.write_text(signature())
    second = cli.json(
        "models", "upload", "linear", str(model), "-p", project, "--signature", str(declared)
    )
    assert second["version"] == 2
    shown = cli.json("models", "show", "linear", "-p", project)
    assert json.dumps(shown).count('"upload"') >= 2


def test_refusals_are_one_line_and_register_nothing(cli: Cli, project: str, tmp_path: Path) -> None:
    model = tmp_path / "linear.onnx"
    model.write_bytes(linear_graph())
    mismatched = tmp_path / "signature.json"
    mismatched.write_text(signature(x_dtype="int64"))
    refused = cli(
        "models", "upload", "other", str(model), "-p", project, "--signature", str(mismatched)
    )
    assert "signature does not match the graph" in assert_one_line_error(refused, EXIT_REFUSED)
    not_onnx = tmp_path / "notes.txt"
    not_onnx.write_text("not a model")
    refused = cli("models", "upload", "other", str(not_onnx), "-p", project)
    assert "not a valid ONNX model" in assert_one_line_error(refused, EXIT_REFUSED)
    bad_reference = cli(
        "models", "upload", "other", str(model), "-p", project, "--reference", "wine"
    )
    assert bad_reference.returncode != 0
    assert "DATASET:VERSION" in bad_reference.stderr
    listed = cli.json("models", "list", "-p", project)
    assert "other" not in json.dumps(listed)
