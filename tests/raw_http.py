"""HTTP/1.1 over a bare asyncio socket, for requests that a real client would tidy up.

httpx (like every client) decodes nothing it sends, but it does normalise: it re-encodes the
path, drops or recomputes Content-Length, refuses a header it thinks malformed. A hostile client
does none of that. `exchange` writes a request exactly as given and reads back whatever the
server answers, so that a test can tell an answer from a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

Header = tuple[bytes, bytes]

HANG_GUARD_S = 30.0
"""How long to wait for a server that neither answers nor closes before failing the test: far
above any answer, so that it only ever stops a hang, never times an answer."""


@dataclass(frozen=True)
class RawResponse:
    status: int
    reason: str
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def from_the_app(self) -> bool:
        """Whether the app answered, rather than the HTTP server refusing the bytes itself:
        every answer of the app carries a request id (RequestIdMiddleware)."""
        return self.header("x-request-id") is not None


def request_bytes(
    method: str, target: bytes | str, headers: list[Header], body: bytes = b""
) -> bytes:
    """The request as it goes on the wire: no header is added, changed or checked. The caller
    adds Host, Content-Length and Connection as it means them, or leaves them out."""
    if isinstance(target, str):
        target = target.encode("ascii")
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(
    port: int, request: bytes, *, half_close: bool = False
) -> tuple[RawResponse | None, bytes]:
    """Send `request` to 127.0.0.1:`port` and read until the server closes the connection.

    Returns the first response parsed from what came back (None when nothing parseable came:
    a dropped connection), and every byte that came back. With `half_close`, the client says
    after the request that it will send nothing more (as a client that lied about the body's
    length and gave up would). A reset while writing is not a failure: a server may answer
    and close before it has read all of a body it refuses: what it answered is still read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    try:
        try:
            writer.write(request)
            await writer.drain()
            if half_close:
                writer.write_eof()
        except OSError:  # reset, broken pipe, or no longer connected: the server hung up
            pass
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                try:
                    chunk = await reader.read(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return parse_response(bytes(received)), bytes(received)


def parse_response(data: bytes) -> RawResponse | None:
    """The first final response in `data` (past any `100 Continue`), its body read by
    Content-Length, chunked or to the end; None if `data` holds no complete response head."""
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator or not head.startswith(b"HTTP/1."):
        return None
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    if parts[1].startswith(b"1"):
        return parse_response(rest)
    headers: list[Header] = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    response = RawResponse(
        status=int(parts[1]),
        reason=parts[2].decode("latin-1") if len(parts) > 2 else "",
        headers=headers,
    )
    length = response.header("content-length")
    if response.header("transfer-encoding") == "chunked":
        body = _unchunked(rest)
    elif length is not None and length.isdigit():
        body = rest[: int(length)]
    else:
        body = rest
    return RawResponse(response.status, response.reason, headers, body)


def _unchunked(data: bytes) -> bytes:
    body = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        body += data[:size]
        data = data[size + 2 :]
    return bytes(body)
