"""The body limit of `/graphql`, and no upload read before authentication.

A body that is not a multipart upload may be at most `graphql_max_body_bytes`: over it (declared,
chunked, or longer than its Content-Length said) it is refused before anything runs. A multipart
upload from a caller without valid credentials is refused 401 before a byte of it is read. Against
a real server: a 200 MiB anonymous POST is answered 413 and leaves the server's memory where it
was, and a 50 MiB anonymous upload is answered 401 without being spooled to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aiaas.core.config import Config
from aiaas.core.platform import Platform
from aiaas.graphql.view import CSRF_HEADER
from server_watch import Server, Watch, watched_server
from support import unique

MiB = 1024**2
CREATE = "mutation($input: CreateProjectInput!) { createProject(input: $input) { __typename } }"
JSON = {"content-type": "application/json"}
BOUNDARY = "aiaas-test-boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", CSRF_HEADER: "1"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def create_project_body(slug: str, size: int) -> bytes:
    """A createProject operation padded, with a variable the operation never reads, to exactly
    `size` bytes."""

    def body(padding: str) -> bytes:
        variables = {"input": {"slug": slug, "name": "Padded"}, "padding": padding}
        return json.dumps({"query": CREATE, "variables": variables}).encode()

    unpadded = len(body(""))
    assert size >= unpadded
    encoded = body("x" * (size - unpadded))
    assert len(encoded) == size
    return encoded


async def project_exists(platform: Platform, slug: str) -> bool:
    async with platform.metadata.acquire() as connection:
        found: bool = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM projects WHERE slug = $1)", slug
        )
    return found


class Source:
    """A request body streamed from a generator that counts what the client has taken from it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += len(chunk)
            yield chunk


def pieces(content: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


def filler(total: int, chunk: bytes = b"x" * MiB) -> Iterator[bytes]:
    """`total` bytes, one reused chunk at a time: never held in memory whole."""
    sent = 0
    while sent < total:
        piece = chunk if total - sent >= len(chunk) else chunk[: total - sent]
        sent += len(piece)
        yield piece


HEALTH = "{ health { status } }"
UPLOAD = "mutation($input: UploadDatasetInput!) { uploadDataset(input: $input) { __typename } }"
UPLOAD_VARIABLES = {"input": {"project": "UHJvamVjdDox", "name": "spooled", "file": None}}


def multipart_upload(file_size: int, *, upload: bool = True) -> Iterator[bytes]:
    """A GraphQL multipart request (operations, map, one file) whose file is `file_size` bytes:
    an uploadDataset, or (`upload` False) a health query that leaves the file unused."""
    operations = json.dumps(
        {"query": UPLOAD, "variables": UPLOAD_VARIABLES} if upload else {"query": HEALTH}
    )
    files_map = {"0": ["variables.input.file"]} if upload else {}
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="operations"\r\n\r\n'
        f"{operations}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="map"\r\n\r\n'
        f"{json.dumps(files_map)}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="0"; filename="data.csv"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield head
    yield from filler(file_size)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart_length(file_size: int, *, upload: bool = True) -> int:
    return sum(len(piece) for piece in multipart_upload(0, upload=upload)) + file_size


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


# In process ---------------------------------------------------------------------------------


async def test_a_json_body_over_the_limit_is_refused_413_and_nothing_runs(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, config: Config
) -> None:
    slug = unique("over")
    body = create_project_body(slug, config.graphql_max_body_bytes + 1)
    source = Source(pieces(body))

    response = await client.post(
        "/graphql",
        content=source.stream(),
        headers={**JSON, **bearer(admin_token), "content-length": str(len(body))},
    )

    assert_refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert str(config.graphql_max_body_bytes) in response.json()["error"]["message"]
    assert source.pulled == 0, "a declared length over the limit is refused before reading"
    assert not await project_exists(platform, slug)


async def test_a_json_body_at_the_limit_is_served(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, config: Config
) -> None:
    slug = unique("at")
    body = create_project_body(slug, config.graphql_max_body_bytes)

    response = await client.post("/graphql", content=body, headers={**JSON, **bearer(admin_token)})

    assert response.json() == {"data": {"createProject": {"__typename": "CreateProjectSuccess"}}}
    assert await project_exists(platform, slug)


@pytest.mark.parametrize(("excess", "served"), [(0, True), (1, False)], ids=["at", "over"])
async def test_a_chunked_body_is_counted_and_cut_off_once_it_passes_the_limit(
    client: httpx.AsyncClient,
    admin_token: str,
    platform: Platform,
    config: Config,
    excess: int,
    served: bool,
) -> None:
    limit = config.graphql_max_body_bytes
    slug = unique("chunked")
    # Four times the limit when over it: what matters is where the server stopped reading.
    body = create_project_body(slug, limit + excess * 3 * limit + excess)
    chunk = 64 * 1024
    source = Source(pieces(body, chunk))

    response = await client.post(
        "/graphql", content=source.stream(), headers={**JSON, **bearer(admin_token)}
    )

    assert "content-length" not in response.request.headers
    assert await project_exists(platform, slug) is served
    if served:
        assert response.json()["data"]["createProject"]["__typename"] == "CreateProjectSuccess"
    else:
        assert_refused(response, 413, "PAYLOAD_TOO_LARGE")
        assert source.pulled <= limit + chunk


@pytest.mark.parametrize("actual", [4096, 2 * MiB], ids=["within-the-limit", "over-the-limit"])
async def test_a_body_longer_than_its_content_length_is_never_served(
    client: httpx.AsyncClient, admin_token: str, platform: Platform, actual: int
) -> None:
    slug = unique("lying")
    body = create_project_body(slug, actual)

    response = await client.post(
        "/graphql",
        content=body,
        headers={**JSON, **bearer(admin_token), "content-length": "100"},
    )

    assert response.status_code in (400, 413), response.text
    assert response.json()["error"]["code"] in ("BAD_REQUEST", "PAYLOAD_TOO_LARGE")
    assert not await project_exists(platform, slug)


@pytest.mark.parametrize("authorization", [None, "Bearer aiaas_000000000000_nobody"])
async def test_an_upload_without_valid_credentials_is_refused_401_before_it_is_read(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    source = Source(multipart_upload(4 * MiB))
    headers = dict(MULTIPART)
    if authorization is not None:
        headers["authorization"] = authorization

    response = await client.post("/graphql", content=source.stream(), headers=headers)

    assert_refused(response, 401, "UNAUTHENTICATED")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert source.pulled == 0


async def test_an_upload_declared_over_the_upload_limit_is_refused_413_before_it_is_read(
    client: httpx.AsyncClient, admin_token: str, config: Config
) -> None:
    declared = config.upload_max_bytes + config.graphql_max_body_bytes + 1
    source = Source(multipart_upload(MiB))

    response = await client.post(
        "/graphql",
        content=source.stream(),
        headers={**MULTIPART, **bearer(admin_token), "content-length": str(declared)},
    )

    assert_refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert source.pulled == 0


async def test_an_upload_may_be_larger_than_the_small_limit(
    client: httpx.AsyncClient, admin_token: str, config: Config
) -> None:
    # Over the limit of a plain body, far within the upload limit: multipart is exempt. The
    # operation asks only for `health`: the file is parsed as a form part and never used, so
    # that no dataset is made.
    file_size = 2 * config.graphql_max_body_bytes
    source = Source(multipart_upload(file_size, upload=False))

    response = await client.post(
        "/graphql", content=source.stream(), headers={**MULTIPART, **bearer(admin_token)}
    )

    assert response.json() == {"data": {"health": {"status": "ok"}}}, response.text
    assert source.pulled == multipart_length(file_size, upload=False)


# Against a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with watched_server(config, tmp_path_factory) as server:
        yield server


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    sent: int
    """Body bytes the client had sent when the answer arrived (and it stopped sending)."""


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


async def post_raw(
    server: Server, headers: dict[str, str], body: Iterator[bytes], length: int | None
) -> RawAnswer:
    """POST to /graphql over a plain socket, sending `body` until the answer arrives: unlike
    httpx, which reads the answer only after sending the whole body, this shows whether the
    server answered before it had read it. `length` None sends the body chunked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.running.port)
    framing = (
        {"transfer-encoding": "chunked"} if length is None else {"content-length": str(length)}
    )
    lines = [f"{name}: {value}" for name, value in {**headers, **framing}.items()]
    writer.write(
        ("\r\n".join(["POST /graphql HTTP/1.1", "host: aiaas.test", *lines]) + "\r\n\r\n").encode()
    )
    sent = 0

    async def send_body() -> None:
        nonlocal sent
        for piece in chunked(body) if length is None else body:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)

    sender = asyncio.create_task(send_body())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        sent_when_answered = sent
        status_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
        answer_headers = {
            name.lower(): value for name, value in (line.split(": ", 1) for line in header_lines)
        }
        content = await reader.readexactly(int(answer_headers["content-length"]))
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return RawAnswer(
        status=int(status_line.split()[1]),
        headers=answer_headers,
        body=json.loads(content) if content.startswith(b"{") else {"text": content.decode()},
        sent=sent_when_answered,
    )


def assert_raw_refused(answer: RawAnswer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert answer.body["error"]["code"] == code


RSS_GROWTH_BOUND = 50 * MiB


@pytest.mark.slow
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_anonymous_200_mib_post_is_refused_413_without_growing_the_server(
    server: Server, declared: bool
) -> None:
    total = 200 * MiB
    async with httpx.AsyncClient(base_url=server.running.base_url) as client:
        assert (await client.post("/graphql", json={"query": "{ health { status } }"})).is_success

    with Watch(server) as watch:
        answer = await post_raw(server, JSON, filler(total), total if declared else None)

    print(
        f"\n200 MiB POST ({'declared' if declared else 'chunked'}): server RSS before "
        f"{watch.baseline / MiB:.1f} MiB, peak {watch.peak / MiB:.1f} MiB, growth "
        f"{watch.growth / MiB:.1f} MiB; answered after {answer.sent / MiB:.1f} MiB sent"
    )
    assert_raw_refused(answer, 413, "PAYLOAD_TOO_LARGE")
    # The memory the body would take is the proof it was not read into the server; when the
    # answer reaches the client (`answer.sent`) depends on scheduling, so it is printed only.
    assert watch.growth < RSS_GROWTH_BOUND
    assert server.running.process.poll() is None


@pytest.mark.slow
async def test_an_anonymous_50_mib_upload_is_refused_401_and_nothing_is_spooled(
    server: Server,
) -> None:
    file_size = 50 * MiB
    assert server.files_left() == []

    with Watch(server) as watch:
        answer = await post_raw(
            server, MULTIPART, multipart_upload(file_size), multipart_length(file_size)
        )

    print(
        f"\n50 MiB anonymous upload: server RSS growth {watch.growth / MiB:.1f} MiB, the server "
        f"wrote {watch.written / 1024:.1f} KiB; answered after {answer.sent / MiB:.1f} MiB sent"
    )
    assert_raw_refused(answer, 401, "UNAUTHENTICATED")
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert server.files_left() == []
    assert watch.temp_descriptors == set()
    # A spooled upload is written somewhere, even to a file that has no name: the server wrote
    # no more than its answer and a log line.
    assert watch.written < MiB
    assert watch.growth < RSS_GROWTH_BOUND
