"""Encoded images (PNG, JPEG) to pixel arrays, with the limits that keep a hostile file from
taking the process's memory: one place for image datasets, image models and image requests.

An image decodes to a `uint8` array of shape (height, width, channels), channels 1 (grey) or 3
(RGB): the modes a model is trained and served on. Palette, grey-alpha and RGBA images are
converted (the alpha channel dropped); 16-bit grey is scaled to 8 bits.

Limits, each a typed refusal (`ImageError`, an `InputError`) naming the image:
- a format other than PNG or JPEG, told from the first bytes, never from a name;
- more than `max_pixels` pixels, read from the header before any pixel is decoded: a PNG of a
  few kilobytes can declare a gigapixel (a decompression bomb);
- a file that does not decode whole (truncated, corrupt).

Pillow is imported when the first image is decoded, not when this module is.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from aiaas.core.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DEFAULT_MAX_PIXELS = 40_000_000
"""An image larger than this (a 6,300-pixel square) is refused: it is not what a model takes, and
decoding it would take over 100 MB per image."""


class ImageError(InputError):
    """An image that cannot or may not be decoded; the message names it."""

    def __init__(self, message: str, *, field: str = "image") -> None:
        super().__init__(message, field_errors={field: message})


def image_format(data: bytes) -> str | None:
    """`png` or `jpeg`, from the first bytes; None for anything else."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def decode_image(
    data: bytes, *, name: str = "the image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """The pixels of a PNG or JPEG image: uint8, (height, width, 1 or 3)."""
    from PIL import Image

    if image_format(data) is None:
        raise ImageError(f"{name} is neither a PNG nor a JPEG image")
    try:
        with warnings.catch_warnings():
            # Pillow warns of a large image as it opens it; the limit below is the one that
            # decides, with its own message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{name} is {width}x{height} pixels, above the limit of {max_pixels}"
                )
            image.load()
            return as_channels_last(image)
    except ImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        # Pillow reports a truncated or corrupt file as OSError or SyntaxError, depending on the
        # plugin and where the damage is.
        raise ImageError(f"{name} does not decode: {exc}") from exc


GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I", "1", "L", "LA"})
"""Pillow modes that decode to one channel; every other mode decodes to RGB."""


def image_header(
    data: bytes, *, name: str = "the image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int, int]:
    """(width, height, channels) of a PNG or JPEG image, read from its header alone: what it
    will decode to, known before a pixel is decoded."""
    from PIL import Image

    if image_format(data) is None:
        raise ImageError(f"{name} is neither a PNG nor a JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                channels = 1 if image.mode in GREY_MODES else 3
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ImageError(f"{name} does not decode: {exc}") from exc
    if width * height > max_pixels:
        raise ImageError(f"{name} is {width}x{height} pixels, above the limit of {max_pixels}")
    return width, height, channels


def as_channels_last(image: Any) -> np.ndarray:
    """A decoded Pillow image as uint8 (height, width, 1 or 3)."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        wide = np.asarray(image, dtype=np.uint32)
        top = int(wide.max()) if wide.size else 0
        shift = max(top.bit_length() - 8, 0)
        return (wide >> shift).astype(np.uint8)[:, :, np.newaxis]
    if image.mode in GREY_MODES:
        return np.asarray(image.convert("L"), dtype=np.uint8)[:, :, np.newaxis]
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (height, width, 1 or 3) pixels as a PNG file."""
    from PIL import Image

    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in {1, 3}:
        raise ValueError(
            f"pixels are uint8 (height, width, 1 or 3), not {pixels.dtype} {pixels.shape}"
        )
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fit_pixels(pixels: np.ndarray, *, height: int, width: int, channels: int) -> np.ndarray:
    """`pixels` resized (bilinear) to height x width and converted to `channels` (1 or 3):
    what a model trained on one size takes of an image of another."""
    from PIL import Image

    if pixels.shape[2] != channels:
        pixels = (
            np.repeat(pixels, 3, axis=2)
            if channels == 3
            else np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.uint8)[:, :, np.newaxis]
        )
    if pixels.shape[:2] == (height, width):
        return pixels
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    return resized[:, :, np.newaxis] if channels == 1 else resized
