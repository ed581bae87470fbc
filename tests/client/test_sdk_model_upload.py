"""`Project.upload_model` against a real `aiaas serve` with the trees extra loaded: an ONNX file
made elsewhere becomes a model version, with its signature read from the graph or declared,
deployed and answering; a file the server refuses raises `InvalidInputError` naming the field."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from aiaas.client import Client
from aiaas.client.errors import InvalidInputError
from aiaas.core.config import Config
from onnx_graphs import BIAS, WEIGHTS, linear_graph, signature
from support import with_trees

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    return with_trees(config)


@pytest.fixture(scope="module")
def project_slug(client: Client) -> str:
    client.create_project("sdk-model-upload", name="SDK model upload")
    return "sdk-model-upload"


def test_an_onnx_file_uploads_as_a_version_that_deploys_and_answers(
    client: Client, project_slug: str, tmp_path: Path
) -> None:
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_graph())
    version = client.project(project_slug).upload_model(path, "linear", progress=False)
    assert (version.number, version.trainer, version.format) == (1, "upload", "onnx")
    assert version.signature["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 3]}]

    version.deploy("linear").wait_ready()
    rows = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], dtype=np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": rows.ravel().tolist()}
    answer = client.http.post(f"/v2/models/{project_slug}.linear/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    [output] = answer.json()["outputs"]
    expected = np.maximum(rows @ WEIGHTS + BIAS, 0.0)
    np.testing.assert_allclose(np.reshape(output["data"], (2, 2)), expected, atol=1e-5)


def test_a_declared_signature_from_a_file_object_is_kept(client: Client, project_slug: str) -> None:
    declared = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 2]}],
    }
    version = client.project(project_slug).upload_model(
        io.BytesIO(linear_graph()), "declared", signature=declared, progress=False
    )
    assert version.signature == declared


def test_a_signature_that_does_not_match_raises_naming_the_field(
    client: Client, project_slug: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        client.project(project_slug).upload_model(
            io.BytesIO(linear_graph()),
            "mismatched",
            signature=json.loads(signature(x_dtype="int64")),
            progress=False,
        )
    assert "signature" in refused.value.field_errors
