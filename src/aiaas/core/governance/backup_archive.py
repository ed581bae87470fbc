"""A backup archive's format: its members, its manifest, and checking one against the other.

    tables/<table>.copy.sealed   the table in PostgreSQL's binary COPY format, encrypted with the
                                 archive's own data key (`backup_sealing`)
    artifacts/<key>              each artifact as stored: sealed already, with its project's key
    manifest.json                format, aiaas version, schema revision, the archive's data key
                                 wrapped by the master key, and for every other member its path,
                                 size and sha256 (written once all are known)
    manifest.hmac                the manifest's HMAC-SHA256 under a key derived from the master
                                 key, and that key's id (written last)

`verify_archive` checks every member against the manifest without decrypting anything; given the
configured master keys it first authenticates the manifest, so that a manifest rewritten to match
altered members is refused. Without a key it checks the members alone, and says so.

An archive of the format before sealing (`aiaas-backup-1`: `tables/<table>.copy` in clear,
nothing authenticated) still verifies, and is restored only when the caller says it trusts it
(`verify_for_restore`'s `allow_unsealed`): anyone can write one, so accepting it silently would
let an altered archive pass for a sealed one with its seal removed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aiaas import __version__
from aiaas.core.errors import BackupError
from aiaas.core.governance.backup_sealing import (
    FORMAT,
    MANIFEST_TAG,
    UNSEALED_FORMAT,
    ManifestTag,
    Sealing,
)
from aiaas.core.governance.crypto import MasterKey

MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20
# The only member names an archive holds: extraction writes nowhere else.
_MEMBER_NAME = re.compile(
    r"manifest\.json|manifest\.hmac|tables/[a-z_][a-z0-9_]{0,62}\.copy(?:\.sealed)?"
    r"|artifacts/[0-9a-f]{64}"
)


@dataclass
class Manifest:
    schema_revision: str
    tables: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    aiaas_version: str = __version__
    format: str = FORMAT
    sealing: dict[str, Any] | None = None

    @property
    def sealed(self) -> bool:
        return self.format == FORMAT

    def table_member(self, table: str) -> str:
        return f"tables/{table}.copy.sealed" if self.sealed else f"tables/{table}.copy"

    def sealing_section(self) -> Sealing:
        return Sealing.from_json(self.sealing)

    def members(self) -> dict[str, dict[str, Any]]:
        return {entry["member"]: entry for entry in [*self.tables, *self.artifacts]}

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BackupError(f"the manifest is unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise BackupError("the manifest is unreadable: not a JSON object")
        if data.get("format") not in (FORMAT, UNSEALED_FORMAT):
            raise BackupError(
                f"not an aiaas backup archive: unknown format {data.get('format')!r:.60}"
            )
        try:
            manifest = cls(**data)
        except TypeError as exc:
            raise BackupError(f"the manifest is unreadable: {exc}") from None
        manifest._check_entries()
        return manifest

    def _check_entries(self) -> None:
        """Every entry names a member of the form the archive is written with: nothing read
        from an archive chooses a path or a table of its own."""
        if not isinstance(self.tables, list) or not isinstance(self.artifacts, list):
            raise BackupError("the manifest is unreadable: tables and artifacts must be lists")
        if self.sealed:
            self.sealing_section()
        elif self.sealing is not None:
            raise BackupError(f"the manifest is unreadable: an {UNSEALED_FORMAT} one is sealed")
        for entry in [*self.tables, *self.artifacts]:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("member"), str)
                and isinstance(entry.get("bytes"), int)
                and isinstance(entry.get("sha256"), str)
            ):
                raise BackupError(f"the manifest is unreadable: bad entry {entry!r:.200}")
        for table in self.tables:
            name = table.get("name")
            if not isinstance(name, str) or table["member"] != self.table_member(name):
                raise BackupError(f"the manifest is unreadable: bad table entry {table!r:.200}")
        for artifact in self.artifacts:
            key = artifact.get("key")
            if not isinstance(key, str) or artifact["member"] != f"artifacts/{key}":
                raise BackupError(f"the manifest is unreadable: bad artifact {artifact!r:.200}")
        for member in self.members():
            if not _MEMBER_NAME.fullmatch(member) or member in (MANIFEST, MANIFEST_TAG):
                raise BackupError(f"unexpected member name {member!r:.200}")


# Verifying -----------------------------------------------------------------------------------


_UNREADABLE = (tarfile.TarError, EOFError, OSError)


def read_members(path: Path) -> Iterator[tuple[tarfile.TarInfo, Iterator[bytes]]]:
    """Each member of the archive with its content, chunk by chunk. Any failure to read (a
    member cut short included, which shows only as its content is read) is a `BackupError`."""
    try:
        with tarfile.open(path, "r:") as archive:
            for info in archive:
                if not info.isfile() or not _MEMBER_NAME.fullmatch(info.name):
                    raise BackupError(f"unexpected member {info.name!r:.200}")
                handle = archive.extractfile(info)
                assert handle is not None
                yield info, _chunks(handle)
    except _UNREADABLE as exc:
        raise BackupError(f"the archive is unreadable or truncated: {exc}") from None


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        try:
            chunk = handle.read(CHUNK_BYTES)
        except _UNREADABLE as exc:
            raise BackupError(f"the archive is unreadable or truncated: {exc}") from None
        if not chunk:
            return
        yield chunk


def _member_digests(path: Path) -> tuple[dict[str, tuple[int, str]], bytes | None, bytes | None]:
    """Each member's size and sha256 by name, and the manifest and its tag as they are."""
    seen: dict[str, tuple[int, str]] = {}
    manifest_bytes: bytes | None = None
    tag_bytes: bytes | None = None
    for info, chunks in read_members(path):
        if info.name == MANIFEST:
            manifest_bytes = b"".join(chunks)
        elif info.name == MANIFEST_TAG:
            tag_bytes = b"".join(chunks)
        else:
            digest = hashlib.sha256()
            size = 0
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
            seen[info.name] = (size, digest.hexdigest())
    return seen, manifest_bytes, tag_bytes


@dataclass(frozen=True)
class ArchiveCheck:
    """A verified archive: every member matches the manifest."""

    manifest: Manifest
    authenticated_by: str | None
    """The id of the master key that authenticated the manifest; None when it was not checked
    (no keys were given, or the archive is unsealed and has nothing to check it by)."""


def verify_archive(path: Path, master_keys: Mapping[str, MasterKey] | None = None) -> ArchiveCheck:
    """Check every member against the manifest, decrypting nothing; `BackupError` saying what
    is wrong. With `master_keys` (by id, as `vault.master_keys` gives them), a sealed archive's
    manifest must also prove it was written by the backup, with one of those keys, and the
    archive's data key must open: a restore could proceed."""
    seen, manifest_bytes, tag_bytes = _member_digests(path)
    if manifest_bytes is None:
        raise BackupError("the archive has no manifest: it is incomplete")
    authenticated_by: str | None = None
    if tag_bytes is not None and master_keys is not None:
        # Authenticated before a word of it is read: nothing an altered manifest says is used.
        tag = ManifestTag.parse(tag_bytes)
        authenticated_by = tag.authenticate(master_keys, manifest_bytes).id
    manifest = Manifest.from_json(manifest_bytes)
    if manifest.sealed:
        _check_seal(manifest, tag_bytes, master_keys)
    elif tag_bytes is not None:
        raise BackupError(f"an {UNSEALED_FORMAT} archive holds no {MANIFEST_TAG}")
    expected = manifest.members()
    for member, entry in expected.items():
        if member not in seen:
            raise BackupError(f"{member} is missing from the archive")
        if seen[member] != (entry["bytes"], entry["sha256"]):
            raise BackupError(f"{member} does not match its checksum: the archive is corrupt")
    for artifact in manifest.artifacts:
        if artifact["sha256"] != artifact["key"]:
            raise BackupError(f"artifact {artifact['key']} does not match its key")
    unexpected = sorted(set(seen) - set(expected))
    if unexpected:
        raise BackupError(f"members not in the manifest: {', '.join(unexpected)}")
    return ArchiveCheck(manifest, authenticated_by)


def _check_seal(
    manifest: Manifest, tag_bytes: bytes | None, master_keys: Mapping[str, MasterKey] | None
) -> None:
    if tag_bytes is None:
        raise BackupError(f"the archive has no {MANIFEST_TAG}: it is incomplete")
    tag = ManifestTag.parse(tag_bytes)
    sealing = manifest.sealing_section()
    if tag.master_key_id != sealing.master_key_id:
        raise BackupError(
            f"{MANIFEST_TAG} names master key {tag.master_key_id:.64}, the manifest "
            f"{sealing.master_key_id:.64}: the archive was altered"
        )
    if master_keys is not None:
        sealing.data_key(master_keys)


def verify_for_restore(
    path: Path, master_keys: Mapping[str, MasterKey], *, allow_unsealed: bool = False
) -> ArchiveCheck:
    """`verify_archive` with the keys a restore has, refusing an unsealed archive unless the
    caller vouches for it."""
    check = verify_archive(path, master_keys)
    if not check.manifest.sealed and not allow_unsealed:
        raise BackupError(
            f"{path.name} is an unsealed {UNSEALED_FORMAT} archive: its tables are in clear and "
            "nothing proves who wrote it. Restore it only if you know where it has been, with "
            "allow_unsealed (`aiaas backup restore --allow-unsealed`)"
        )
    # The restore's audit event records the format and that nothing authenticated it.
    return check


def extract_verified(path: Path, work: Path, manifest: Manifest) -> dict[str, Path]:
    """Every member the manifest lists, written to `work`, each checked again as it is written:
    what is restored is what was verified, even if the file changed since."""
    expected = manifest.members()
    paths: dict[str, Path] = {}
    for info, chunks in read_members(path):
        if info.name not in expected:
            continue
        # The name passed _MEMBER_NAME: one directory and a file name, without "..".
        target = work / info.name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with target.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected[info.name]["sha256"]:
            raise BackupError(f"{info.name} changed since the archive was verified")
        paths[info.name] = target
    missing = sorted(set(expected) - set(paths))
    if missing:
        raise BackupError(f"{', '.join(missing)} changed since the archive was verified")
    return paths
