"""A TCP relay that delays what a server sends, for a kernel without `tc netem` (sch_netem).

    python delay_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_FILE

It carries every connection to the target unchanged, and holds each chunk the target sends for
the number of milliseconds written in DELAY_FILE (0 when the file is missing or empty), as netem
on the server's link would hold each packet it sends: a request's answer arrives that much
later, and the order of bytes never changes. The file is read again every 100 ms, so that a test
turns the delay on and off while connections stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

CHUNK_BYTES = 64 * 1024
RELOAD_S = 0.1


class Delay:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds = 0.0

    async def follow(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                text = self.path.read_text().strip() if self.path.exists() else ""
                self.seconds = float(text or 0) / 1000
            await asyncio.sleep(RELOAD_S)


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()


async def _forward_late(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Delay
) -> None:
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                at, chunk = await due.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    delivery = asyncio.create_task(deliver())
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(CHUNK_BYTES):
            due.put_nowait((time.monotonic() + delay.seconds, chunk))
    due.put_nowait((time.monotonic() + delay.seconds, b""))
    await delivery


async def main(listen: str, port: int, target: str, target_port: int, delay_file: Path) -> None:
    delay = Delay(delay_file)
    follower = asyncio.create_task(delay.follow())

    async def carry(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(target, target_port)
        except OSError:
            client.close()
            return
        await asyncio.gather(
            _forward(client_reader, upstream), _forward_late(upstream_reader, client, delay)
        )

    server = await asyncio.start_server(carry, listen, port)
    async with server:
        await server.serve_forever()
    follower.cancel()


if __name__ == "__main__":
    listen_host, listen_port, target_host, target_port, file = sys.argv[1:6]
    asyncio.run(main(listen_host, int(listen_port), target_host, int(target_port), Path(file)))
