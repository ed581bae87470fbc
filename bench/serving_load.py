"""The load generator of `serving_batching.py`'s HTTP part, run as a process of its own.

`--callers` concurrent callers each send batch-1 KServe V2 JSON requests to one model, back to
back, over a keep-alive connection of their own, for `--warm-up-seconds` and then `--seconds`.
Like a V2 client, it reads the model's inputs from its metadata and sends one tensor per input,
of shape [1] (or [1, 1] where the input has a second dimension). Requests that start after the
warm-up and end before the stop count: their rate and latencies (from the call to the parsed
answer) are printed as one JSON object, with the number and a sample of failures, and the CPU
time that this process (and, with `--server-pid`, the server, and the server's main thread, its
event loop, where everything but the model runs) spent per counted request.

The load generator shares the machine's cores with the server, so what it spends per request
is taken from the server. With `--client raw` (the default) each caller holds one keep-alive
HTTP/1.1 connection of asyncio streams, writes a request prepared in advance and reads the
answer by its Content-Length, as load generators such as wrk do: about 0.1 ms of CPU per
request. `--client httpx` gives each caller an `httpx.AsyncClient` limited to one connection
instead: what a Python application calling the API would spend, about 1-2 ms per request here.
(One httpx client shared by every caller was worse still: its pool does work proportional to
its connections on every request, about 7 ms with 64.)

It imports neither aiaas nor JAX, so that it starts fast and takes from the cores only what a
client must.

    SERVING_LOAD_TOKEN=... python bench/serving_load.py --url http://127.0.0.1:8000 \
        --model bench.batched [--callers 64] [--server-pid PID]

The API token comes from the environment, not the command line, where any user could read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil


class RawConnection:
    """One keep-alive HTTP/1.1 connection that posts prepared bodies and returns the answer's
    status and body. Enough HTTP for the server under test, which answers with Content-Length."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\n{self.headers}"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line, _, header_block = (await self.reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        length = 0
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


def request_bodies(metadata: dict[str, Any], count: int) -> list[bytes]:
    """`count` distinct batch-1 request bodies for the model's declared inputs."""
    draw = random.Random(1)
    bodies = []
    for _ in range(count):
        inputs = []
        for spec in metadata["inputs"]:
            shape = [1 if size == -1 else size for size in spec["shape"]]
            if spec["datatype"].startswith(("INT", "UINT")):
                value: float = draw.randint(0, 9)
            else:
                value = draw.gauss(0.0, 1.0)
            name, datatype = spec["name"], spec["datatype"]
            inputs.append({"name": name, "datatype": datatype, "shape": shape, "data": [value]})
        bodies.append(json.dumps({"inputs": inputs}, separators=(",", ":")).encode())
    return bodies


def cpu_s(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def event_loop_cpu_s(process: psutil.Process | None) -> float:
    """The CPU time of the server's main thread, its event loop: everything a request costs
    outside the model, which runs in other threads (the batcher's executor and XLA's own)."""
    if process is None:
        return 0.0
    for thread in process.threads():
        if thread.id == process.pid:
            return float(thread.user_time + thread.system_time)
    raise RuntimeError(f"process {process.pid} has no main thread")


async def drive(arguments: argparse.Namespace) -> dict[str, Any]:
    headers = {
        "authorization": f"Bearer {os.environ['SERVING_LOAD_TOKEN']}",
        "content-type": "application/json",
    }
    server = psutil.Process(arguments.server_pid) if arguments.server_pid else None
    me = psutil.Process()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=arguments.url,
                    headers=headers,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=60,
                )
            )
            for _ in range(arguments.callers)
        ]
        response = await clients[0].get(f"/v2/models/{arguments.model}")
        response.raise_for_status()
        bodies = request_bodies(response.json(), 512)
        path = f"/v2/models/{arguments.model}/infer"
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + arguments.warm_up_seconds
        stop_at = measure_from + arguments.seconds
        latencies: list[float] = []
        failures: list[str] = []
        cpu: dict[str, float] = {}

        raw = [RawConnection(arguments.url, headers) for _ in range(arguments.callers)]

        async def send(caller_index: int, body: bytes) -> str:
            """'' for a good answer, else what went wrong."""
            try:
                if arguments.client == "raw":
                    status, content = await raw[caller_index].post(path, body)
                else:
                    answer = await clients[caller_index].post(path, content=body)
                    status, content = answer.status_code, answer.content
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as error:
                return f"{type(error).__name__}: {error}"
            if status == 200 and json.loads(content)["outputs"]:
                return ""
            return f"{status}: {content[:200]!r}"

        async def caller(offset: int) -> None:
            index = offset
            while (started := loop.time()) < stop_at:
                failure = await send(offset, bodies[index % len(bodies)])
                ended = loop.time()
                if started >= measure_from and ended <= stop_at:
                    if failure:
                        failures.append(failure)
                    else:
                        latencies.append(ended - started)
                index += arguments.callers

        async def clock() -> None:
            await asyncio.sleep(max(0.0, measure_from - loop.time()))
            cpu["client"], cpu["server"] = -cpu_s(me), -cpu_s(server)
            cpu["server_loop"] = -event_loop_cpu_s(server)
            await asyncio.sleep(max(0.0, stop_at - loop.time()))
            cpu["client"] += cpu_s(me)
            cpu["server"] += cpu_s(server)
            cpu["server_loop"] += event_loop_cpu_s(server)

        started_at = time.perf_counter()
        await asyncio.gather(clock(), *(caller(offset) for offset in range(arguments.callers)))
        await asyncio.gather(*(connection.close() for connection in raw))
    counted = max(1, len(latencies))
    return {
        "requests_per_s": len(latencies) / arguments.seconds,
        "latencies_ms": [round(latency * 1000, 4) for latency in latencies],
        "failures": len(failures),
        "failure_samples": sorted(set(failures))[:5],
        "client_cpu_ms_per_request": 1000 * cpu["client"] / counted,
        "server_cpu_ms_per_request": 1000 * cpu["server"] / counted if server else None,
        "server_loop_cpu_ms_per_request": (1000 * cpu["server_loop"] / counted if server else None),
        "wall_s": time.perf_counter() - started_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True, help="the V2 model name")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--warm-up-seconds", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--server-pid", type=int, help="report the server's CPU time too")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    print(json.dumps(asyncio.run(drive(parser.parse_args()))))


if __name__ == "__main__":
    main()
