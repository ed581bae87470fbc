"""A dataset upload is parsed while its body still arrives (`datasets.arriving_uploads`): its
ingest process reads the first rows before the last are sent, and every refusal still applies
as it did to a body read once received: past the size limit (413), a malformed or binary file
(400), each audited, each leaving nothing behind and no ingest process reading."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from aiaas.core.config import Config
from aiaas.core.identity import projects
from aiaas.core.identity.accounts import verify_token
from aiaas.core.platform import Platform
from support import audit_mark, events_since, footprint, unique
from upload_files import client_with_upload_limit

MiB = 1 << 20
PIECE_BYTES = 256 * 1024
ROWS = 200_000
LIMIT = 6 * MiB


@pytest.fixture(scope="module")
async def project(platform: Platform, admin_token: str) -> projects.Project:
    async with platform.metadata.acquire() as connection:
        admin = await verify_token(connection, admin_token, "test")
    return await projects.create_project(platform, admin, slug=unique("arriving"), name="A")


@pytest.fixture(scope="module")
def auth(admin_token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {admin_token}"}


@pytest.fixture(scope="module")
async def limited_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose uploads may be at most `LIMIT` bytes (same database)."""
    async with client_with_upload_limit(config, LIMIT) as client:
        yield client


def csv_body(rows: int = ROWS, last_row: bytes = b"") -> bytes:
    """CSV no other test uploads, so it is never deduplicated: about 27 bytes a row."""
    marker = uuid.uuid4().hex[:8].encode()
    lines = b"".join(b"%d,%s-%d,%d.25\n" % (n, marker, n % 13, n) for n in range(rows))
    return b"id,label,amount\n" + lines + last_row


def ingest_children() -> set[int]:
    return {
        child.pid
        for child in psutil.Process(os.getpid()).children()
        if "aiaas.core.data.tabular.ingest_child" in " ".join(child.cmdline())
    }


def being_parsed(scratch_dir: Path) -> bool:
    """Whether an ingest process has begun its first pass over an upload: it spills the
    text it parsed to `text.arrows` beside the upload."""
    return any(path.name == "text.arrows" for path in scratch_dir.rglob("*"))


class PausingBody:
    """A body sent in pieces that, after `first` bytes, waits (up to 30 s) until an upload is
    being parsed before it sends the rest, and notes whether one was."""

    def __init__(self, content: bytes, first: int, scratch_dir: Path) -> None:
        self.content, self.first, self.scratch_dir = content, first, scratch_dir
        self.parsed_before_the_end = False
        self.readers: set[int] = set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        before = ingest_children()
        for start in range(0, len(self.content), PIECE_BYTES):
            if start == self.first:
                for _ in range(1500):
                    if being_parsed(self.scratch_dir):
                        self.parsed_before_the_end = True
                        break
                    await asyncio.sleep(0.02)
                self.readers = ingest_children() - before
            yield self.content[start : start + PIECE_BYTES]


def versions_url(project: projects.Project, dataset: str) -> str:
    return f"/v1/projects/{project.slug}/datasets/{dataset}/versions"


async def test_a_csv_body_is_parsed_while_it_still_arrives(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    config: Config,
) -> None:
    body = PausingBody(csv_body(), first=4 * MiB, scratch_dir=config.scratch_dir)

    response = await client.post(
        versions_url(project, unique("arriving")), content=body, headers=auth
    )

    assert response.status_code == 201, response.text
    assert body.parsed_before_the_end, "the body was parsed only once it had all arrived"
    version = response.json()["version"]
    assert version["rowCount"] == ROWS
    assert [column["type"] for column in version["columns"]] == ["integer", "string", "float"]


async def test_a_body_that_passes_the_limit_while_parsed_is_refused_and_leaves_nothing(
    limited_client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
    config: Config,
) -> None:
    content = csv_body(rows=2 * ROWS)
    assert len(content) > LIMIT
    body = PausingBody(content, first=4 * MiB, scratch_dir=config.scratch_dir)
    before, mark = await footprint(platform), await audit_mark(platform)

    response = await limited_client.post(
        versions_url(project, unique("too-large")), content=body, headers=auth
    )

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body.parsed_before_the_end
    assert body.readers, "no ingest process read the body as it arrived"
    # The process that was reading the body is stopped with it.
    assert not any(psutil.pid_exists(pid) and is_live(pid) for pid in body.readers)
    assert await footprint(platform) == before
    assert await events_since(platform, mark) == [("dataset.upload", "failed")]


def is_live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("last_row", "complaint"),
    [(b"1,2\n", "ragged rows"), (b"1,wo\x00rd,2.5\n", "binary data")],
    ids=["ragged", "nul-byte"],
)
async def test_a_bad_row_at_the_end_of_a_parsed_body_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    project: projects.Project,
    platform: Platform,
    config: Config,
    last_row: bytes,
    complaint: str,
) -> None:
    body = PausingBody(csv_body(last_row=last_row), first=4 * MiB, scratch_dir=config.scratch_dir)
    before, mark = await footprint(platform), await audit_mark(platform)

    response = await client.post(versions_url(project, unique("bad")), content=body, headers=auth)

    assert response.status_code == 400, response.text
    assert body.parsed_before_the_end
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    assert complaint in error["message"]
    assert await footprint(platform) == before
    assert await events_since(platform, mark) == [("dataset.upload", "failed")]
