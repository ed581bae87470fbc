"""Encryption at rest through the vault, on the real database and filesystem store: per-project
data keys kept only wrapped, uploads sealed on disk, tampered objects refused, and the master key
that production cannot start without."""

from __future__ import annotations

import base64
import io
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data.datasets import read_version_table, upload_version
from aiaas.core.errors import ArtifactIntegrityError, ConfigError
from aiaas.core.governance.backup import tables_in_load_order
from aiaas.core.governance.crypto import CHUNK_BYTES, MasterKey, sealed_project
from aiaas.core.governance.vault import VAULT, Vault
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from aiaas.plugins.filesystem_artifacts import FilesystemArtifactStore
from support import bootstrap_admin_principal, free_port

LEAVES_UNREFERENCED_ARTIFACTS = "the vault's tests seal artifacts that no row records"
HEADER_BYTES = 29
CHUNK_OVERHEAD = 4 + 16  # length word and GCM tag
THREE_CHUNKS = 2 * CHUNK_BYTES + 4096


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


async def new_project(platform: Platform, admin: Principal) -> uuid.UUID:
    slug = f"vault-{uuid.uuid4().hex[:10]}"
    return (await create_project(platform, admin, slug=slug, name=slug)).id


def config_with(config: Config, **changes: Any) -> Config:
    return build_config({**config.model_dump(), **changes})


def fresh_vault(platform: Platform, config: Config | None = None) -> Vault:
    """A vault with nothing cached: every data key comes from `data_keys` again, as in a newly
    started process."""
    return Vault(config or platform.config, platform.metadata, platform.artifacts)


def store_of(platform: Platform) -> FilesystemArtifactStore:
    assert isinstance(platform.artifacts, FilesystemArtifactStore)
    return platform.artifacts


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(vault: Vault, project_id: uuid.UUID, key: str) -> bytes:
    return b"".join([chunk async for chunk in vault.open(project_id, key)])


async def data_key_row(platform: Platform, project_id: uuid.UUID) -> dict[str, Any]:
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM data_keys WHERE project_id = $1", project_id)
    assert row is not None
    return dict(row)


async def whole_database(platform: Platform) -> bytes:
    """Every row of every aiaas table, in PostgreSQL's binary COPY format."""
    dump = io.BytesIO()
    async with platform.metadata.acquire() as connection:
        for table in await tables_in_load_order(connection):
            await connection.copy_from_table(table, output=dump, format="binary")
    return dump.getvalue()


# Per-project data keys, kept wrapped ---------------------------------------------------------


async def test_each_project_gets_its_own_data_key_stored_only_wrapped(
    platform: Platform, admin: Principal
) -> None:
    first, second = await new_project(platform, admin), await new_project(platform, admin)

    first_key = await platform.service(VAULT).data_key(first)
    second_key = await platform.service(VAULT).data_key(second)

    assert len(first_key) == len(second_key) == 32
    assert first_key != second_key
    master = MasterKey.parse(str(platform.config.master_key))
    for project_id, key in ((first, first_key), (second, second_key)):
        row = await data_key_row(platform, project_id)
        assert row["master_key_id"] == master.id
        assert key not in row["wrapped_key"]
        # nonce, the sealed key and its tag: the wrapped form, not the key itself
        assert len(row["wrapped_key"]) == 12 + 32 + 16
        # A process that starts later unwraps the same key from the row.
        assert await fresh_vault(platform).data_key(project_id) == key


async def test_no_data_key_or_master_key_appears_anywhere_in_the_database(
    platform: Platform, admin: Principal
) -> None:
    projects = [await new_project(platform, admin) for _ in range(3)]
    keys = [await platform.service(VAULT).data_key(project_id) for project_id in projects]
    master = MasterKey.parse(str(platform.config.master_key)).secret

    dump = await whole_database(platform)

    for secret in [*keys, master]:
        for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
            assert form not in dump


async def test_an_uploaded_csv_is_stored_sealed_and_none_of_its_text_is_on_disk(
    platform: Platform, admin: Principal, config: Config, tmp_path: Path
) -> None:
    project_id = await new_project(platform, admin)
    markers = [f"marker-{uuid.uuid4().hex}" for _ in range(3)]
    text = "id,name,secret\n" + "".join(
        f"{number},customer-{number},{markers[number % 3]}\n" for number in range(200)
    )
    source = tmp_path / "customers.csv"
    source.write_text(text)

    version = (
        await upload_version(platform, admin, project_id, dataset_name="customers", source=source)
    ).version

    stored = store_of(platform).path_of(version.artifact_key).read_bytes()
    assert sealed_project(stored) == project_id
    assert text.encode() not in stored
    # Not a single value either, nor any line of the file, anywhere under the data dir (the
    # artifact store and the scratch space the upload went through).
    needles = [marker.encode() for marker in markers] + [b"customer-123"]
    for path in config.data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(needle in content for needle in needles), path
    # ... and yet the version opens, with its data intact.
    table = await read_version_table(platform, version)
    assert table.num_rows == 200
    assert sorted(set(table.column("secret").to_pylist())) == sorted(markers)


# Master keys ----------------------------------------------------------------------------------


async def test_a_vault_with_another_master_key_cannot_open_the_data_keys(
    platform: Platform, admin: Principal, config: Config
) -> None:
    project_id = await new_project(platform, admin)
    stored = await platform.service(VAULT).store(project_id, chunks_of(b"rows of a project"))
    other = config_with(config, master_key=MasterKey.generate().encoded())

    with pytest.raises(ConfigError, match="not configured") as refused:
        await read_all(fresh_vault(platform, other), project_id, stored.key)

    message = str(refused.value)
    assert str(project_id) in message
    assert "AIAAS_PREVIOUS_MASTER_KEYS" in message


async def test_a_data_key_that_does_not_unwrap_with_its_named_master_key_is_a_config_error(
    platform: Platform, admin: Principal, config: Config
) -> None:
    project_id = await new_project(platform, admin)
    await platform.service(VAULT).data_key(project_id)
    other = MasterKey.generate()
    # The row claims the other key wrapped it: the vault picks that key, which fails to unwrap.
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "UPDATE data_keys SET master_key_id = $2 WHERE project_id = $1", project_id, other.id
        )
    vault = fresh_vault(platform, config_with(config, previous_master_keys=(other.encoded(),)))

    with pytest.raises(ConfigError, match="does not open with the master key"):
        await vault.data_key(project_id)


async def test_a_wrapped_key_copied_to_another_projects_row_does_not_unwrap(
    platform: Platform, admin: Principal
) -> None:
    source, target = await new_project(platform, admin), await new_project(platform, admin)
    await platform.service(VAULT).data_key(source)
    await platform.service(VAULT).data_key(target)
    async with platform.metadata.acquire() as connection:
        await connection.execute(
            "UPDATE data_keys SET wrapped_key = (SELECT wrapped_key FROM data_keys "
            "WHERE project_id = $1) WHERE project_id = $2",
            source,
            target,
        )
    vault = fresh_vault(platform)

    with pytest.raises(ConfigError, match=str(target)):
        await vault.data_key(target)
    assert len(await vault.data_key(source)) == 32


async def test_production_refuses_to_start_without_a_master_key(config: Config) -> None:
    # A database nobody listens on: the refusal must come before any attempt to connect, or
    # this would be a DatabaseUnavailableError instead.
    production = config_with(
        config,
        mode="production",
        master_key=None,
        database_url=f"postgresql://aiaas@127.0.0.1:{free_port()}/aiaas",
    )
    platform = create_platform(production)

    with pytest.raises(ConfigError, match="AIAAS_MASTER_KEY is required in production") as refused:
        await platform.start()

    assert "aiaas keys generate" in str(refused.value)


async def test_a_vault_without_a_master_key_seals_nothing(
    platform: Platform, admin: Principal, config: Config
) -> None:
    project_id = await new_project(platform, admin)
    keyless = fresh_vault(platform, config_with(config, master_key=None))

    with pytest.raises(ConfigError, match="AIAAS_MASTER_KEY is not set"):
        await keyless.store(project_id, chunks_of(b"rows"))
    async with platform.metadata.acquire() as connection:
        assert not await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM data_keys WHERE project_id = $1)", project_id
        )


# Tampered objects on disk ---------------------------------------------------------------------


def chunk_offset(index: int) -> int:
    return HEADER_BYTES + index * (CHUNK_OVERHEAD + CHUNK_BYTES)


def flip(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


def swap_chunks(sealed: bytes) -> bytes:
    first, second, third = chunk_offset(0), chunk_offset(1), chunk_offset(2)
    return sealed[:first] + sealed[second:third] + sealed[first:second] + sealed[third:]


def splice_second_chunk(sealed: bytes, other: bytes) -> bytes:
    start, end = chunk_offset(1), chunk_offset(2)
    return sealed[:start] + other[start:end] + sealed[end:]


Tampering = Callable[[bytes, bytes], bytes]

TAMPERINGS: dict[str, tuple[Tampering, int, str]] = {
    # name: (tamper(sealed, another sealed artifact of the project), altered chunk, message the
    # vault gives for these bytes under their own, valid key)
    "flipped-byte-in-a-chunk": (
        lambda sealed, _: flip(sealed, chunk_offset(1) + 1000),
        1,
        "failed authentication",
    ),
    "flipped-byte-in-the-header": (
        lambda sealed, _: flip(sealed, HEADER_BYTES - 3),
        0,
        "failed authentication",
    ),
    "flipped-byte-in-the-project-id": (
        lambda sealed, _: flip(sealed, 10),
        0,
        "not sealed for this project",
    ),
    "flipped-byte-in-the-magic": (
        lambda sealed, _: flip(sealed, 2),
        0,
        "not a sealed aiaas artifact",
    ),
    "swapped-chunks": (lambda sealed, _: swap_chunks(sealed), 0, "failed authentication"),
    "chunk-from-another-artifact": (splice_second_chunk, 1, "failed authentication"),
    "dropped-last-chunk": (
        lambda sealed, _: sealed[: chunk_offset(2)],
        2,
        "its last chunk is missing",
    ),
    "cut-mid-chunk": (
        lambda sealed, _: sealed[: chunk_offset(1) + CHUNK_BYTES // 2],
        1,
        "truncated mid-chunk",
    ),
    "extra-bytes-after-the-last-chunk": (
        lambda sealed, _: sealed + b"appended",
        3,
        "data after its last chunk",
    ),
}


async def sealed_artifact(platform: Platform, project_id: uuid.UUID, data: bytes) -> str:
    return (await platform.service(VAULT).store(project_id, chunks_of(data, 300_000))).key


async def read_until_refused(
    platform: Platform, project_id: uuid.UUID, key: str, message: str | None
) -> bytes:
    """What `Vault.open` hands out before it raises `ArtifactIntegrityError`; the test fails if
    it does not raise."""
    returned: list[bytes] = []
    try:
        async for chunk in platform.service(VAULT).open(project_id, key):
            returned.append(chunk)
    except ArtifactIntegrityError as error:
        refusal = str(error)
    else:
        pytest.fail("the tampered artifact opened without an error")
    assert refusal.strip()
    if message is not None:
        assert message in refusal
    return b"".join(returned)


@pytest.mark.parametrize("name", list(TAMPERINGS))
async def test_a_tampered_object_on_disk_is_refused_and_its_altered_chunk_never_returned(
    platform: Platform, admin: Principal, name: str
) -> None:
    tamper, altered, _ = TAMPERINGS[name]
    project_id = await new_project(platform, admin)
    data = os.urandom(THREE_CHUNKS)
    key = await sealed_artifact(platform, project_id, data)
    other_key = await sealed_artifact(platform, project_id, os.urandom(THREE_CHUNKS))
    store = store_of(platform)
    path = store.path_of(key)
    path.write_bytes(tamper(path.read_bytes(), store.path_of(other_key).read_bytes()))

    # The store's own content hash may speak first (it checks at the end of the file); either
    # way it is an integrity error and the altered chunk never comes out.
    returned = await read_until_refused(platform, project_id, key, message=None)

    assert returned == data[: len(returned)]
    assert len(returned) <= len(data[: altered * CHUNK_BYTES])


@pytest.mark.parametrize("name", list(TAMPERINGS))
async def test_tampered_bytes_under_their_own_valid_key_are_refused_by_the_seal_itself(
    platform: Platform, admin: Principal, name: str
) -> None:
    # Stored afresh, the tampered bytes hash to their new key: the store has nothing to object
    # to, so only the authenticated encryption stands between them and the reader.
    tamper, altered, message = TAMPERINGS[name]
    project_id = await new_project(platform, admin)
    data = os.urandom(THREE_CHUNKS)
    store = store_of(platform)
    sealed = store.path_of(await sealed_artifact(platform, project_id, data)).read_bytes()
    other = store.path_of(
        await sealed_artifact(platform, project_id, os.urandom(THREE_CHUNKS))
    ).read_bytes()
    forged = await store.put_bytes(tamper(sealed, other))

    returned = await read_until_refused(platform, project_id, forged.key, message)

    assert returned == data[: altered * CHUNK_BYTES]


async def test_an_artifact_of_one_project_does_not_open_as_another_projects(
    platform: Platform, admin: Principal
) -> None:
    owner, other = await new_project(platform, admin), await new_project(platform, admin)
    key = await sealed_artifact(platform, owner, b"the owner's rows")

    returned = await read_until_refused(platform, other, key, "not sealed for this project")

    assert returned == b""


async def test_a_dataset_version_whose_object_was_altered_is_not_served(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    project_id = await new_project(platform, admin)
    source = tmp_path / "scores.csv"
    source.write_text("id,score\n" + "".join(f"{i},{i * 0.5}\n" for i in range(500)))
    version = (
        await upload_version(platform, admin, project_id, dataset_name="scores", source=source)
    ).version
    path = store_of(platform).path_of(version.artifact_key)
    path.write_bytes(flip(path.read_bytes(), HEADER_BYTES + 4 + 10))

    with pytest.raises(ArtifactIntegrityError, match="failed authentication"):
        await read_version_table(platform, version)


async def test_a_sealed_empty_artifact_opens_empty(platform: Platform, admin: Principal) -> None:
    project_id = await new_project(platform, admin)

    key = await sealed_artifact(platform, project_id, b"")

    assert await read_all(platform.service(VAULT), project_id, key) == b""
    assert len(store_of(platform).path_of(key).read_bytes()) == HEADER_BYTES + CHUNK_OVERHEAD


def open_handles(path: Path) -> int:
    """How many file descriptors of this process are open on `path`."""
    count = 0
    for descriptor in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(descriptor) == str(path)
        except OSError:
            continue  # closed meanwhile: the listing's own descriptor, for one
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
@pytest.mark.parametrize("how", ["refused", "abandoned"])
async def test_a_read_that_ends_early_leaves_no_file_open(
    platform: Platform, admin: Principal, how: str
) -> None:
    project_id = await new_project(platform, admin)
    key = await sealed_artifact(platform, project_id, os.urandom(THREE_CHUNKS))
    path = store_of(platform).path_of(key)
    if how == "refused":
        path.write_bytes(flip(path.read_bytes(), chunk_offset(1) + 1000))

    # An async generator, though typed as an iterator: it can be closed, as a server does.
    reader = cast(AsyncGenerator[bytes, None], platform.service(VAULT).open(project_id, key))
    try:
        await anext(reader)  # the first chunk is intact either way
        if how == "refused":
            await anext(reader)
    except ArtifactIntegrityError:
        pass
    finally:
        # What `async with aclosing(...)` or a server dropping a response does.
        await reader.aclose()

    assert open_handles(path) == 0
