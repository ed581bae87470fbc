"""This process's scratch area: a directory of its own under `scratch_dir`, and the sweep of the
areas that processes which are gone left behind.

Uploads and transformations work on plaintext in scratch. A stop in the middle of one leaves
its files there; they must not outlive the process. Several processes (API replicas, workers)
may share one scratch dir, so none may simply empty it at start: another's upload may be in
flight. Each process therefore works in an area of its own, and holds an exclusive `flock` on
that area's lock file for as long as it lives. The kernel drops the lock when the process dies,
however it dies (`kill -9` included). A process making its area removes every other area whose
lock it can take: no live process owns it. A live process's area is never touched.

The lock files lie beside the scratch dir (`<data_dir>/locks/scratch/<area>`), not in it: the
scratch dir holds nothing but operations' files, and nothing of it stays open. The lock file is
made and locked before its area exists, so no sweep ever sees an area that is not yet locked;
a sweep removes a file or area only while it holds its lock.

The area is a `ProcessService`: made, and the scratch dir swept, on the process's first use of
scratch space; removed when the platform stops.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from aiaas.core.platform import ProcessService

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

AREA_PREFIX = "process-"
CLAIM_ATTEMPTS = 5


def lock_dir(scratch_dir: Path) -> Path:
    """Where the areas' lock files are, one per area, named as the area."""
    return scratch_dir.parent / "locks" / scratch_dir.name


def _lock(path: Path, *, create: bool) -> int | None:
    """An open descriptor of `path` holding its exclusive lock; None when another process
    holds it (or, unless `create`, when there is no such file)."""
    flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    if not _lock_open(descriptor):
        os.close(descriptor)
        return None
    return descriptor


def _lock_open(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_abandoned(scratch_dir: Path, keep: str | None = None) -> list[str]:
    """Remove every area under `scratch_dir` that no live process holds, and its lock file;
    never `keep`. Returns the names removed."""
    locks = lock_dir(scratch_dir)
    names = {path.name for path in scratch_dir.iterdir()} | {path.name for path in locks.iterdir()}
    removed: list[str] = []
    for name in sorted(names - {keep}):
        # An entry without a lock file (left by a release that wrote into the scratch dir
        # directly) gets one here, which nobody holds: it is abandoned like the others.
        descriptor = _lock(locks / name, create=(scratch_dir / name).exists())
        if descriptor is None:
            continue  # alive, or removed by its owner meanwhile
        try:
            _remove(scratch_dir / name)
            (locks / name).unlink(missing_ok=True)
        finally:
            os.close(descriptor)
        removed.append(name)
    if removed:
        logger.info("removed %d abandoned scratch areas from %s", len(removed), scratch_dir)
    return removed


def _still_at(path: Path, descriptor: int) -> bool:
    try:
        found = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def _claim_name(locks: Path) -> tuple[str, int]:
    """A new area name whose lock file this process made and holds."""
    for _ in range(CLAIM_ATTEMPTS):
        name = f"{AREA_PREFIX}{secrets.token_hex(8)}"
        path = locks / name
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        # A sweep can take a new lock file in the instant before we lock it (it looks like the
        # lock of a dead process then) and unlink it: the lock must be on the file at `path`.
        if _lock_open(descriptor) and _still_at(path, descriptor):
            return name, descriptor
        os.close(descriptor)
    raise RuntimeError(f"could not claim a scratch area in {locks}")


class ScratchArea:
    """This process's own directory under the scratch dir, locked while the process lives."""

    def __init__(self, scratch_dir: Path) -> None:
        locks = lock_dir(scratch_dir)
        for directory in (scratch_dir, locks.parent, locks):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.name, self._descriptor = _claim_name(locks)
        self._lock_path = locks / self.name
        self.directory = scratch_dir / self.name
        self.directory.mkdir(mode=0o700)
        self.swept = sweep_abandoned(scratch_dir, keep=self.name)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self._lock_path.unlink(missing_ok=True)
        os.close(self._descriptor)


async def _close(area: ScratchArea) -> None:
    await asyncio.to_thread(area.close)


SCRATCH_AREA: ProcessService[ScratchArea] = ProcessService(
    "scratch area", lambda platform: ScratchArea(platform.config.scratch_dir), _close
)
"""This process's scratch area: `platform.service(SCRATCH_AREA)`."""


def scratch_area(platform: Platform) -> Path:
    """The directory this process keeps its scratch files in, swept of the dead's on first use."""
    return platform.service(SCRATCH_AREA).directory
