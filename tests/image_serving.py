"""Image models for the serving tests: ONNX graphs that take an `image` input of the contract's
shape ([N, height, width, channels], uint8 or float32), the answers numpy expects of them, and
images to send, as pixels and as PNG or JPEG files."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from aiaas.core.identity.access import ProjectRole
from aiaas.core.images import encode_png
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from support import Team

_ONNX_TYPES = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}


def pixel_weights(height: int, width: int, channels: int) -> np.ndarray:
    """A weight per pixel and channel, each different: a score that mixes up rows, columns or
    channels comes out wrong."""
    count = height * width * channels
    return np.linspace(-1.0, 1.0, count, dtype=np.float32).reshape(height, width, channels)


def image_graph(
    height: int = 16,
    width: int = 16,
    channels: int = 3,
    dtype: str = "uint8",
    *,
    scale: float = 1.0,
) -> bytes:
    """score = scale * sum(image * weights) / 255 and brightness = mean(image), per image: a
    model as another tool would export it, taking `image` [N, height, width, channels]."""
    axes = numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes")
    weights = numpy_helper.from_array(
        pixel_weights(height, width, channels) * np.float32(scale / 255), "weights"
    )
    count = numpy_helper.from_array(np.array(height * width * channels, np.float32), "count")
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels", "weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axes"], ["score"], keepdims=0),
        helper.make_node("ReduceSum", ["pixels", "axes"], ["total"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["brightness"]),
    ]
    graph = helper.make_graph(
        nodes,
        "image-score",
        [
            helper.make_tensor_value_info(
                "image", _ONNX_TYPES[dtype], ["N", height, width, channels]
            )
        ],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("brightness", TensorProto.FLOAT, ["N"]),
        ],
        initializer=[axes, weights, count],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def expected_scores(pixels: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """What `image_graph` answers for pixels [N, height, width, channels] of its size."""
    weights = pixel_weights(*pixels.shape[1:]) * np.float32(scale / 255)
    return (pixels.astype(np.float32) * weights).sum(axis=(1, 2, 3))


def random_images(
    count: int, height: int = 16, width: int = 16, channels: int = 3, *, seed: int = 0
) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, size=(count, height, width, channels), dtype=np.uint8
    )


def png(pixels: np.ndarray) -> bytes:
    return encode_png(pixels)


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


async def upload_image_model(
    platform: Platform,
    client: httpx.AsyncClient,
    team: Team,
    model: str,
    graph: bytes,
    **params: str,
) -> models.ModelVersion:
    """`graph` uploaded as a new version of `model` (REST, as the developer)."""
    response = await client.post(
        f"/v1/projects/{team.slug}/models/{model}/versions",
        content=graph,
        params=params,
        headers={"authorization": f"Bearer {team.token(ProjectRole.DEVELOPER)}"},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["version"]
    assert created["signature"]["inputs"][0]["name"] == "image", json.dumps(created)
    async with platform.metadata.acquire() as connection:
        return await models.get_model_version(connection, uuid.UUID(created["uuid"]))
