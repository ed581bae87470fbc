"""Columns of encoded images (logical type `image`, a binary column): their profile, their
preview cells, and the check a Parquet upload's image columns pass.

An image column's statistics are aggregates, from each image's header (Pillow reads the size and
mode without decoding pixels): how many images of each format, the width and height (min, max,
mean) and the channels (how many images of 1 and of 3). Its preview cells are thumbnails: PNGs of
at most `THUMBNAIL_SIDE` pixels a side, as `data:image/png;base64,...` URLs, so that bytes are
never shown as mangled text.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from aiaas.core.errors import InputError
from aiaas.core.images import ImageError, decode_image, encode_png, image_format

THUMBNAIL_SIDE = 48
"""Thumbnails of 48 pixels a side weigh 1 to 5 KB as PNG: a preview of 20 rows stays small."""
ONE_CHANNEL_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;grey"})


def is_image_type(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))


def thumbnail_cell(data: bytes) -> str:
    """An image cell as a preview shows it: a small PNG as a data URL, or, for bytes that are no
    image Pillow reads, a note of their length."""
    from PIL import Image

    try:
        pixels = decode_image(data, name="the cell")
    except ImageError:
        return f"<{len(data)} bytes, not an image>"
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    small = np.asarray(image, dtype=np.uint8)
    png = encode_png(small[:, :, np.newaxis] if small.ndim == 2 else small)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


PNG_ONE_CHANNEL_COLOUR_TYPES = frozenset({0, 4})
"""Grey and grey with alpha; the others (RGB, palette, RGBA) decode to three channels."""


JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""The start-of-frame markers (baseline, progressive, lossless...), whose segment holds the size;
C4, C8 and CC are other segments."""
JPEG_SEGMENTS_READ = 64


def _jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """A JPEG's size and channels from its start-of-frame segment, walking the segments before
    it; None where the walk fails (Pillow then reads it)."""
    offset = 2
    for _ in range(JPEG_SEGMENTS_READ):
        if offset + 9 >= len(data) or data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in JPEG_FRAME_MARKERS:
            height = int.from_bytes(data[offset + 5 : offset + 7], "big")
            width = int.from_bytes(data[offset + 7 : offset + 9], "big")
            return width, height, 1 if data[offset + 9] == 1 else 3
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return None


def image_header(data: bytes) -> tuple[int, int, int] | None:
    """An image's width, height and channels (as `decode_image` answers them), from its header
    alone; None for bytes Pillow cannot open. A PNG's are read from its first chunk (IHDR), a
    JPEG's from its frame segment, directly: a profile reads every image of a version, and
    Pillow's open costs ten times more."""
    kind = image_format(data)
    if kind == "png" and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return width, height, 1 if data[25] in PNG_ONE_CHANNEL_COLOUR_TYPES else 3
    if kind == "jpeg" and (header := _jpeg_header(data)) is not None:
        return header
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                mode = image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return width, height, 1 if mode in ONE_CHANNEL_MODES else 3


class _Range:
    def __init__(self) -> None:
        self.low: int | None = None
        self.high: int | None = None
        self.total = 0
        self.count = 0

    def add(self, value: int) -> None:
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)
        self.total += value
        self.count += 1

    def result(self) -> dict[str, Any]:
        mean = self.total / self.count if self.count else None
        return {"min": self.low, "max": self.high, "mean": mean}


class ImageColumnProfile:
    """The profile of one image column, fed batch by batch like `profile.ColumnProfile`."""

    ordered = False

    def __init__(self, name: str, arrow_type: pa.DataType) -> None:
        self.name = name
        self.arrow_type = arrow_type
        self.rows = 0
        self.nulls = 0
        self.formats: Counter[str] = Counter()
        self.channels: Counter[int] = Counter()
        self.width = _Range()
        self.height = _Range()
        self.size_bytes = _Range()

    def update(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.rows += len(array)
        self.nulls += array.null_count
        for value in array.to_pylist():
            if value is None:
                continue
            self.size_bytes.add(len(value))
            header = image_header(value)
            if header is None:
                self.formats["unreadable"] += 1
                continue
            width, height, channels = header
            self.formats[image_format(value) or "other"] += 1
            self.width.add(width)
            self.height.add(height)
            self.channels[channels] += 1

    def result(self) -> dict[str, Any]:
        return {
            "type": "image",
            "null_fraction": self.nulls / self.rows if self.rows else 0.0,
            "distinct_count": None,
            "distinct_exact": False,
            "formats": dict(sorted(self.formats.items())),
            "channels": {str(count): n for count, n in sorted(self.channels.items())},
            "width": self.width.result(),
            "height": self.height.result(),
            "bytes": self.size_bytes.result(),
        }


def checked_images(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches as they come, each image column's values decoded first (`decode_image`, with
    its pixel limit): `InputError` naming the column and row of the first that is no whole PNG
    or JPEG."""
    row_offset = 0
    for batch in batches:
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if not is_image_type(field.type):
                continue
            for index, value in enumerate(column.to_pylist()):
                if value is None:
                    continue
                where = f"column {field.name!r}, row {row_offset + index}"
                try:
                    decode_image(value, name=where)
                except ImageError as exc:
                    raise InputError(
                        f"{exc.message}: a binary column must hold PNG or JPEG images",
                        field_errors={"file": exc.message},
                    ) from None
        row_offset += batch.num_rows
        yield batch
