"""`GET /v1/projects/{slug}/models/{name}/versions/{number}/export`: a model version as a ZIP of
its native bundle and a manifest (the default), or as an ONNX graph where its serving runtime
converts it. A Flax version's archive holds the bundle the vault seals, byte for byte, which the
JAX runtime loads; a tree version (the trees extra, allowed in this module's config) exports as
ONNX whose predictions in ONNX Runtime equal its deployment's to 1e-5; a Flax version asked for
as ONNX is a 400. `model:read` lets a viewer export; anyone else is told the project does not
exist. Every export and every refusal is audited as `model.export`; a HEAD answers what the GET
would, without the body, unaudited."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest

from aiaas.core.audit import AuditedChange
from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import archive_project
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from deployment_calls import deploy, gid
from serving_support import train_version, upload, wine_table
from support import Team, audit_mark, audit_rows_since, new_team, unique

ZIP = "application/zip"
TREE_ROUNDS = 5


@pytest.fixture(scope="module")
def config(config: Config) -> Config:
    """The module's config, with the trees extra allowed to load from its entry point: its
    trainers make `onnx` versions and its runtime converts them."""
    return build_config(
        {**config.model_dump(), "disable_plugin_autoload": False, "plugins": ["trees"]}
    )


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, unique("export"), (ProjectRole.VIEWER, ProjectRole.DEVELOPER))


@pytest.fixture(scope="module")
async def outsider(platform: Platform) -> Team:
    """Someone who owns a project of their own, and is no member of `team`'s."""
    return await new_team(platform, unique("elsewhere"), ())


@pytest.fixture(scope="module")
async def wine(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> datasets.DatasetVersion:
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await upload(
        platform, developer, team.project_id, wine_table(), "wine", tmp_path_factory.mktemp("w")
    )


@pytest.fixture(scope="module")
async def flax_version(
    platform: Platform, team: Team, wine: datasets.DatasetVersion
) -> models.ModelVersion:
    """Version 1 of model `wine`: a tiny Flax classifier, trained here."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    return await train_version(platform, developer, wine, target="cultivar", model_name="wine")


@pytest.fixture(scope="module")
async def tree_version(
    platform: Platform, team: Team, wine: datasets.DatasetVersion
) -> models.ModelVersion:
    """Version 1 of model `wine-trees`: an XGBoost classifier of a few rounds, an `onnx`
    version."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    version = await train_version(
        platform,
        developer,
        wine,
        target="cultivar",
        model_name="wine-trees",
        trainer="xgboost-classifier",
        hyperparameters={"n_estimators": TREE_ROUNDS, "learning_rate": 0.3},
    )
    assert version.format == "onnx"
    return version


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def export_url(slug: str, model: str, number: object, export_format: str | None = None) -> str:
    url = f"/v1/projects/{slug}/models/{model}/versions/{number}/export"
    return url if export_format is None else f"{url}?format={export_format}"


async def sealed_bundle(platform: Platform, version: models.ModelVersion) -> bytes:
    """The version's bundle as the vault unseals it for a serving runtime."""
    vault = platform.service(VAULT)
    return b"".join([chunk async for chunk in vault.open(version.project_id, version.artifact_key)])


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def archive_of(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    """The manifest and the bundle of an exported archive, once its members are the two."""
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["manifest.json", "bundle.bin"]
        assert archive.testzip() is None  # every member's CRC holds
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
        return manifest, archive.read("bundle.bin")


async def test_a_flax_version_exports_as_its_bundle_with_a_manifest_and_is_audited(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    wine: datasets.DatasetVersion,
    flax_version: models.ModelVersion,
) -> None:
    mark = await audit_mark(platform)
    response = await client.get(
        export_url(team.slug, "wine", 1, "bundle"), headers=bearer(team.token(ProjectRole.VIEWER))
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ZIP
    assert 'filename="wine-v1.zip"' in response.headers["content-disposition"]
    assert int(response.headers["content-length"]) == len(response.content)
    digest = hashlib.sha256(response.content).hexdigest()
    assert response.headers["x-aiaas-content-sha256"] == digest
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["cache-control"] == "no-store"
    manifest, bundle = archive_of(response)
    assert bundle == await sealed_bundle(platform, flax_version)
    assert manifest["bundle"] == {
        "path": "bundle.bin",
        "sha256": hashlib.sha256(bundle).hexdigest(),
        "sizeBytes": len(bundle),
    }
    assert manifest == {
        "manifestVersion": 1,
        "project": team.slug,
        "model": "wine",
        "version": 1,
        "id": gid("ModelVersion", flax_version.id),
        "uuid": str(flax_version.id),
        "format": "flax-nnx",
        "trainer": "tabular-classifier",
        "signature": flax_version.signature,
        "metrics": flax_version.metrics,
        "hyperparameters": flax_version.hyperparameters,
        "lineage": {
            "source": "TRAINING",
            "jobId": gid("TrainingJob", flax_version.job_id),
            "datasetVersionId": gid("DatasetVersion", wine.id),
        },
        "createdAt": flax_version.created_at.isoformat(),
        "bundle": manifest["bundle"],
    }
    # The bundle is one the JAX runtime loads, with the version's inputs.
    loaded = platform.serving_runtime("jax").load(bundle, max_batch_size=4)
    assert [spec.name for spec in loaded.signature.inputs] == [
        spec["name"] for spec in flax_version.signature["inputs"]
    ]
    [event] = await audit_rows_since(platform, mark, action="model.export")
    assert (event["outcome"], event["object_type"]) == ("success", "model_version")
    assert event["object_id"] == str(flax_version.id)
    assert event["project_id"] == team.project_id
    assert event["actor_id"] == team.members[ProjectRole.VIEWER].principal.user_id
    assert event["details"] == {
        "model": "wine",
        "number": 1,
        "format": "bundle",
        "bytes": len(response.content),
    }


async def test_the_default_format_is_the_bundle_and_a_version_always_exports_the_same_bytes(
    client: httpx.AsyncClient, team: Team, flax_version: models.ModelVersion
) -> None:
    owner = bearer(team.token(ProjectRole.OWNER))
    asked = await client.get(export_url(team.slug, "wine", 1, "bundle"), headers=owner)
    default = await client.get(export_url(team.slug, "wine", 1), headers=owner)
    assert default.status_code == 200, default.text
    assert default.headers["content-type"] == ZIP
    assert default.content == asked.content
    assert default.headers["etag"] == asked.headers["etag"]


async def test_a_tree_version_exports_as_onnx_predicting_as_its_deployment(
    client: httpx.AsyncClient, platform: Platform, team: Team, tree_version: models.ModelVersion
) -> None:
    mark = await audit_mark(platform)
    response = await client.get(
        export_url(team.slug, "wine-trees", 1, "onnx"),
        headers=bearer(team.token(ProjectRole.VIEWER)),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert 'filename="wine-trees-v1.onnx"' in response.headers["content-disposition"]
    assert (
        response.headers["x-aiaas-content-sha256"] == hashlib.sha256(response.content).hexdigest()
    )
    [event] = await audit_rows_since(platform, mark, action="model.export")
    assert event["details"]["format"] == "onnx"
    assert event["details"]["bytes"] == len(response.content)

    # Rows of every class: every third row of the wine.
    features = [spec["name"] for spec in tree_version.signature["inputs"]]
    rows = wine_table().drop_columns(["cultivar"]).take(list(range(0, 178, 3))).to_pylist()
    session = onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    [graph_input] = session.get_inputs()
    matrix = np.asarray([[row[name] for name in features] for row in rows], dtype=np.float32)
    exported = np.asarray(session.run(None, {graph_input.name: matrix})[-1], dtype=np.float32)

    deployment = await deploy(client, team, "wine-trees", tree_version, maxBatchSize=64)
    body = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": [len(rows)], "data": matrix[:, i].tolist()}
            for i, name in enumerate(features)
        ]
    }
    served = await client.post(
        f"/v2/models/{deployment['v2ModelName']}/infer",
        json=body,
        headers=bearer(team.token(ProjectRole.VIEWER)),
    )
    assert served.status_code == 200, served.text
    outputs = {output["name"]: output for output in served.json()["outputs"]}
    probabilities = np.asarray(outputs["probabilities"]["data"]).reshape(len(rows), 3)
    np.testing.assert_allclose(exported, probabilities, atol=1e-5)
    labels = np.asarray(tree_version.metrics["labels"])[exported.argmax(axis=1)]
    assert labels.tolist() == outputs["label"]["data"]
    assert set(labels.tolist()) == {"c0", "c1", "c2"}


async def test_a_tree_version_exports_as_its_bundle_too(
    client: httpx.AsyncClient, platform: Platform, team: Team, tree_version: models.ModelVersion
) -> None:
    response = await client.get(
        export_url(team.slug, "wine-trees", 1), headers=bearer(team.token(ProjectRole.VIEWER))
    )
    assert response.status_code == 200, response.text
    manifest, bundle = archive_of(response)
    assert (manifest["format"], manifest["trainer"]) == ("onnx", "xgboost-classifier")
    assert manifest["hyperparameters"]["n_estimators"] == TREE_ROUNDS
    assert bundle == await sealed_bundle(platform, tree_version)


async def test_a_flax_version_asked_for_as_onnx_is_a_400_naming_the_bundle_and_is_audited(
    client: httpx.AsyncClient, platform: Platform, team: Team, flax_version: models.ModelVersion
) -> None:
    mark = await audit_mark(platform)
    response = await client.get(
        export_url(team.slug, "wine", 1, "onnx"), headers=bearer(team.token(ProjectRole.OWNER))
    )
    error = assert_error(response, 400, "BAD_USER_INPUT")
    assert "flax-nnx" in error["message"] and "format=bundle" in error["message"]
    assert "format" in error["fieldErrors"]
    [event] = await audit_rows_since(platform, mark, action="model.export")
    assert (event["outcome"], event["project_id"]) == ("failed", team.project_id)
    assert event["details"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "query", ["format=pickle", "format=", "format=ONNX", "format=onnx&format=bundle"]
)
async def test_a_format_that_is_neither_is_400_naming_it(
    client: httpx.AsyncClient, team: Team, flax_version: models.ModelVersion, query: str
) -> None:
    response = await client.get(
        f"{export_url(team.slug, 'wine', 1)}?{query}", headers=bearer(team.token(ProjectRole.OWNER))
    )
    error = assert_error(response, 400, "BAD_USER_INPUT")
    assert "format" in error["fieldErrors"]


@pytest.mark.parametrize("number", ["latest", "0", "-1", "1.0", "99999999999", "%D9%A3"])
async def test_a_version_that_is_no_number_is_400_naming_it(
    client: httpx.AsyncClient, team: Team, number: str
) -> None:
    response = await client.get(
        export_url(team.slug, "wine", number), headers=bearer(team.token(ProjectRole.OWNER))
    )
    error = assert_error(response, 400, "BAD_USER_INPUT")
    assert "number" in error["fieldErrors"]


async def test_unknown_projects_models_and_numbers_are_404_and_audited_as_failed(
    client: httpx.AsyncClient, platform: Platform, team: Team, flax_version: models.ModelVersion
) -> None:
    owner = bearer(team.token(ProjectRole.OWNER))
    mark = await audit_mark(platform)
    for url in (
        export_url("no-such-project", "wine", 1),
        export_url(team.slug, "unknown", 1),
        export_url(team.slug, "wine", 2, "onnx"),
    ):
        assert_error(await client.get(url, headers=owner), 404, "NOT_FOUND")
    rows = await audit_rows_since(platform, mark, action="model.export")
    assert [row["outcome"] for row in rows] == ["failed"] * 3
    assert [row["project_id"] for row in rows] == [None, team.project_id, team.project_id]


async def test_a_caller_outside_the_project_is_told_it_does_not_exist_and_is_audited(
    client: httpx.AsyncClient,
    platform: Platform,
    team: Team,
    outsider: Team,
    flax_version: models.ModelVersion,
) -> None:
    mark = await audit_mark(platform)
    response = await client.get(
        export_url(team.slug, "wine", 1), headers=bearer(outsider.token(ProjectRole.OWNER))
    )
    refused = assert_error(response, 404, "NOT_FOUND")
    assert "wine" not in refused["message"]
    [event] = await audit_rows_since(platform, mark, action="model.export")
    assert (event["outcome"], event["project_id"]) == ("denied", team.project_id)
    assert event["object_id"] is None


async def test_no_token_is_401_and_a_bad_one_too(client: httpx.AsyncClient, team: Team) -> None:
    assert (await client.get(export_url(team.slug, "wine", 1))).status_code == 401
    refused = await client.get(export_url(team.slug, "wine", 1), headers=bearer("aiaas_nope"))
    assert refused.status_code == 401


async def test_a_head_answers_the_gets_status_and_headers_alone_and_is_not_audited(
    client: httpx.AsyncClient, platform: Platform, team: Team, flax_version: models.ModelVersion
) -> None:
    owner = bearer(team.token(ProjectRole.OWNER))
    got = await client.get(export_url(team.slug, "wine", 1), headers=owner)
    mark = await audit_mark(platform)
    head = await client.head(export_url(team.slug, "wine", 1), headers=owner)
    assert head.status_code == 200
    assert head.content == b""
    for header in ("content-length", "content-type", "etag", "content-disposition"):
        assert head.headers[header] == got.headers[header], header
    assert await audit_rows_since(platform, mark, action="model.export") == []
    not_convertible = await client.head(export_url(team.slug, "wine", 1, "onnx"), headers=owner)
    assert not_convertible.status_code == 400


async def test_an_uploaded_version_exports_with_no_lineage(
    client: httpx.AsyncClient, platform: Platform, team: Team, flax_version: models.ModelVersion
) -> None:
    """A version no job made (an upload): its manifest's job and dataset version are null."""
    developer = team.members[ProjectRole.DEVELOPER].principal
    bundle = await sealed_bundle(platform, flax_version)

    async def chunks() -> AsyncIterator[bytes]:
        yield bundle

    stored = await platform.service(VAULT).store(team.project_id, chunks())
    async with AuditedChange(
        platform, developer, "model.register", project_id=team.project_id
    ) as change:
        uploaded = await models.register_model_version(
            change,
            models.NewModelVersion(
                project_id=team.project_id,
                model_name="wine-uploaded",
                job_id=None,
                dataset_version_id=None,
                trainer="upload",
                format=flax_version.format,
                artifact_key=stored.key,
                size_bytes=stored.size_bytes,
                signature=flax_version.signature,
                metrics={},
                hyperparameters={},
                created_by=developer.user_id,
            ),
        )
    response = await client.get(
        export_url(team.slug, "wine-uploaded", uploaded.number),
        headers=bearer(team.token(ProjectRole.VIEWER)),
    )
    assert response.status_code == 200, response.text
    manifest, exported = archive_of(response)
    assert manifest["lineage"] == {"source": "UPLOAD", "jobId": None, "datasetVersionId": None}
    assert exported == bundle


async def test_an_archived_projects_versions_still_export(
    client: httpx.AsyncClient, platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> None:
    archived = await new_team(platform, unique("archived"), (ProjectRole.VIEWER,))
    owner = archived.members[ProjectRole.OWNER].principal
    data = await upload(
        platform, owner, archived.project_id, wine_table(), "wine", tmp_path_factory.mktemp("a")
    )
    version = await train_version(
        platform,
        owner,
        data,
        target="cultivar",
        model_name="kept",
        trainer="xgboost-classifier",
        hyperparameters={"n_estimators": 2},
    )
    await archive_project(platform, owner, archived.project_id)
    response = await client.get(
        export_url(archived.slug, "kept", version.number, "onnx"),
        headers=bearer(archived.token(ProjectRole.VIEWER)),
    )
    assert response.status_code == 200, response.text
    assert onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["Wine", "-wine", "wi%00ne"])
async def test_a_model_name_that_is_no_name_is_400_and_audited_as_failed(
    client: httpx.AsyncClient, platform: Platform, team: Team, name: str
) -> None:
    mark = await audit_mark(platform)
    response = await client.get(
        export_url(team.slug, name, 1), headers=bearer(team.token(ProjectRole.OWNER))
    )
    assert_error(response, 400, "BAD_USER_INPUT")
    [event] = await audit_rows_since(platform, mark, action="model.export")
    assert event["outcome"] == "failed"
