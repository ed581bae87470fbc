"""Backup archives taken apart and put back together, for the tests that check a restore
refuses what was tampered with: their members, where a member's data lies, and an archive
written from edited members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {
            info.name: archive.extractfile(info).read()  # type: ignore[union-attr]
            for info in archive
        }


def write_archive(target: Path, members: dict[str, bytes]) -> None:
    """An archive of `members`, in their order (the manifest last, as a backup writes it)."""
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
