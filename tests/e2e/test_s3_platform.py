"""The platform on the s3 artifact store, against a real S3 gateway (SeaweedFS), with no shared
filesystem for its artifacts: a dataset uploaded, a model trained on it and registered, both
read back through the platform; the bucket holds only sealed bytes; and garbage collection
works on the bucket as on a directory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets
from aiaas.core.governance.garbage import collect_garbage
from aiaas.core.governance.vault import VAULT
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.plugins.s3_artifacts import OBJECTS, S3ArtifactStore
from artifact_streams import stored_keys
from object_store import ObjectStoreServer
from serving_support import train_version, wine_table
from support import Team, new_team

pytestmark = pytest.mark.slow

PREFIX = f"platform/{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def config(config: Config, object_store: ObjectStoreServer) -> Config:
    """This module's platform, its artifacts in the bucket rather than under its data dir."""
    return build_config({**config.model_dump(), **object_store.settings(PREFIX)})


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(platform, "objects", (ProjectRole.DEVELOPER,))


async def read_back(platform: Platform, project_id: uuid.UUID, key: str) -> bytes:
    vault = platform.service(VAULT)
    return b"".join([chunk async for chunk in vault.open(project_id, key)])


async def test_a_dataset_and_the_model_trained_on_it_live_sealed_in_the_bucket(
    platform: Platform,
    team: Team,
    object_store: ObjectStoreServer,
    tmp_path: Path,
) -> None:
    developer = team.members[ProjectRole.DEVELOPER].principal
    source = tmp_path / "wine.parquet"
    pq.write_table(wine_table(), source)

    added = await datasets.upload_version(
        platform, developer, team.project_id, dataset_name="wine", source=source
    )
    model = await train_version(
        platform, developer, added.version, target="cultivar", model_name="wine-on-s3"
    )

    assert isinstance(platform.artifacts, S3ArtifactStore)
    assert set(await stored_keys(platform.artifacts)) == {
        added.version.artifact_key,
        model.artifact_key,
    }
    # Read back through the platform: the uploaded table, and the model's whole bundle.
    table = await read_back(platform, team.project_id, added.version.artifact_key)
    restored = pq.read_table(pa.BufferReader(table))
    assert restored.select(wine_table().column_names).equals(wine_table())
    bundle = await read_back(platform, team.project_id, model.artifact_key)
    assert len(bundle) > 0
    # The bucket holds what the platform sealed: neither the upload nor its Parquet magic.
    raw = object_store.raw(PREFIX)
    stored = await obstore.get_async(raw, OBJECTS + added.version.artifact_key)
    sealed = bytes(await stored.bytes_async())
    assert not sealed.startswith(b"PAR1")
    assert table[:64] not in sealed


async def test_garbage_collection_deletes_an_unreferenced_object_from_the_bucket(
    platform: Platform, team: Team
) -> None:
    orphan = await platform.service(VAULT).store(team.project_id, one_chunk(b"nobody's"))
    referenced = set(await stored_keys(platform.artifacts)) - {orphan.key}

    young = await collect_garbage(platform)
    collected = await collect_garbage(platform, grace_s=0)

    assert young.kept_young == 1
    assert await platform.artifacts.exists(orphan.key) is False
    assert collected.deleted == 1
    assert set(await stored_keys(platform.artifacts)) == referenced


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
