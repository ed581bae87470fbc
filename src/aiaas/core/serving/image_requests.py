"""Image requests: encoded PNG or JPEG images sent for a model's image input, decoded and fitted
to the size the model takes, under bounded memory.

An image input is a signature input of shape [-1, height, width, channels], channels 1 or 3, of
dtype uint8 or float32 (docs/guides/images.md, "the contract"). A request may send it as a
tensor of that shape, which `check_inputs` vets like any other input, or as encoded images, one
per row: V2 `BYTES` of shape [N] (each element the file's bytes in the binary extension, or its
base64 text in JSON) or base64 strings in GraphQL's JSON records. Those are decoded here
(`aiaas.core.images.decode_image`, the platform's one decoder) and fitted to the model's height,
width and channels (`fit_pixels`, bilinear); a float32 model gets the uint8 values as float32,
0 to 255, as it would from a uint8 tensor.

Bounds, each a typed refusal that names the row, before the model sees anything:
- `inference_max_image_bytes`: the encoded bytes of one request, all rows together, counted
  before anything is decoded (413);
- `inference_max_image_pixels`: the decoded pixels of one request, all rows together, read from
  each image's header before its pixels are decoded (413); one image is also refused alone past
  the decoder's own per-image limit (400);
- a row that is not base64, not a PNG or JPEG, or does not decode whole (400).

Rows are decoded one at a time into the one array the model gets, so a request's memory is that
array plus one decoded image. Decoding runs in a thread, a few requests at a time, never on the
event loop: a batch of large JPEGs takes seconds of CPU.
"""

from __future__ import annotations

import asyncio
import binascii
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from aiaas.core.errors import PayloadTooLargeError
from aiaas.core.images import DEFAULT_MAX_PIXELS, ImageError, decode_image, fit_pixels
from aiaas.core.signatures import ModelSignature

IMAGE_DTYPES = frozenset({"uint8", "float32"})
IMAGE_CHANNELS = frozenset({1, 3})
IMAGE_REQUESTS_AT_ONCE = 4
"""Requests whose images are decoded at once (each in a thread): bounds their memory and CPU."""


@dataclass(frozen=True)
class ImageInput:
    """A signature input that takes images: its name and the size its rows must have."""

    name: str
    height: int
    width: int
    channels: int
    dtype: str


@dataclass(frozen=True)
class ImageLimits:
    max_request_bytes: int
    """Encoded bytes of one request, all its images together."""
    max_request_pixels: int
    """Decoded pixels of one request, all its images together."""


@dataclass(frozen=True)
class DecodedImages:
    pixels: np.ndarray
    """[N, height, width, channels] of the input's dtype: what the model takes."""
    sizes: np.ndarray
    """[N, 2] int64: each image's (width, height) as sent, before fitting."""


@lru_cache(maxsize=256)
def image_inputs(signature: ModelSignature) -> tuple[ImageInput, ...]:
    """The signature's image inputs (see the module doc); empty for a tabular model."""
    found = []
    for spec in signature.inputs:
        shape = spec.shape
        if (
            len(shape) == 4
            and spec.dtype in IMAGE_DTYPES
            and shape[1] > 0
            and shape[2] > 0
            and shape[3] in IMAGE_CHANNELS
        ):
            found.append(ImageInput(spec.name, shape[1], shape[2], shape[3], spec.dtype))
    return tuple(found)


def sends_encoded(values: Any) -> bool:
    """Whether an input's values are encoded images (strings or bytes, one per row) rather than
    a tensor of pixels."""
    if isinstance(values, np.ndarray):
        return values.dtype.kind in "OSU" and values.ndim == 1
    if isinstance(values, list | tuple) and values:
        return all(isinstance(value, str | bytes) for value in values)
    return False


def decode_images(
    image: ImageInput, values: Sequence[Any] | np.ndarray, limits: ImageLimits
) -> DecodedImages:
    """The encoded `values` of `image` as the model takes them, or an `InputError` naming the
    first row at fault (`PayloadTooLargeError` past a per-request bound). Blocking: run it in a
    thread (`decoded_columns`)."""
    encoded = _encoded_rows(image.name, values, limits.max_request_bytes)
    pixels = np.empty((len(encoded), image.height, image.width, image.channels), image.dtype)
    sizes = np.empty((len(encoded), 2), dtype=np.int64)
    per_image = min(DEFAULT_MAX_PIXELS, limits.max_request_pixels)
    total = 0
    for row, data in enumerate(encoded):
        where = f"row {row} of {image.name}"
        declared = _declared_pixels(data)
        if declared is not None and declared <= per_image:
            total += declared
            if total > limits.max_request_pixels:
                raise _too_large(
                    image.name,
                    row,
                    f"the images up to {where} have {total} pixels, above the limit of "
                    f"{limits.max_request_pixels} for one request (inference_max_image_pixels)",
                )
        try:
            decoded = decode_image(data, name=where, max_pixels=per_image)
        except ImageError as error:
            raise ImageError(error.message, field=f"{image.name}[{row}]") from None
        sizes[row] = (decoded.shape[1], decoded.shape[0])
        pixels[row] = fit_pixels(
            decoded, height=image.height, width=image.width, channels=image.channels
        )
    return DecodedImages(pixels, sizes)


def _encoded_rows(name: str, values: Sequence[Any] | np.ndarray, max_bytes: int) -> list[bytes]:
    """Each row's file: bytes as sent, base64 text decoded. The byte bound is checked on the
    sizes first, so that a request over it decodes nothing."""
    rows = values.tolist() if isinstance(values, np.ndarray) else list(values)
    total = 0
    for row, value in enumerate(rows):
        if not isinstance(value, str | bytes):
            raise ImageError(
                f"row {row} of {name} must be an encoded image (base64 text or bytes), not a "
                f"{type(value).__name__}",
                field=f"{name}[{row}]",
            )
        # Base64 text holds three bytes in four characters.
        total += len(value) if isinstance(value, bytes) else len(value) * 3 // 4
        if total > max_bytes:
            raise _too_large(
                name,
                row,
                f"the images up to row {row} of {name} have about {total} encoded bytes, above "
                f"the limit of {max_bytes} for one request (inference_max_image_bytes); send "
                "fewer images per request",
            )
    encoded = []
    for row, value in enumerate(rows):
        if isinstance(value, bytes):
            encoded.append(value)
            continue
        try:
            encoded.append(binascii.a2b_base64(value, strict_mode=True))
        except (binascii.Error, ValueError):
            raise ImageError(
                f"row {row} of {name} is not base64 text of a PNG or JPEG image",
                field=f"{name}[{row}]",
            ) from None
    return encoded


def _declared_pixels(data: bytes) -> int | None:
    """The pixels an image's header declares, read without decoding them; None when the header
    does not read (`decode_image` then says why)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            return int(width) * int(height)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def _too_large(name: str, row: int, message: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(message, field_errors={f"{name}[{row}]": message})


async def decoded_columns(
    signature: ModelSignature,
    columns: Mapping[str, Any],
    limits: ImageLimits,
    slots: asyncio.Semaphore,
) -> tuple[Mapping[str, Any], dict[str, np.ndarray]]:
    """`columns` with the encoded images of the signature's image inputs decoded and fitted (in
    a thread, a few requests at a time), and each such input's sizes as sent ([N, 2] width and
    height). A request that sends tensors is returned as it came, with no sizes."""
    encoded = [image for image in image_inputs(signature) if sends_encoded(columns.get(image.name))]
    if not encoded:
        return columns, {}
    async with slots:
        decoded = await asyncio.to_thread(_decode_all, encoded, columns, limits)
    return (
        {**columns, **{name: images.pixels for name, images in decoded.items()}},
        {name: images.sizes for name, images in decoded.items()},
    )


def _decode_all(
    encoded: Sequence[ImageInput], columns: Mapping[str, Any], limits: ImageLimits
) -> dict[str, DecodedImages]:
    return {image.name: decode_images(image, columns[image.name], limits) for image in encoded}
