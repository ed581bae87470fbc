"""Backup archives taken apart and put back together, for the tests that check a restore
refuses what was tampered with: their members, where a member's data lies, an archive written
from edited members, and what only a holder of the master key can do to one (open a sealed
table, seal an edited one, re-authenticate an edited manifest, or strip the seal to make an
archive of the unsealed format)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiaas.core.governance.backup import MANIFEST
from aiaas.core.governance.backup_sealing import (
    MANIFEST_TAG,
    UNSEALED_FORMAT,
    Sealing,
    manifest_tag,
    seal_table,
    unseal_table,
)
from aiaas.core.governance.crypto import MasterKey


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {
            info.name: archive.extractfile(info).read()  # type: ignore[union-attr]
            for info in archive
        }


def write_archive(target: Path, members: dict[str, bytes]) -> None:
    """An archive of `members`, in their order (the manifest and its tag last, as a backup
    writes them)."""
    with tarfile.open(target, "w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


def member_span(path: Path, name: str) -> tuple[int, int]:
    """Where a member's data starts in the archive file, and how long it is."""
    with tarfile.open(path) as archive:
        info = archive.getmember(name)
        return info.offset_data, info.size


def first_member(path: Path, prefix: str) -> str:
    with tarfile.open(path) as archive:
        return next(name for name in archive.getnames() if name.startswith(prefix))


# What a holder of the master key can do ------------------------------------------------------


def reauthenticated(members: dict[str, bytes], master: MasterKey) -> None:
    """Put the manifest and a fresh tag for it, made with `master`, last in `members`: the
    archive as someone holding the key would leave it after editing."""
    manifest = members.pop(MANIFEST)
    members.pop(MANIFEST_TAG, None)
    members[MANIFEST] = manifest
    members[MANIFEST_TAG] = manifest_tag(master, manifest)


def edit_manifest(
    members: dict[str, bytes], change: Callable[[dict[str, Any]], None], master: MasterKey | None
) -> None:
    """Apply `change` to the manifest; re-authenticate it with `master` when one is given, or
    leave the old tag in place (someone without the key)."""
    manifest = json.loads(members.pop(MANIFEST))
    change(manifest)
    tag = members.pop(MANIFEST_TAG, None)
    members[MANIFEST] = json.dumps(manifest).encode()  # last, as the backup writes it
    if master is not None:
        reauthenticated(members, master)
    elif tag is not None:
        members[MANIFEST_TAG] = tag


def relist(manifest: dict[str, Any], member: str, content: bytes) -> None:
    """Make the manifest's entry for `member` vouch for `content`."""
    for entry in [*manifest["tables"], *manifest["artifacts"]]:
        if entry["member"] == member:
            entry["bytes"] = len(content)
            entry["sha256"] = hashlib.sha256(content).hexdigest()


def _sealing(members: dict[str, bytes], master: MasterKey) -> tuple[Sealing, bytes]:
    """The archive's sealing and its data key, opened with `master`."""
    sealing = Sealing.from_json(json.loads(members[MANIFEST])["sealing"])
    return sealing, sealing.data_key({master.id: master})


async def _joined(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def opened_table(members: dict[str, bytes], master: MasterKey, table: str) -> bytes:
    """The binary COPY of a sealed table."""
    sealing, data_key = _sealing(members, master)
    member = f"tables/{table}.copy.sealed"
    return await _joined(unseal_table(data_key, sealing, member, _once(members[member])))


async def resealed_table(
    members: dict[str, bytes], master: MasterKey, table: str, copy: bytes
) -> None:
    """Replace a table's content with `copy`, sealed as the backup seals it, and list it in a
    re-authenticated manifest."""
    sealing, data_key = _sealing(members, master)
    member = f"tables/{table}.copy.sealed"
    members[member] = await _joined(seal_table(data_key, sealing, _once(copy)))
    edit_manifest(members, lambda manifest: relist(manifest, member, members[member]), master)


async def unsealed_archive(source: Path, target: Path, master: MasterKey) -> None:
    """`source` rewritten in the format from before sealing: tables in clear, no tag."""
    members = archive_members(source)
    manifest = json.loads(members[MANIFEST])
    tables: dict[str, bytes] = {}
    for table in manifest["tables"]:
        copy = await opened_table(members, master, table["name"])
        del members[table["member"]]
        table["member"] = f"tables/{table['name']}.copy"
        tables[table["member"]] = copy
        relist({"tables": [table], "artifacts": []}, table["member"], copy)
    del members[MANIFEST], members[MANIFEST_TAG]
    manifest["format"] = UNSEALED_FORMAT
    del manifest["sealing"]
    write_archive(target, {**tables, **members, MANIFEST: json.dumps(manifest).encode()})
