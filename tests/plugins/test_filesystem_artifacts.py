"""The filesystem artifact store's own behaviour: its layout on disk, its staging directory and
its refusal to touch the disk for a malformed key. The contract every store holds is tested in
test_artifact_store_contract.py."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiaas.core.config import build_config
from aiaas.core.errors import InputError
from aiaas.plugins.filesystem_artifacts import FilesystemArtifactStore
from artifact_streams import MALFORMED_KEYS, StreamBrokenError, chunks_of


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def store(root: Path, tmp_path: Path) -> FilesystemArtifactStore:
    return FilesystemArtifactStore(
        build_config({"artifact_dir": root, "data_dir": tmp_path / "data"})
    )


def files_under(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    return sorted(path for path in directory.rglob("*") if path.is_file())


def entries_under(directory: Path) -> list[Path]:
    """Every file and directory below `directory`."""
    return sorted(directory.rglob("*"))


async def test_an_artifact_is_one_file_named_by_its_key(
    store: FilesystemArtifactStore, root: Path
) -> None:
    stored = await store.put_bytes(b"weights of a very small model")

    assert files_under(root / "objects") == [root / "objects" / stored.key[:2] / stored.key]


async def test_storing_the_same_content_twice_keeps_one_file(
    store: FilesystemArtifactStore, root: Path
) -> None:
    first = await store.put_bytes(b"same bytes")
    second = await store.put_stream(chunks_of(b"same ", b"bytes"))

    assert first == second
    assert len(files_under(root / "objects")) == 1
    assert files_under(root / "tmp") == []


@pytest.mark.parametrize("key", MALFORMED_KEYS)
async def test_malformed_keys_are_refused_before_touching_the_filesystem(
    store: FilesystemArtifactStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(InputError):
        await store.read_bytes(key)
    with pytest.raises(InputError):
        await store.exists(key)
    with pytest.raises(InputError):
        store.path_of(key)

    # Nothing was created, not even the store's root.
    assert entries_under(tmp_path) == []


async def test_stream_that_fails_midway_leaves_no_file(
    store: FilesystemArtifactStore, root: Path
) -> None:
    async def breaking_stream() -> AsyncIterator[bytes]:
        yield b"a first chunk that reaches the staging file"
        yield b"and a second"
        raise StreamBrokenError

    with pytest.raises(StreamBrokenError):
        await store.put_stream(breaking_stream())

    assert files_under(root / "objects") == []
    assert files_under(root / "tmp") == []


async def test_a_stale_staging_file_is_discarded(
    store: FilesystemArtifactStore, root: Path
) -> None:
    stored = await store.put_bytes(b"kept")
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp" / "left-by-a-crash").write_bytes(b"half an upload")

    assert await store.discard_incomplete(older_than_s=0) == 1

    assert files_under(root / "tmp") == []
    assert store.path_of(stored.key).read_bytes() == b"kept"
    assert hashlib.sha256(b"kept").hexdigest() == stored.key
