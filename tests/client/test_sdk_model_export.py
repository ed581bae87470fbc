"""`Client.download_model_version` against a real `aiaas serve`, with a wine classifier trained
by a real worker: a version exports to a ZIP of its bundle and manifest, the file is replaced
only once its download is whole, and a refusal (a format that does not convert, a version that
does not exist) or a Ctrl-C leaves the destination as it was and no temporary file beside it."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import httpx
import pytest

from aiaas.client import Client, ModelVersion
from aiaas.client.downloads import download_model_version
from aiaas.client.errors import InvalidInputError, NotFoundError

pytestmark = pytest.mark.slow


def test_a_version_exports_to_a_zip_of_its_bundle_and_manifest(
    client: Client, project_slug: str, versions: list[ModelVersion], tmp_path: Path
) -> None:
    target = tmp_path / "nested" / "wine.zip"
    written = client.download_model_version(project_slug, "wine", 2, target)
    assert written == target
    with zipfile.ZipFile(written) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        bundle = archive.read("bundle.bin")
    second = versions[1]
    assert (manifest["project"], manifest["model"], manifest["version"]) == (
        project_slug,
        "wine",
        2,
    )
    assert (manifest["id"], manifest["format"]) == (second.id, second.format)
    assert manifest["signature"] == second.signature
    assert manifest["metrics"] == second.metrics
    assert manifest["lineage"]["jobId"] is not None
    assert manifest["bundle"]["sha256"] == hashlib.sha256(bundle).hexdigest()
    assert sorted(path.name for path in target.parent.iterdir()) == ["wine.zip"]


def test_an_existing_file_is_replaced_whole(
    client: Client, project_slug: str, versions: list[ModelVersion], tmp_path: Path
) -> None:
    target = tmp_path / "wine.zip"
    target.write_bytes(b"an older file, longer than nothing")
    download_model_version(client, project_slug, "wine", 1, target, format="bundle")
    with zipfile.ZipFile(target) as archive:
        assert json.loads(archive.read("manifest.json"))["version"] == 1


def test_refused_exports_leave_the_destination_as_it_was(
    client: Client, project_slug: str, versions: list[ModelVersion], tmp_path: Path
) -> None:
    target = tmp_path / "kept.onnx"
    target.write_bytes(b"kept")
    with pytest.raises(InvalidInputError, match="format=bundle") as refused:
        client.download_model_version(project_slug, "wine", 1, target, format="onnx")
    assert "format" in refused.value.field_errors
    with pytest.raises(InvalidInputError, match="bundle or onnx"):
        client.download_model_version(project_slug, "wine", 1, target, format="pickle")
    with pytest.raises(NotFoundError, match="no version 9"):
        client.download_model_version(project_slug, "wine", 9, target)
    assert target.read_bytes() == b"kept"
    assert [path.name for path in tmp_path.iterdir()] == ["kept.onnx"]


def test_a_ctrl_c_mid_export_leaves_no_temporary_file(
    client: Client, project_slug: str, versions: list[ModelVersion], tmp_path: Path
) -> None:
    def interrupt(response: httpx.Response) -> None:
        # What a Ctrl-C does: KeyboardInterrupt, here as the body starts to arrive.
        if response.request.url.path.endswith("/export"):
            raise KeyboardInterrupt

    target = tmp_path / "wine.zip"
    target.write_bytes(b"kept")
    client.http.event_hooks["response"].append(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            client.download_model_version(project_slug, "wine", 1, target)
    finally:
        client.http.event_hooks["response"].remove(interrupt)
    assert target.read_bytes() == b"kept"
    assert [path.name for path in tmp_path.iterdir()] == ["wine.zip"]
