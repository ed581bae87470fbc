"""Image requests over V2: binary tensors against JSON tensors (and encoded PNG files), at
`--callers` concurrent callers, against a real `aiaas serve`.

The model is a small ONNX graph taking `image` uint8 [N, 16, 16, 3] (`--side` sets another
size), as the contract of docs/guides/images.md has it: cast to float, a 3x3 convolution to 8
channels, their means; it is
uploaded (`POST /v1/projects/bench/models/images/versions`) and served by the trees extra's
`onnx` runtime, deployed through GraphQL with maxBatchSize 64 and maxWaitMs 2.

Every request carries `--images` images (8): as the same pixels in three encodings, built
once before the runs, so that the callers only send:

- `binary`: V2 `UINT8` [8, side, side, 3] in the binary extension (what tritonclient sends);
- `json`: the same tensor as a JSON list of numbers;
- `png`: V2 `BYTES` [8], each a PNG file in the binary extension, decoded and fitted by the
  server.

The server runs on loopback in a process of its own, on a fresh PostgreSQL database of the
bench's (dropped at the end) and a Redis database (`--redis-db`, where the bench deletes only
its own keys). The callers are asyncio tasks in the bench's process, each one request after
the other over a keep-alive connection. The set-ups alternate for `--repeat` runs of
`--seconds`; `binary_vs_json_ratio` is the median of the runs' ratios of images/s of `binary`
over `json` (a ratio of two set-ups measured back to back is steadier on a shared machine than
a ratio of medians), and `png_vs_json_ratio` likewise.

    python bench/image_serving.py [--seconds 3] [--repeat 3] [--callers 32] [--images 8]
        [--side 16] [--database-url postgresql://...] [--redis-url redis://...]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from serving_batching import PROJECT, add_service_options, bench_platform, running_server

from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config
from aiaas.core.identity import accounts as identity
from aiaas.core.identity.projects import create_project
from aiaas.core.images import encode_png
from aiaas.core.platform import Platform
from aiaas.graphql.relay import to_global_id

CHANNELS, FILTERS = 3, 8
SETUPS = ("binary", "json", "png")

CREATE_DEPLOYMENT = """
mutation($input: CreateDeploymentInput!) {
  createDeployment(input: $input) {
    __typename
    ... on DeploymentSuccess { deployment { id v2ModelName } }
    ... on InvalidInputError { message }
  }
}
"""
DEPLOYMENT_STATE = "query($id: ID!) { node(id: $id) { ... on Deployment { state reason } } }"


def image_graph(side: int) -> bytes:
    """features = mean over the image of conv3x3(image / 255): [N, 8]."""
    kernels = np.random.default_rng(0).normal(size=(FILTERS, CHANNELS, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["planes"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["planes", "kernels"], ["convolved"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["convolved"], ["features"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "image-features",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", side, side, CHANNELS])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FILTERS])],
        initializer=[numpy_helper.from_array(kernels / 255, "kernels")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def request_bodies(
    images: int, side: int, count: int
) -> dict[str, list[tuple[bytes, dict[str, str]]]]:
    """`count` distinct request bodies (and headers) per set-up, the same pixels in each."""
    draw = np.random.default_rng(1)
    bodies: dict[str, list[tuple[bytes, dict[str, str]]]] = {setup: [] for setup in SETUPS}
    for _ in range(count):
        pixels = draw.integers(0, 256, size=(images, side, side, CHANNELS), dtype=np.uint8)
        tensor = {"name": "image", "datatype": "UINT8", "shape": list(pixels.shape)}
        as_json = {"inputs": [{**tensor, "data": pixels.ravel().tolist()}]}
        bodies["json"].append((json.dumps(as_json).encode(), {}))
        raw = pixels.tobytes()
        bodies["binary"].append(binary_body(tensor, raw))
        files = [encode_png(image) for image in pixels]
        packed = b"".join(struct.pack("<I", len(file)) + file for file in files)
        png_tensor = {"name": "image", "datatype": "BYTES", "shape": [images]}
        bodies["png"].append(binary_body(png_tensor, packed))
    return bodies


def binary_body(tensor: dict[str, Any], data: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}]}
    ).encode()
    return header + data, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


async def bench_user(platform: Platform) -> str:
    """An API token of a user who owns the project `bench`."""
    user = await identity.create_user(platform, None, username="bench")
    issued = await identity.create_api_token(platform, None, name="bench", user_id=user.id)
    async with platform.metadata.acquire() as connection:
        principal = await identity.verify_token(connection, issued.secret, "bench")
    project = await create_project(platform, principal, slug=PROJECT, name="Bench")
    # The enforcer reloads the policy when PostgreSQL announces the change: wait for it.
    async with asyncio.timeout(10):
        while True:
            if await platform.enforcer.enforce(principal, str(project.id), "model", "upload"):
                break
            await asyncio.sleep(0.02)
    return issued.secret


async def deployed(client: httpx.AsyncClient, version_id: str, callers: int) -> str:
    """The uploaded version deployed and READY; its V2 model name."""
    settings = {
        "name": "images",
        "modelVersion": str(to_global_id("ModelVersion", uuid.UUID(version_id))),
        "maxBatchSize": 64,
        "maxWaitMs": 2.0,
        "maxQueueRows": max(1024, 64 * callers),
    }
    response = await client.post(
        "/graphql", json={"query": CREATE_DEPLOYMENT, "variables": {"input": settings}}
    )
    created = response.json()["data"]["createDeployment"]
    if created["__typename"] != "DeploymentSuccess":
        raise RuntimeError(f"createDeployment: {created}")
    async with asyncio.timeout(300):
        while True:
            query = {"query": DEPLOYMENT_STATE, "variables": {"id": created["deployment"]["id"]}}
            node = (await client.post("/graphql", json=query)).json()["data"]["node"]
            if node["state"] == "READY":
                return str(created["deployment"]["v2ModelName"])
            if node["state"] == "FAILED":
                raise RuntimeError(f"the deployment failed: {node['reason']}")
            await asyncio.sleep(0.2)


async def load(
    client: httpx.AsyncClient,
    path: str,
    bodies: list[tuple[bytes, dict[str, str]]],
    callers: int,
    seconds: float,
) -> tuple[float, list[float]]:
    """Requests per second, and latencies (ms), of `callers` loops sending `bodies`."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds
    latencies: list[float] = []
    failures: list[str] = []

    async def caller(offset: int) -> None:
        index = offset
        while (started := loop.time()) < stop_at:
            body, headers = bodies[index % len(bodies)]
            response = await client.post(path, content=body, headers=headers)
            if response.status_code != 200:
                failures.append(response.text[:300])
            elif loop.time() <= stop_at:
                latencies.append(1000 * (loop.time() - started))
            index += callers

    await asyncio.gather(*(caller(offset) for offset in range(callers)))
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, the first: {failures[0]}")
    return len(latencies) / seconds, latencies


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    # The `onnx` runtime that serves uploaded graphs, from the trees extra.
    trees = {"disable_plugin_autoload": False, "plugins": ["trees"]}
    async with bench_platform(arguments, "images", prediction_sample_rate=0.0, **trees) as (
        config,
        scratch,
    ):
        return await measured(config, scratch, arguments)


async def measured(config: Config, scratch: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    platform = create_platform(config)
    await platform.start()
    try:
        token = await bench_user(platform)
    finally:
        await platform.stop()
    bodies = request_bodies(arguments.images, arguments.side, 64)
    callers = arguments.callers
    limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
    with running_server(config, scratch / "serve.log") as (base_url, _):
        async with httpx.AsyncClient(
            base_url=base_url,
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
            limits=limits,
        ) as client:
            graph = image_graph(arguments.side)
            uploaded = await client.post(
                f"/v1/projects/{PROJECT}/models/images/versions", content=graph
            )
            if uploaded.status_code != 201:
                raise RuntimeError(f"the upload failed: {uploaded.text}")
            model = await deployed(client, uploaded.json()["version"]["uuid"], arguments.callers)
            path = f"/v2/models/{model}/infer"
            answers = {}
            for setup in SETUPS:  # every set-up gives the same answer: the same pixels
                body, headers = bodies[setup][0]
                response = await client.post(path, content=body, headers=headers)
                response.raise_for_status()
                answers[setup] = response.content
                await load(client, path, bodies[setup], arguments.callers, 0.5)  # warm-up
            rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
            latencies: dict[str, list[float]] = {setup: [] for setup in SETUPS}
            for index in range(max(1, arguments.repeat)):
                order = SETUPS if index % 2 == 0 else tuple(reversed(SETUPS))
                for setup in order:
                    rate, measured_ms = await load(
                        client, path, bodies[setup], arguments.callers, arguments.seconds
                    )
                    rates[setup].append(rate * arguments.images)
                    latencies[setup] += measured_ms
    same = len({answers[setup] for setup in SETUPS}) == 1

    def ratio(setup: str) -> float:
        runs = zip(rates[setup], rates["json"], strict=True)
        return round(statistics.median(a / b for a, b in runs), 2)

    result: dict[str, Any] = {"same_answers": same}
    for setup in SETUPS:
        result[f"{setup}_images_per_s"] = round(statistics.median(rates[setup]), 1)
        result[f"{setup}_runs_images_per_s"] = [round(rate, 1) for rate in rates[setup]]
        result[f"{setup}_p50_ms"] = round(float(np.percentile(latencies[setup], 50)), 3)
        result[f"{setup}_p99_ms"] = round(float(np.percentile(latencies[setup], 99)), 3)
    result["body_bytes"] = {setup: len(bodies[setup][0][0]) for setup in SETUPS}
    result["binary_vs_json_ratio"] = ratio("binary")
    result["png_vs_json_ratio"] = ratio("png")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--images", type=int, default=8, help="images per request")
    parser.add_argument("--side", type=int, default=16, help="the images' height and width")
    add_service_options(parser)
    arguments = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    started = time.monotonic()
    result: dict[str, Any] = {
        "cpu_cores": os.cpu_count(),
        "callers": arguments.callers,
        "images_per_request": arguments.images,
        "image_shape": [arguments.side, arguments.side, CHANNELS],
        "seconds_per_run": arguments.seconds,
        "repeat": max(1, arguments.repeat),
    }
    result |= asyncio.run(run(arguments))
    result["wall_s"] = round(time.monotonic() - started, 1)
    # Other work on the machine takes cores from every figure above: its extent, for the reader.
    result["load_average_1m_at_start"] = round(load_at_start, 2)
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
