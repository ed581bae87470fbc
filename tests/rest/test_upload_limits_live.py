"""Uploads against a real server: a 16 KB Parquet file that decodes to one 512 MiB string is
refused with a typed error while the API's memory stays where it was, and an upload whose client
disconnects is stopped (its ingest process killed) and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.core.config import Config
from aiaas.core.identity import projects
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from server_watch import Server, Watch, walk, watched_server
from support import poll_until

MiB = 1 << 20
API_RSS_GROWTH_BOUND = 64 * MiB
"""How much the API process may grow while it refuses the file: far less than the file
decodes to, and than one copy of its string."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with watched_server(config, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
async def project(platform: Platform, admin_token: str) -> projects.Project:
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    slug = f"live-{uuid.uuid4().hex[:8]}"
    return await projects.create_project(platform, admin, slug=slug, name=slug)


def versions_path(project: projects.Project, dataset: str) -> str:
    return f"/v1/projects/{project.slug}/datasets/{dataset}/versions"


def ingest_children(server: Server) -> list[psutil.Process]:
    return [
        child
        for child in server.process.children(recursive=True)
        if "aiaas.core.data.tabular.ingest_child" in " ".join(child.cmdline())
    ]


async def versions_of(platform: Platform, project: projects.Project) -> int:
    async with platform.metadata.acquire() as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM dataset_versions WHERE project_id = $1", project.id
        )
    return count


def artifact_files(server: Server) -> list[Path]:
    return walk(server.data_dir / "artifacts")


def string_bomb(path: Path, size: int) -> Path:
    """A Parquet file of one text value of `size` bytes, compressed to almost nothing; made
    from one buffer, never a Python string of that size."""
    offsets = pa.array([0, size], pa.int32()).buffers()[1]
    values = pa.StringArray.from_buffers(1, offsets, pa.py_buffer(b"a" * size))
    pq.write_table(pa.table({"text": values}), path, compression="zstd")
    return path


@dataclass(frozen=True)
class Uploading:
    server: Server
    platform: Platform
    project: projects.Project
    token: str

    async def footprint(self) -> tuple[int, list[Path]]:
        """The project's versions, and the server's artifact files."""
        return await versions_of(self.platform, self.project), artifact_files(self.server)

    async def send(
        self, dataset: str, body: bytes, declared: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An upload of `body` declared `declared` bytes long, over a raw connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.running.port)
        head = [
            f"POST {versions_path(self.project, dataset)} HTTP/1.1",
            "host: aiaas.test",
            f"authorization: Bearer {self.token}",
            f"content-length: {declared}",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return reader, writer

    async def ingest_busy(self) -> bool:
        return any(child.cpu_percent(0.05) > 0 for child in ingest_children(self.server))


@pytest.fixture
def uploading(
    server: Server, platform: Platform, project: projects.Project, admin_token: str
) -> Uploading:
    return Uploading(server, platform, project, admin_token)


async def test_a_16_kb_parquet_of_a_512_mib_string_is_refused_and_the_api_keeps_its_memory(
    uploading: Uploading, tmp_path: Path
) -> None:
    server, project, admin_token = uploading.server, uploading.project, uploading.token
    bomb = string_bomb(tmp_path / "bomb.parquet", 512 * MiB).read_bytes()
    assert len(bomb) < 64 * 1024
    before = await uploading.footprint()
    async with httpx.AsyncClient(base_url=server.running.base_url, timeout=120) as client:
        with Watch(server) as watch:
            response = await client.post(
                versions_path(project, "bomb"),
                content=bomb,
                headers={"authorization": f"Bearer {admin_token}"},
            )

    print(
        f"\n{len(bomb) / 1024:.1f} KB Parquet of a 512 MiB string: API RSS before "
        f"{watch.baseline / MiB:.1f} MiB, peak {watch.peak / MiB:.1f} MiB, growth "
        f"{watch.growth / MiB:.1f} MiB"
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    # Refused from the footer: the one value is past the cell limit.
    assert "'text' holds a value longer than the limit" in error["fieldErrors"]["file"]
    assert watch.growth < API_RSS_GROWTH_BOUND
    assert await uploading.footprint() == before
    assert server.files_left() == []


def slow_csv(path: Path, rows: int = 60_000, columns: int = 40) -> bytes:
    """A CSV that takes the ingest process seconds to read."""
    lines = [",".join(f"c{column}" for column in range(columns))]
    lines += [
        ",".join(f"v{row * columns + column}" for column in range(columns)) for row in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path.read_bytes()


async def test_an_upload_whose_client_disconnects_is_stopped_and_leaves_nothing(
    uploading: Uploading, tmp_path: Path
) -> None:
    server = uploading.server
    body = slow_csv(tmp_path / "slow.csv")
    before = await uploading.footprint()
    reader, writer = await uploading.send("abandoned", body, len(body))

    assert await poll_until(uploading.ingest_busy, timeout_s=30), (
        "the upload never reached its ingest process"
    )
    [child] = ingest_children(server)
    writer.close()  # the client gives up
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()

    async def stopped() -> bool:
        return not child.is_running() or child.status() == psutil.STATUS_ZOMBIE

    assert await poll_until(stopped, timeout_s=10), "the ingest process outlived its caller"
    # Whatever the server does after the kill it does within moments; the version it would
    # have stored is not there, nor its artifact, nor the upload's scratch files.
    await asyncio.sleep(0.5)
    assert await uploading.footprint() == before
    assert server.files_left() == []
    assert "Traceback" not in server.running.log()
    del reader


async def test_a_body_cut_off_while_it_is_parsed_stops_its_reading_and_leaves_nothing(
    uploading: Uploading, tmp_path: Path
) -> None:
    """The ingest process reads a body as it arrives (`datasets.arriving_uploads`): a client
    that stops halfway, the body never complete, leaves no process waiting for the rest."""
    server = uploading.server
    body = slow_csv(tmp_path / "cut.csv")
    before = await uploading.footprint()
    reader, writer = await uploading.send("cut-off", body[: len(body) // 2], len(body))

    assert await poll_until(uploading.ingest_busy, timeout_s=30), (
        "half the body was not read as it arrived"
    )
    children = ingest_children(server)
    writer.close()  # the client gives up with half its body sent
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()

    async def stopped() -> bool:
        return all(
            not child.is_running() or child.status() == psutil.STATUS_ZOMBIE for child in children
        )

    assert await poll_until(stopped, timeout_s=10), "an ingest process waits for the rest"
    await asyncio.sleep(0.5)
    assert await uploading.footprint() == before
    assert server.files_left() == []
    assert "Traceback" not in server.running.log()
    del reader
