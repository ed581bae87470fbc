"""The built-in trainers: tabular classifier and regressor, text classifier, image classifier.

Each declares its typed hyperparameters and which columns it can read; the shared fit lives in
`fitting.FlaxTrainer`. Nothing here imports JAX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aiaas.core.trainers import HyperParameter, Task, vet_hyperparameters
from aiaas.plugins.flax_trainers import input_pipeline as pipeline
from aiaas.plugins.flax_trainers.fitting import FlaxTrainer

PRECISIONS = ("float32", "bfloat16")
"""The `precision` choices, the `compute_dtype`s of `aiaas.formats.flax_nnx_models`."""


def _common(learning_rate: float, epochs: int, batch_size: int) -> list[HyperParameter]:
    return [
        HyperParameter(
            name="learning_rate",
            type="float",
            default=learning_rate,
            description="AdamW step size",
            minimum=1e-7,
            maximum=100.0,
        ),
        HyperParameter(
            name="epochs",
            type="int",
            default=epochs,
            description="passes over the training split",
            minimum=1,
            maximum=10_000,
        ),
        HyperParameter(
            name="batch_size",
            type="int",
            default=batch_size,
            description="rows per step, rounded down to a multiple of the device count",
            minimum=1,
            maximum=65_536,
        ),
        HyperParameter(
            name="weight_decay",
            type="float",
            default=1e-4,
            description="AdamW decoupled weight decay",
            minimum=0.0,
            maximum=10.0,
        ),
        HyperParameter(
            name="patience",
            type="int",
            default=10,
            description=(
                "early stopping: epochs without a lower val_loss before training stops; the "
                "best epoch's weights are kept either way (0: off, the last epoch's weights). "
                "Without a validation split it cannot run, and the last epoch's weights are kept"
            ),
            minimum=0,
            maximum=1000,
        ),
        HyperParameter(
            name="lr_schedule",
            type="str",
            default="constant",
            description=(
                "learning rate over the run: constant, or cosine (decaying to 1% of "
                "learning_rate by the last of all epochs), either after the warmup"
            ),
            choices=("constant", "cosine"),
        ),
        HyperParameter(
            name="warmup_fraction",
            type="float",
            default=0.0,
            description="share of all steps over which the learning rate rises linearly from 0",
            minimum=0.0,
            maximum=0.5,
        ),
        HyperParameter(
            name="precision",
            type="str",
            default="float32",
            description=(
                "what training computes in: float32, or bfloat16 (mixed precision: the layers "
                "compute in bfloat16, while the weights, the optimizer state, the loss, the "
                "metrics and the saved model stay float32; faster where the accelerator has "
                "bfloat16 units, a GPU or TPU, and usually slower on a CPU)"
            ),
            choices=PRECISIONS,
        ),
    ]


def _int(name: str, default: int, minimum: int, maximum: int, description: str) -> HyperParameter:
    return HyperParameter(
        name=name,
        type="int",
        default=default,
        description=description,
        minimum=minimum,
        maximum=maximum,
    )


BALANCE_CLASSES = HyperParameter(
    name="balance_classes",
    type="bool",
    default=False,
    description="weigh each class by its inverse frequency (for rare classes, fraud say)",
)


class _TabularTrainer(FlaxTrainer):
    def hyperparameters(self) -> Sequence[HyperParameter]:
        specific = [
            _int("hidden_size", 128, 1, 4096, "units per hidden layer"),
            _int("hidden_layers", 2, 0, 8, "hidden layers (0: a linear model)"),
            _int("max_categories", 50, 1, 1000, "one-hot width cap per string column"),
            HyperParameter(
                name="dropout",
                type="float",
                default=0.0,
                description="share of hidden units dropped at each training step (never when "
                "evaluating or serving)",
                minimum=0.0,
                maximum=0.9,
            ),
        ]
        if self.task == "classification":
            return [*_common(1e-3, 20, 32), *specific, BALANCE_CLASSES]
        # Fewer passes for a regressor: fitting a noisy target closely is overfitting it, and a
        # squared error keeps rewarding that long after a classifier's accuracy has settled.
        # (More epochs cost nothing but time: early stopping keeps the best epoch's weights.)
        return [*_common(1e-3, 10, 32), *specific]

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        if not columns:
            return {"features": "at least one feature column is needed"}
        return {
            name: f"type {column_type} cannot be used: only numbers, booleans and strings"
            for name, column_type in columns.items()
            if pipeline.column_kind(column_type) == "other"
        }

    def fit_preprocessing(
        self, columns: Mapping[str, np.ndarray], features: Sequence[str], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        return pipeline.fit_tabular(columns, features, values["max_categories"])

    def architecture(
        self, preprocessing: Mapping[str, Any], values: Mapping[str, Any], outputs: int
    ) -> dict[str, Any]:
        return {
            "kind": "mlp",
            "inputs": pipeline.tabular_width(preprocessing),
            "hidden_size": values["hidden_size"],
            "hidden_layers": values["hidden_layers"],
            "outputs": outputs,
            "dropout": values["dropout"],
        }


class TabularClassifier(_TabularTrainer):
    """An MLP over numeric, boolean and string columns, predicting a class."""

    name = "tabular-classifier"
    task: Task = "classification"


class TabularRegressor(_TabularTrainer):
    """An MLP over numeric, boolean and string columns, predicting a number."""

    name = "tabular-regressor"
    task: Task = "regression"


class TextClassifier(FlaxTrainer):
    """A hashed n-gram embedding bag over one string column (no vocabulary to download)."""

    name = "text-classifier"
    task: Task = "classification"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return [
            *_common(3e-3, 20, 32),
            HyperParameter(
                name="analyzer",
                type="str",
                default="word",
                description="n-grams of words, or of characters within words",
                choices=("word", "char"),
            ),
            _int("min_ngram", 1, 1, 10, "shortest n-gram"),
            _int("max_ngram", 2, 1, 10, "longest n-gram"),
            _int("buckets", 32_768, 16, 4_194_304, "hash buckets (embedding rows)"),
            _int("embedding_dim", 32, 2, 1024, "embedding width"),
            _int("hidden_size", 64, 1, 4096, "units of the hidden layer"),
            _int("max_tokens", 256, 1, 4096, "n-grams read per text"),
            BALANCE_CLASSES,
        ]

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        text = [name for name, kind in columns.items() if pipeline.column_kind(kind) == "string"]
        problems = {
            name: f"the text classifier reads one string column; {name} is {column_type}"
            for name, column_type in columns.items()
            if name not in text
        }
        if len(text) > 1:
            problems.update(
                {name: f"only one text column can be used, not {len(text)}" for name in text}
            )
        if not text:
            problems["features"] = "the text classifier needs exactly one string column"
        min_ngram = hyperparameters.get("min_ngram", 1)
        max_ngram = hyperparameters.get("max_ngram", 2)
        if isinstance(min_ngram, int) and isinstance(max_ngram, int) and min_ngram > max_ngram:
            problems["min_ngram"] = "must not exceed max_ngram"
        return problems

    def fit_preprocessing(
        self, columns: Mapping[str, np.ndarray], features: Sequence[str], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        if values["min_ngram"] > values["max_ngram"]:
            raise ValueError("min_ngram must not exceed max_ngram")
        column = features[0]
        return pipeline.fit_text(
            columns[column],
            column,
            analyzer=values["analyzer"],
            min_ngram=values["min_ngram"],
            max_ngram=values["max_ngram"],
            buckets=values["buckets"],
            max_tokens=values["max_tokens"],
        )

    def architecture(
        self, preprocessing: Mapping[str, Any], values: Mapping[str, Any], outputs: int
    ) -> dict[str, Any]:
        return {
            "kind": "embedding_bag",
            "buckets": values["buckets"],
            "embedding_dim": values["embedding_dim"],
            "hidden_size": values["hidden_size"],
            "outputs": outputs,
        }


class ImageClassifier(FlaxTrainer):
    """A small CNN over images stored as pixel columns in row-major (height, width, channel)
    order."""

    name = "image-classifier"
    task: Task = "classification"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return [
            *_common(1e-3, 15, 32),
            _int("height", 0, 0, 4096, "image height in pixels (0: a square image)"),
            _int("width", 0, 0, 4096, "image width in pixels (0: a square image)"),
            _int("channels", 1, 1, 4, "channels per pixel"),
            _int("conv_channels", 32, 1, 512, "channels of the first convolution, doubled after"),
            _int("conv_layers", 2, 1, 6, "convolution blocks"),
            _int("hidden_size", 64, 1, 4096, "units of the dense layer"),
            BALANCE_CLASSES,
        ]

    @staticmethod
    def image_shape(column_count: int, values: Mapping[str, Any]) -> tuple[int, int, int] | None:
        """(height, width, channels); a height or width of 0 means a square image whose side
        follows from the column count. None when they cannot match the columns."""
        channels = values.get("channels", 1)
        height, width = values.get("height", 0), values.get("width", 0)
        if not all(isinstance(value, int) for value in (channels, height, width)) or channels < 1:
            return None
        if not height or not width:
            side = math.isqrt(column_count // channels) if column_count >= channels else 0
            height, width = height or side, width or side
        if height * width * channels != column_count or height < 1 or width < 1:
            return None
        return height, width, channels

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        problems = {
            name: f"a pixel must be a number, not {column_type}"
            for name, column_type in columns.items()
            if pipeline.column_kind(column_type) not in {"integer", "float", "boolean"}
        }
        values, hyperparameter_problems = vet_hyperparameters(
            self.hyperparameters(),
            {k: v for k, v in hyperparameters.items() if k in ("height", "width", "channels")},
        )
        if not hyperparameter_problems and self.image_shape(len(columns), values) is None:
            problems["features"] = (
                f"{len(columns)} pixel columns do not make a height x width x channels image "
                f"of height={values['height']}, width={values['width']}, "
                f"channels={values['channels']}"
            )
        return problems

    def fit_preprocessing(
        self, columns: Mapping[str, np.ndarray], features: Sequence[str], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        shape = self.image_shape(len(features), values)
        if shape is None:
            raise ValueError("the pixel columns do not match height x width x channels")
        return pipeline.fit_image(columns, features, shape)

    def architecture(
        self, preprocessing: Mapping[str, Any], values: Mapping[str, Any], outputs: int
    ) -> dict[str, Any]:
        height, width, channels = preprocessing["shape"]
        return {
            "kind": "cnn",
            "height": height,
            "width": width,
            "channels": channels,
            "conv_channels": values["conv_channels"],
            "conv_layers": values["conv_layers"],
            "hidden_size": values["hidden_size"],
            "outputs": outputs,
        }


TRAINERS: tuple[type[FlaxTrainer], ...] = (
    TabularClassifier,
    TabularRegressor,
    TextClassifier,
    ImageClassifier,
)
