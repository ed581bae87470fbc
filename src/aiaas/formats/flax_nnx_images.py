"""The image input of a flax-nnx bundle (`preprocessing` of kind `image_tensor`): from an image
column to the uint8 [rows, height, width, channels] batch a `resnet` model reads.

Training encodes its decoded images with it, and a runtime each request's, whichever way the
request sent them: a uint8 (or float) tensor of any size, encoded PNG or JPEG bytes one per row,
or already decoded pixel arrays. Every image is fitted (`aiaas.core.images.fit_pixels`) to the
size and channels the model was trained at. Pixels stay uint8 here; the model normalizes them on
the device.

Nothing here imports JAX (nor Pillow, until an image needs decoding or resizing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from aiaas.core.images import decode_image, fit_pixels, image_header


def as_pixels(values: Any, name: str) -> np.ndarray:
    """uint8 pixels of an image or a batch: numbers are rounded and clipped to 0..255 (a float
    request sends the same 0..255 scale as a uint8 one)."""
    array = np.asarray(values)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold pixel numbers, not {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} holds pixels that are not finite numbers")
    pixels: np.ndarray = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return pixels


def image_rows(values: Any, name: str) -> Iterator[np.ndarray]:
    """Each row of an image column as uint8 (height, width, 1 or 3), one at a time: encoded
    bytes are decoded (`decode_image`, with its limits), pixel arrays checked. A caller that
    fits each row before the next never holds more than one image at its original size."""
    for index, value in enumerate(np.asarray(values, dtype=object).reshape(-1)):
        label = f"{name}[{index}]"
        if isinstance(value, bytes | bytearray | memoryview):
            yield decode_image(bytes(value), name=label)
            continue
        if value is None:
            raise ValueError(f"{label} has no image")
        pixels = as_pixels(value, label)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        if pixels.ndim != 3 or pixels.shape[2] not in {1, 3} or 0 in pixels.shape:
            raise ValueError(f"{label} must be (height, width, 1 or 3) pixels, not {pixels.shape}")
        yield pixels


def image_sizes(values: Any, name: str) -> np.ndarray:
    """(height, width, channels) of each row, read from encoded images' headers (nothing is
    decoded) or from pixel arrays' shapes."""
    sizes = []
    for index, value in enumerate(np.asarray(values, dtype=object).reshape(-1)):
        if isinstance(value, bytes | bytearray | memoryview):
            width, height, channels = image_header(bytes(value), name=f"{name}[{index}]")
            sizes.append((height, width, channels))
        else:
            shape = np.shape(value)
            sizes.append((shape[0], shape[1], shape[2] if len(shape) == 3 else 1))
    return np.asarray(sizes, dtype=np.int64).reshape(-1, 3)


def encode_image_tensor(encoder: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """uint8 [rows, height, width, channels] at the encoder's size."""
    name = encoder["column"]
    size = (encoder["height"], encoder["width"], encoder["channels"])
    values = columns[name]
    if isinstance(values, np.ndarray) and values.dtype != object:
        # A tensor: a batch of images of one size.
        if values.ndim != 4 or values.shape[3] not in {1, 3} or 0 in values.shape[1:]:
            raise ValueError(
                f"{name} must be a [rows, height, width, 1 or 3] tensor, not {list(values.shape)}"
            )
        pixels = as_pixels(values, name)
        if pixels.shape[1:] == size:
            return pixels
        rows: Iterable[np.ndarray] = pixels
    else:
        values = np.asarray(values, dtype=object).reshape(-1)
        rows = image_rows(values, name)
    fitted = np.zeros((len(values), *size), dtype=np.uint8)
    for index, row in enumerate(rows):
        fitted[index] = fit_pixels(row, height=size[0], width=size[1], channels=size[2])
    return fitted
