"""Scratch space is swept at start: what a process that died left there (an upload cut off by a
stop, in plaintext) is removed by the next process to make its scratch area, while the area of
a process still running (another replica, a worker sharing the data dir) is left alone."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiaas.core.auth import Principal
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config, build_config
from aiaas.core.data import datasets, upload_version
from aiaas.core.data.scratch_area import SCRATCH_AREA, ScratchArea, lock_dir
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from support import bootstrap_admin_principal

PLAINTEXT = "card_number,amount\n4111111111111111,12.50\n"

# A process of its own that makes its scratch area, leaves an upload's file in it, says so, and
# keeps running until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from aiaas.core.data.scratch_area import ScratchArea

    area = ScratchArea(Path(sys.argv[1]))
    (area.directory / "upload.csv").write_text(sys.argv[2])
    print(area.name, flush=True)
    sys.stdin.read()
    area.close()
    """
)


class AreaHolder:
    def __init__(self, scratch_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(scratch_dir), PLAINTEXT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.name = self.process.stdout.readline().strip()
        assert self.name, "the holder did not make its area"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=30)


@pytest.fixture
def holders() -> Iterator[list[AreaHolder]]:
    started: list[AreaHolder] = []
    yield started
    for holder in started:
        if holder.process.poll() is None:
            holder.kill()
        for pipe in (holder.process.stdin, holder.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


def config_with_data_dir(config: Config, data_dir: Path) -> Config:
    return build_config({**config.model_dump(), "data_dir": data_dir})


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


async def test_a_dead_process_area_is_swept_at_start_and_a_live_one_is_kept(
    config: Config, tmp_path: Path, holders: list[AreaHolder]
) -> None:
    shared = config_with_data_dir(config, tmp_path / "data")
    scratch_dir = shared.scratch_dir
    dead = AreaHolder(scratch_dir)
    holders.append(dead)
    alive = AreaHolder(scratch_dir)
    holders.append(alive)
    dead.kill()  # stopped in the middle of its upload: its file stays, in plaintext
    # What an older release left: a private directory straight in the scratch dir.
    legacy = scratch_dir / "tmpk3v9a1"
    legacy.mkdir()
    (legacy / "upload.csv").write_text(PLAINTEXT)
    assert (scratch_dir / dead.name / "upload.csv").read_text() == PLAINTEXT

    platform = create_platform(shared)
    await platform.start()
    try:
        own = platform.service(SCRATCH_AREA)
        remaining = {path.name for path in scratch_dir.iterdir()}
        assert remaining == {own.name, alive.name}
        assert sorted(own.swept) == sorted([dead.name, legacy.name])
        assert not (lock_dir(scratch_dir) / dead.name).exists()
        # The live process's upload is untouched, and it goes on to finish normally.
        assert (scratch_dir / alive.name / "upload.csv").read_text() == PLAINTEXT
        assert (lock_dir(scratch_dir) / alive.name).exists()
    finally:
        await platform.stop()
    assert alive.finish() == 0
    # Each process removes its own area when it stops: nothing is left at all.
    assert list(scratch_dir.iterdir()) == []
    assert list(lock_dir(scratch_dir).iterdir()) == []


def test_an_area_held_in_this_process_is_kept(tmp_path: Path) -> None:
    """Two platforms of one process (as tests make them) do not sweep each other's areas."""
    scratch_dir = tmp_path / "scratch"
    first = ScratchArea(scratch_dir)
    try:
        (first.directory / "upload.csv").write_text(PLAINTEXT)
        second = ScratchArea(scratch_dir)
        second.close()
        assert second.swept == []
        assert (first.directory / "upload.csv").read_text() == PLAINTEXT
    finally:
        first.close()


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


async def test_an_upload_works_in_the_process_area_and_leaves_nothing(
    platform: Platform, admin: Principal, tmp_path: Path
) -> None:
    slug = f"scratch-{uuid.uuid4().hex[:10]}"
    project = await create_project(platform, admin, slug=slug, name=slug)
    source = tmp_path / "upload.csv"
    source.write_text(PLAINTEXT)
    area = platform.service(SCRATCH_AREA).directory
    with datasets.scratch(platform) as work:
        assert work.parent == area
        assert stat.S_IMODE(work.stat().st_mode) == 0o700

    added = await upload_version(platform, admin, project.id, dataset_name="cards", source=source)

    assert added.version.row_count == 1
    assert stat.S_IMODE(area.stat().st_mode) == 0o700
    assert files_under(platform.config.scratch_dir) == []
    assert list(area.iterdir()) == []
