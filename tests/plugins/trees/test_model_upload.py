"""`POST /v1/projects/{slug}/models/{name}/versions`: an ONNX file made elsewhere becomes a model
version, with its signature read from the graph or declared and checked against it, sealed,
deployable, and served over V2 with the graph's own input and output names. Every refusal is a
typed error that registers nothing, and is audited: a file that is not ONNX, an operator of a
custom domain, external data, a fixed batch dimension, a signature that does not match, reference
data that is missing or lacks the inputs, a project member who may not upload, and a platform
without the runtime that takes uploads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import onnx
import pytest

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets, delete_version
from aiaas.core.errors import ConflictError, InputError
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import model_uploads, models_trained_on
from aiaas.core.training import registry as models
from aiaas.core.training.model_uploads import upload_model_version
from deployment_calls import deploy, drift_report_after
from onnx_graphs import (
    BIAS,
    WEIGHTS,
    adder_graph,
    expanding_graph,
    free_image_graph,
    linear_graph,
    ort_tagged_graph,
    relu_graph,
    signature,
)
from serving_support import upload, wine_table
from support import (
    EVERY_REQUEST_SAMPLED,
    Team,
    audit_mark,
    audit_rows_since,
    data_of,
    graphql,
    new_team,
    with_trees,
)

VERSION_QUERY = """
query($id: ID!) {
  node(id: $id) { ... on ModelVersion { source trainer job { id } datasetVersion { number } } }
}
"""


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """The trees plugin loaded from its entry point, as an operator who installed the extra;
    every request sampled, so that a drift check has enough samples at once."""
    return with_trees(config, **EVERY_REQUEST_SAMPLED)


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "onnx-uploads", (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await upload(
        platform, developer, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("w")
    )


async def post(
    module_client: httpx.AsyncClient,
    team: Team,
    model: str,
    content: bytes,
    *,
    role: ProjectRole = ProjectRole.DEVELOPER,
    **params: str,
) -> httpx.Response:
    return await module_client.post(
        f"/v1/projects/{team.slug}/models/{model}/versions",
        content=content,
        params=params,
        headers={"authorization": f"Bearer {team.token(role)}"},
    )


async def version_count(platform: Platform) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM model_versions")
    return count


async def test_an_uploaded_graph_is_registered_deployed_and_answers_v2_by_its_own_names(
    platform: Platform, module_client: httpx.AsyncClient, team: Team
) -> None:
    mark = await audit_mark(platform)
    response = await post(module_client, team, "linear", linear_graph())
    assert response.status_code == 201, response.text
    created = response.json()["version"]
    assert created["source"] == "UPLOAD" and created["trainer"] == "upload"
    assert created["format"] == "onnx" and created["number"] == 1
    assert created["signature"] == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 2]}],
    }
    [event] = await audit_rows_since(platform, mark, action="model.upload")
    assert event["outcome"] == "success" and event["details"]["job_id"] is None

    node = data_of(
        await graphql(
            module_client,
            VERSION_QUERY,
            {"id": created["id"]},
            token=team.token(ProjectRole.VIEWER),
        )
    )["node"]
    assert node == {"source": "UPLOAD", "trainer": "upload", "job": None, "datasetVersion": None}

    async with platform.metadata.acquire() as connection:
        version = await models.get_model_version(connection, uuid_of(created))
    await deploy(module_client, team, "linear", version)
    rows = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    answered = await module_client.post(
        f"/v2/models/{team.slug}.linear/infer",
        json={
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [3, 3], "data": rows.ravel().tolist()}
            ]
        },
        headers={"authorization": f"Bearer {team.token(ProjectRole.VIEWER)}"},
    )
    assert answered.status_code == 200, answered.text
    [output] = answered.json()["outputs"]
    assert output["name"] == "y" and output["shape"] == [3, 2]
    expected = np.maximum(rows @ WEIGHTS + BIAS, 0.0)
    np.testing.assert_allclose(np.asarray(output["data"]).reshape(3, 2), expected, atol=1e-5)


def uuid_of(version_json: dict[str, Any]) -> Any:
    import uuid

    return uuid.UUID(version_json["uuid"])


async def test_a_declared_signature_that_matches_is_kept(
    module_client: httpx.AsyncClient, team: Team
) -> None:
    response = await post(module_client, team, "declared", linear_graph(), signature=signature())
    assert response.status_code == 201, response.text
    assert response.json()["version"]["signature"] == json.loads(signature())


@pytest.mark.parametrize(
    ("content", "params", "field", "words"),
    [
        (b"not a model at all", {}, "file", "not a valid ONNX model"),
        (linear_graph(domain="com.example.custom"), {}, "file", "com.example.custom"),
        (linear_graph(external=True), {}, "file", "external data"),
        (linear_graph(batch=1), {}, "file", "free batch dimension"),
        (linear_graph(), {"signature": signature(x_dtype="int64")}, "signature", "int64"),
        (linear_graph(), {"signature": signature(x_name="features")}, "signature", "features"),
        (linear_graph(), {"signature": '{"inputs": []}'}, "signature", "outputs"),
        (linear_graph(), {"signature": "{not json"}, "signature", "not JSON"),
        (linear_graph(), {"format": "flax-nnx"}, "format", "no installed serving runtime"),
        (linear_graph(), {"dataset": "wine"}, "datasetVersion", "together"),
        (linear_graph(), {"shape": "1"}, "shape", "unknown query parameter"),
        (relu_graph("x\x00y"), {}, "file", "NUL"),
        (relu_graph(output_shape=[1, 1]), {}, "file", "one row per input row"),
        (expanding_graph(), {}, "file", "fails on a blank batch"),
        (free_image_graph(), {}, "file", "declare a signature with fixed sizes"),
        (
            free_image_graph(),
            {
                "signature": json.dumps(
                    {
                        "inputs": [
                            {"name": "x", "dtype": "float32", "shape": [-1, 1, 65536, 65536]}
                        ],
                        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 1, -1, -1]}],
                    }
                )
            },
            "file",
            "values per row",
        ),
    ],
)
async def test_bad_uploads_are_refused_saying_why_and_register_nothing(
    platform: Platform,
    module_client: httpx.AsyncClient,
    team: Team,
    content: bytes,
    params: dict[str, str],
    field: str,
    words: str,
) -> None:
    before = await version_count(platform)
    mark = await audit_mark(platform)
    response = await post(module_client, team, "refused", content, **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    assert words in error["message"], error
    assert field in error["fieldErrors"], error
    assert await version_count(platform) == before
    [event] = await audit_rows_since(platform, mark, action="model.upload")
    assert event["outcome"] == "failed"


async def test_reference_data_links_the_version_to_a_dataset_that_holds_its_inputs(
    platform: Platform,
    module_client: httpx.AsyncClient,
    team: Team,
    wine: datasets.DatasetVersion,
) -> None:
    graph = adder_graph("alcohol", "malic_acid")
    response = await post(
        module_client, team, "adder", graph, dataset="wine", datasetVersion=str(wine.number)
    )
    assert response.status_code == 201, response.text
    node = data_of(
        await graphql(
            module_client,
            VERSION_QUERY,
            {"id": response.json()["version"]["id"]},
            token=team.token(ProjectRole.VIEWER),
        )
    )["node"]
    assert node["datasetVersion"] == {"number": wine.number}

    before = await version_count(platform)
    lacking = await post(
        module_client,
        team,
        "adder",
        adder_graph("alcohol", "sweetness"),
        dataset="wine",
        datasetVersion=str(wine.number),
    )
    assert lacking.status_code == 400, lacking.text
    assert "sweetness" in lacking.json()["error"]["message"]
    missing = await post(module_client, team, "adder", graph, dataset="wine", datasetVersion="99")
    assert missing.status_code == 404, missing.text
    assert await version_count(platform) == before


async def test_a_viewer_may_not_upload_and_the_refusal_is_audited(
    platform: Platform, module_client: httpx.AsyncClient, team: Team
) -> None:
    before = await version_count(platform)
    mark = await audit_mark(platform)
    response = await post(module_client, team, "viewer", linear_graph(), role=ProjectRole.VIEWER)
    assert response.status_code == 403, response.text
    assert await version_count(platform) == before
    [event] = await audit_rows_since(platform, mark, action="model.upload")
    assert event["outcome"] == "denied"


@pytest.fixture
async def bare(config: Config) -> AsyncIterator[Platform]:
    """The same platform where the trees extra is not installed."""
    platform = create_platform(
        build_config({**config.model_dump(), "disable_plugin_autoload": True, "plugins": None})
    )
    await platform.start(run_startup_hooks=False)
    yield platform
    await platform.stop()


async def test_without_the_extra_an_upload_is_refused_naming_it(
    platform: Platform, bare: Platform, team: Team, tmp_path: Any
) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(linear_graph())
    before = await version_count(platform)
    with pytest.raises(InputError) as refused:
        await upload_model_version(
            bare,
            team.members[ProjectRole.DEVELOPER].principal,
            team.project_id,
            model_name="bare",
            model_format="onnx",
            source=source,
        )
    assert "'trees' extra" in refused.value.message
    assert refused.value.field_errors == {"format": "not uploadable here"}
    assert await version_count(platform) == before


def test_the_graph_the_tests_upload_is_valid_onnx() -> None:
    """The refusals above are of what they change, not of a graph broken to begin with."""
    onnx.checker.check_model(onnx.load_model_from_string(linear_graph()))


@pytest.fixture
async def limited_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose uploads may be at most 64 bytes; same database."""
    limited = create_platform(config.model_copy(update={"upload_max_bytes": 64}))
    await limited.start(run_startup_hooks=False)
    try:
        transport = httpx.ASGITransport(app=create_app(platform=limited))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as small:
            yield small
    finally:
        await limited.stop()


async def test_a_file_above_the_upload_limit_is_413_and_registers_nothing(
    platform: Platform, limited_client: httpx.AsyncClient, team: Team
) -> None:
    before = await version_count(platform)
    mark = await audit_mark(platform)
    response = await post(limited_client, team, "large", linear_graph())
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await version_count(platform) == before
    [event] = await audit_rows_since(platform, mark, action="model.upload")
    assert event["outcome"] == "failed"


async def test_an_upload_with_reference_data_is_checked_for_drift_against_it(
    platform: Platform, module_client: httpx.AsyncClient, team: Team, wine: datasets.DatasetVersion
) -> None:
    created = await post(
        module_client,
        team,
        "drifting",
        adder_graph("alcohol", "malic_acid"),
        dataset="wine",
        datasetVersion=str(wine.number),
    )
    assert created.status_code == 201, created.text
    async with platform.metadata.acquire() as connection:
        version = await models.get_model_version(connection, uuid_of(created.json()["version"]))
    deployment = await deploy(module_client, team, "drifting", version)
    # Requests far outside the wine's alcohol and malic acid: every one drifts.
    rows = [{"alcohol": 40.0 + index, "malic_acid": 30.0} for index in range(60)]
    report = await drift_report_after(module_client, platform, team, deployment["id"], rows)
    assert report["sampleCount"] == len(rows) and report["alert"] is True, report
    assert {feature["feature"] for feature in report["features"]} == {"alcohol", "malic_acid"}


async def test_a_graph_that_onnx_runtime_could_read_as_another_is_kept_as_checked(
    platform: Platform, module_client: httpx.AsyncClient, team: Team
) -> None:
    """Bytes 4 to 8 of ONNX Runtime's own format tag: what is stored and served is the model as
    parsed and checked, written again, not bytes that another reader could see anew."""
    tagged = ort_tagged_graph()
    assert tagged[4:8] == b"ORTM"
    response = await post(module_client, team, "tagged", tagged)
    assert response.status_code == 201, response.text
    exported = await module_client.get(
        f"/v1/projects/{team.slug}/models/tagged/versions/1/export",
        params={"format": "onnx"},
        headers={"authorization": f"Bearer {team.token(ProjectRole.VIEWER)}"},
    )
    assert exported.status_code == 200, exported.text
    graph = onnx.load_model_from_string(exported.content)
    assert exported.content[4:8] != b"ORTM"
    assert [node.op_type for node in graph.graph.node] == ["Relu"]


async def test_a_reference_column_of_another_kind_than_its_input_is_refused(
    platform: Platform, module_client: httpx.AsyncClient, team: Team, wine: datasets.DatasetVersion
) -> None:
    before = await version_count(platform)
    response = await post(
        module_client,
        team,
        "labels",
        adder_graph("alcohol", "cultivar"),  # cultivar is text in the wine
        dataset="wine",
        datasetVersion=str(wine.number),
    )
    assert response.status_code == 400, response.text
    assert "column 'cultivar' is string" in response.json()["error"]["message"]
    assert await version_count(platform) == before


async def test_reference_data_deleted_while_the_upload_is_vetted_refuses_it(
    platform: Platform,
    team: Team,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A deletion committed between the reference's lookup and the version's registration (as
    a concurrent `deleteDatasetVersion` would): the upload is refused, not registered against
    data on its way out."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    doomed = await upload(
        platform, developer, team.project_id, wine_table(), "doomed", tmp_path_factory.mktemp("d")
    )
    looked_up = model_uploads._reference_id

    async def deleted_meanwhile(*args: Any) -> Any:
        found = await looked_up(*args)
        await delete_version(platform, developer, found, models_using=models_trained_on)
        return found

    monkeypatch.setattr(model_uploads, "_reference_id", deleted_meanwhile)
    source = tmp_path / "adder.onnx"
    source.write_bytes(adder_graph("alcohol", "malic_acid"))
    before = await version_count(platform)
    with pytest.raises(ConflictError):
        await model_uploads.upload_model_version(
            platform,
            developer,
            team.project_id,
            model_name="raced",
            model_format="onnx",
            source=source,
            reference=model_uploads.ReferenceData(dataset="doomed", number=doomed.number),
        )
    assert await version_count(platform) == before


async def test_the_latest_version_is_the_highest_number(
    module_client: httpx.AsyncClient, team: Team
) -> None:
    for _ in range(2):
        assert (await post(module_client, team, "twice", linear_graph())).status_code == 201
    query = """
    query($slug: String!) { project(slug: $slug) { model(name: "twice") {
      latestVersion { number } versions(first: 1) { nodes { number } } } } }
    """
    model = data_of(
        await graphql(
            module_client, query, {"slug": team.slug}, token=team.token(ProjectRole.VIEWER)
        )
    )["project"]["model"]
    assert model["latestVersion"] == {"number": 2}
    assert model["versions"]["nodes"] == [{"number": 1}]  # pages run oldest first
