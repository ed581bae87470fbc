"""Binary columns are image columns: profiled from each image's header, previewed as thumbnails,
never shown as text; a Parquet upload's binary column must hold whole images."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage import data as sample_images

from aiaas.core.data.tabular.image_columns import image_header
from aiaas.core.data.tabular.ingest import normalize_upload
from aiaas.core.data.tabular.profile import TableProfile, json_cell
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.data.tabular.types import logical_type
from aiaas.core.errors import InputError
from aiaas.core.images import decode_image
from image_archives import gigapixel_png, jpeg_bytes, png_bytes


def test_binary_and_large_binary_are_the_image_type() -> None:
    assert logical_type(pa.binary()) == "image"
    assert logical_type(pa.large_binary()) == "image"
    assert logical_type(pa.string()) == "string"


def test_an_image_cell_is_shown_as_a_thumbnail_and_other_bytes_by_their_length() -> None:
    camera = png_bytes(sample_images.camera())

    shown, cut = json_cell(camera)
    not_an_image, _ = json_cell("é".encode() * 10)

    assert cut is None
    assert shown.startswith("data:image/png;base64,")
    pixels = decode_image(base64.b64decode(shown.removeprefix("data:image/png;base64,")))
    assert pixels.shape == (48, 48, 1)
    assert not_an_image == "<20 bytes, not an image>"


def test_an_image_column_is_profiled_by_format_size_and_channels() -> None:
    images = [
        png_bytes(sample_images.camera()),  # 512x512 grey
        jpeg_bytes(sample_images.astronaut()),  # 512x512 RGB
        jpeg_bytes(sample_images.coffee()),  # 400x600 RGB
        None,
    ]
    profile = TableProfile(pa.schema([("image", pa.binary())]))

    profile.update(pa.record_batch([pa.array(images, pa.binary())], names=["image"]))

    stats = profile.result()["image"]
    assert stats["type"] == "image"
    assert stats["null_fraction"] == 0.25
    assert stats["formats"] == {"jpeg": 2, "png": 1}
    assert stats["channels"] == {"1": 1, "3": 2}
    assert stats["width"] == {"min": 512, "max": 600, "mean": pytest.approx(1624 / 3)}
    assert stats["height"] == {"min": 400, "max": 512, "mean": pytest.approx(1424 / 3)}
    assert "top_values" not in stats  # no image's bytes are counted or kept


@pytest.mark.parametrize(
    ("cell", "complaint"),
    [
        (b"plain text, not an image", "neither a PNG nor a JPEG"),
        (png_bytes(sample_images.camera())[:500], "does not decode"),
        (gigapixel_png(), "above the limit"),
    ],
    ids=["text", "truncated", "bomb"],
)
def test_a_parquet_binary_column_must_hold_whole_images(
    tmp_path: Path, cell: bytes, complaint: str
) -> None:
    good = png_bytes(sample_images.camera())
    pq.write_table(pa.table({"image": pa.array([good, cell])}), tmp_path / "upload.parquet")

    with pytest.raises(InputError, match=complaint) as refused:
        normalize_upload(tmp_path / "upload.parquet", tmp_path, ReadOptions())

    assert "column 'image', row 1" in refused.value.message


def _encoded(
    pixels: np.ndarray, image_format: str, mode: str | None = None, **options: Any
) -> bytes:
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


HEADER_CASES = {
    "png-grey": lambda: _encoded(sample_images.camera(), "PNG"),
    "png-rgb": lambda: _encoded(sample_images.astronaut(), "PNG"),
    "png-rgba": lambda: _encoded(sample_images.astronaut(), "PNG", "RGBA"),
    "png-grey-alpha": lambda: _encoded(sample_images.camera(), "PNG", "LA"),
    "png-palette": lambda: _encoded(sample_images.astronaut(), "PNG", "P"),
    "png-16-bit": lambda: _encoded(sample_images.camera().astype(np.uint16) * 200, "PNG"),
    "jpeg-grey": lambda: _encoded(sample_images.camera(), "JPEG"),
    "jpeg-rgb": lambda: _encoded(sample_images.coffee(), "JPEG", quality=95),
    "jpeg-progressive": lambda: _encoded(sample_images.chelsea(), "JPEG", progressive=True),
}


@pytest.mark.parametrize("case", HEADER_CASES, ids=list(HEADER_CASES))
def test_the_header_says_what_decoding_answers(case: str) -> None:
    data = HEADER_CASES[case]()

    height, width, channels = decode_image(data).shape

    assert image_header(data) == (width, height, channels)
