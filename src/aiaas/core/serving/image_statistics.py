"""Drift of image inputs, told by simple per-image statistics rather than by pixels.

A pixel is no feature: its distribution says little, and an image input has thousands of them.
What does move when the images a deployment is sent stop resembling its training images (another
scanner, another exposure, another resolution) are a few statistics of each image:

- `brightness`: the mean of its pixel values, 0 to 255, over every channel;
- `contrast`: their standard deviation;
- `width` and `height`: its size as sent (an encoded image's before it was fitted to the model,
  a tensor's own).

Brightness and contrast are measured on the pixels the model gets (fitted to its size and
channels), on both sides: the sampled requests and the reference data. Each statistic is a
numeric feature named `<input>.<statistic>` (`image.brightness`...): a sample stores these four
numbers, never the image, and drift bins them and measures their PSI like any other feature
(`aiaas.core.serving.drift`).

The reference data is the model version's dataset version: an image dataset's `image` column
holds encoded images (docs/guides/images.md), decoded with `decode_image`. At most
`MAX_REFERENCE_IMAGES` of them, spread evenly over the table, make the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from aiaas.core.images import ImageError, decode_image, fit_pixels
from aiaas.core.serving.drift import FeatureBaseline, training_baselines
from aiaas.core.serving.image_requests import ImageInput
from aiaas.core.signatures import TensorSpec

IMAGE_STATISTICS = ("brightness", "contrast", "width", "height")
MAX_REFERENCE_IMAGES = 2000
"""Reference images decoded for a baseline: plenty for ten quantile bins, and a bound on the
seconds a drift check spends on a large dataset."""


def statistic_feature(input_name: str, statistic: str) -> str:
    """The drift feature of one statistic of an image input: `image.brightness`."""
    return f"{input_name}.{statistic}"


def is_image_tensor(array: np.ndarray) -> bool:
    """Whether a checked input holds images: [N, height, width, 1 or 3]."""
    return array.ndim == 4 and array.shape[3] in (1, 3)


def image_statistics(pixels: np.ndarray, width: int, height: int) -> dict[str, float]:
    """The statistics of one image's pixels (height, width, channels), with its size as sent."""
    values = pixels.astype(np.float64, copy=False)
    return {
        "brightness": float(values.mean()),
        "contrast": float(values.std()),
        "width": float(width),
        "height": float(height),
    }


def sampled_statistics(
    name: str, array: np.ndarray, row: int, sizes: Mapping[str, np.ndarray] | None
) -> dict[str, float]:
    """One sampled row of an image input as its statistic features; `sizes` holds the size
    each encoded image was sent at, by input."""
    sent = (sizes or {}).get(name)
    if sent is None:
        # A tensor has the model's size, whatever size the image had before the client fitted
        # it: its width and height would drift from the reference's for no reason, so only
        # brightness and contrast are sampled.
        found = image_statistics(array[row], 0, 0)
        del found["width"], found["height"]
    else:
        found = image_statistics(array[row], int(sent[row][0]), int(sent[row][1]))
    # The values are finite: pixels passed check_inputs.
    return {statistic_feature(name, key): value for key, value in found.items()}


def image_baselines(
    table: pa.Table, images: Sequence[ImageInput], *, bins: int = 10
) -> dict[str, FeatureBaseline]:
    """Baselines of the statistics of each image input whose reference column (by the input's
    name) holds encoded images; an input without such a column gets none. Images that do not
    decode are left out: the dataset's ingest proved them whole, so they are none in practice."""
    columns: dict[str, list[float]] = {}
    features: list[TensorSpec] = []
    for image in images:
        if image.name not in table.column_names:
            continue
        column = table.column(image.name)
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            continue
        found = _reference_statistics(column, image)
        for statistic in IMAGE_STATISTICS:
            feature = statistic_feature(image.name, statistic)
            columns[feature] = [row[statistic] for row in found]
            features.append(TensorSpec(name=feature, dtype="float64", shape=(-1,)))
    if not features:
        return {}
    statistics = pa.table({name: pa.array(found, pa.float64()) for name, found in columns.items()})
    return training_baselines(statistics, features, bins=bins)


def _reference_statistics(column: pa.ChunkedArray, image: ImageInput) -> list[dict[str, float]]:
    rows = len(column)
    picked = (
        range(rows)
        if rows <= MAX_REFERENCE_IMAGES
        else np.linspace(0, rows - 1, MAX_REFERENCE_IMAGES).astype(int).tolist()
    )
    found = []
    for row in picked:
        data: Any = column[row].as_py()
        if data is None:
            continue
        try:
            decoded = decode_image(data, name=f"reference image {row}")
        except ImageError:
            continue
        fitted = fit_pixels(
            decoded, height=image.height, width=image.width, channels=image.channels
        )
        found.append(image_statistics(fitted, decoded.shape[1], decoded.shape[0]))
    return found
