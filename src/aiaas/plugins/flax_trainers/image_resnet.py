"""The `image-resnet` trainer: a small ResNet over an image dataset's encoded images.

It reads the table of an image dataset version (docs/guides/images.md, "The contract"): the
`image` column of encoded PNG or JPEG images, decoded once per run on the host
(`aiaas.core.images`, through `aiaas.formats.flax_nnx_images`) and fitted to the size the model
trains at, into one uint8 array. Normalization (in the model) and augmentation (in the train
step) run on the device, so the staged batches stay bytes. The fit itself, with its metrics,
early stopping, checkpoints and resume, is every built-in trainer's (`fitting.FlaxTrainer`).

The columns the contract puts beside the image (`path`, `width`, `height`, `channels`,
`format`) may be among the features, as they are when a request names none: they describe the
file, not what it shows, and are not read.

Nothing here imports JAX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from aiaas.core.errors import InputError
from aiaas.core.signatures import TensorSpec
from aiaas.core.trainers import HyperParameter, Task
from aiaas.formats.flax_nnx_images import encode_image_tensor, image_sizes
from aiaas.plugins.flax_trainers.augmentation import Augmentation
from aiaas.plugins.flax_trainers.fitting import FlaxTrainer
from aiaas.plugins.flax_trainers.trainers import BALANCE_CLASSES, _common, _int

IMAGE_COLUMN_TYPES = frozenset({"image", "binary", "large_binary"})
"""The logical type `image` (a binary column of encoded images), and the Arrow types a table
holds it as. A request is vetted with logical types, a run's table with Arrow types."""
STATISTICS_CHUNK_PIXELS = 32 << 20
CONTRACT_METADATA = frozenset({"path", "width", "height", "channels", "format", "dicom_tags"})
MAX_PIXEL_BYTES = 8 * 1024**3
"""The decoded training images are held in memory at once: a run that would take more is
refused before it decodes them all (a smaller `height` and `width` fit)."""


def is_image_type(column_type: str) -> bool:
    return column_type.strip().lower() in IMAGE_COLUMN_TYPES


class ImageResNet(FlaxTrainer):
    """A small residual CNN over encoded images (PNG, JPEG: an image dataset) → a class."""

    name = "image-resnet"
    task: Task = "classification"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return [
            *_common(2e-3, 30, 64),
            _int("height", 0, 0, 1024, "height the images are resized to (0: their median)"),
            _int("width", 0, 0, 1024, "width the images are resized to (0: their median)"),
            _int("channels", 0, 0, 3, "1 (grey) or 3 (RGB); 0: RGB if any image is in colour"),
            _int("base_channels", 16, 4, 256, "channels of the first stage, doubled by each next"),
            _int(
                "stages",
                3,
                1,
                5,
                "stages of residual blocks; each after the first halves the image",
            ),
            _int("blocks_per_stage", 1, 1, 8, "residual blocks (two convolutions each) a stage"),
            HyperParameter(
                name="augment",
                type="bool",
                default=True,
                description="augment the training images on the device (flips, shifted crops)",
            ),
            HyperParameter(
                name="flip",
                type="bool",
                default=True,
                description="with augment: mirror images left to right at random (turn off "
                "where orientation matters: digits, text, laterality)",
            ),
            _int(
                "crop_padding",
                4,
                0,
                128,
                "with augment: random shifts of up to this many "
                "pixels (pad, then crop; at most half the side)",
            ),
            BALANCE_CLASSES,
        ]

    # Vetting ----------------------------------------------------------------------------------

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        images = [name for name, kind in columns.items() if is_image_type(kind)]
        problems = {
            name: f"the image model reads one image column; {name} is {column_type}"
            for name, column_type in columns.items()
            if name not in images and name not in CONTRACT_METADATA
        }
        if not images:
            problems["features"] = (
                "the image model needs an image column (logical type image: the encoded PNG or "
                "JPEG images of an image dataset)"
            )
        elif len(images) > 1:
            problems.update(
                {name: f"only one image column can be used, not {len(images)}" for name in images}
            )
        if hyperparameters.get("channels", 0) == 2:
            problems["channels"] = "must be 1 (grey), 3 (RGB) or 0 (from the images)"
        return problems

    # Fitting ----------------------------------------------------------------------------------

    @staticmethod
    def image_column(schema: pa.Schema, features: Sequence[str]) -> str:
        for name in features:
            if is_image_type(str(schema.field(name).type)):
                return name
        raise ValueError("the features hold no image column")

    def feature_columns(self, table: pa.Table, features: Sequence[str]) -> dict[str, np.ndarray]:
        """The image column as it is stored, an object array of encoded images: they are
        decoded only once the size to train at is known, each fitted to it before the next is
        decoded (`encode_image_tensor`), so a split of large scans never sits in memory at its
        original size. The contract's other columns are not read."""
        name = self.image_column(table.schema, features)
        values = table.column(name).to_pylist()
        column = np.empty(len(values), dtype=object)
        for index, value in enumerate(values):
            if value is None:
                raise ValueError(f"{name}[{index}] has no image")
            column[index] = value
        return {name: column}

    def fit_preprocessing(
        self, columns: Mapping[str, np.ndarray], features: Sequence[str], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The size and channels to train at, and the training images' per-channel mean and
        standard deviation (which the model normalizes with)."""
        (name,) = columns
        if values["channels"] == 2:
            raise ValueError("channels must be 1, 3 or 0")
        images = columns[name]
        if images.size == 0:
            raise ValueError("the training split holds no image")
        try:
            # From the images' headers: nothing is decoded before the bound below is checked.
            sizes = image_sizes(images, name)
        except InputError as exc:
            raise ValueError(str(exc)) from exc
        height = values["height"] or round(float(np.median(sizes[:, 0])))
        width = values["width"] or round(float(np.median(sizes[:, 1])))
        channels = values["channels"] or (3 if bool((sizes[:, 2] == 3).any()) else 1)
        if images.size * height * width * channels > MAX_PIXEL_BYTES:
            raise ValueError(
                f"{images.size} images of {height}x{width}x{channels} take more than "
                f"{MAX_PIXEL_BYTES // 1024**3} GiB: train at a smaller height and width"
            )
        encoder: dict[str, Any] = {
            "kind": "image_tensor",
            "column": name,
            "height": height,
            "width": width,
            "channels": channels,
        }
        # Summed image by image: the statistics never need a second copy of the split.
        total = np.zeros(channels)
        squares = np.zeros(channels)
        # Chunks of about 32 MiB of pixels, whose float64 copy stays near 256 MiB at any size.
        chunk_rows = max(1, STATISTICS_CHUNK_PIXELS // (height * width * channels))
        for start in range(0, images.size, chunk_rows):
            pixels = encode_image_tensor(encoder, {name: images[start : start + chunk_rows]})
            flat = pixels.reshape(-1, channels).astype(np.float64)
            total += flat.sum(axis=0)
            squares += (flat**2).sum(axis=0)
        count = images.size * height * width
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        encoder["mean"] = [float(value) for value in mean]
        # A constant channel would divide by zero.
        encoder["std"] = [float(value) if value > 1e-6 else 1.0 for value in std]
        return encoder

    def architecture(
        self, preprocessing: Mapping[str, Any], values: Mapping[str, Any], outputs: int
    ) -> dict[str, Any]:
        return {
            "kind": "resnet",
            "height": preprocessing["height"],
            "width": preprocessing["width"],
            "channels": preprocessing["channels"],
            "base_channels": values["base_channels"],
            "stages": values["stages"],
            "blocks_per_stage": values["blocks_per_stage"],
            "outputs": outputs,
            "mean": preprocessing["mean"],
            "std": preprocessing["std"],
        }

    def input_specs(
        self, schema: pa.Schema, features: Sequence[str], preprocessing: Mapping[str, Any]
    ) -> tuple[TensorSpec, ...]:
        """One input, the images, uint8 [-1, height, width, channels] at the trained size."""
        shape = (preprocessing["height"], preprocessing["width"], preprocessing["channels"])
        return (TensorSpec(name=preprocessing["column"], dtype="uint8", shape=(-1, *shape)),)

    def augmentation(self, values: Mapping[str, Any]) -> Augmentation | None:
        if not values["augment"] or not (values["flip"] or values["crop_padding"]):
            return None
        return Augmentation(flip=values["flip"], crop_padding=values["crop_padding"])
