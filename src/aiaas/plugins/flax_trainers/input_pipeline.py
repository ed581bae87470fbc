"""From a pyarrow table to numpy arrays: the split, the fitted feature encoders and the batch
order.

Every encoder is fitted on the training split only (the held-out split must not leak into the
statistics the model sees), and is a mapping of plain msgpack-able values, so that a bundle
carries it without pickle. The encoding itself is the bundle format's
(`aiaas.formats.flax_nnx_features`): a runtime encodes requests with it exactly as training
encoded the table. The trainers reach it through this module, beside the fitting.

Nothing here imports JAX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.trainers import split_sizes
from aiaas.formats.flax_nnx_features import (
    encode_features,
    encode_image,
    encode_tabular,
    encode_text,
    hash_gram,
    tabular_width,
    text_grams,
)

__all__ = [
    "SHUFFLE_STREAM",
    "SPLIT_STREAM",
    "RowSplit",
    "arrow_kind",
    "balanced_class_weights",
    "column_kind",
    "encode_classes",
    "encode_features",
    "encode_image",
    "encode_tabular",
    "encode_text",
    "epoch_batches",
    "fit_classes",
    "fit_image",
    "fit_standardized_target",
    "fit_tabular",
    "fit_text",
    "hash_gram",
    "split_rows",
    "table_column",
    "tabular_width",
    "target_values",
    "text_grams",
]

SPLIT_STREAM = 1
SHUFFLE_STREAM = 2
"""Separate random streams derived from the run's seed: the split stays the same whatever the
batch size or epoch count, and the batch order of an epoch never depends on the split's draw."""


# Column types ---------------------------------------------------------------------------------

_INTEGER_NAMES = {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
_FLOAT_NAMES = {"float", "double", "halffloat", "float16", "float32", "float64"}


def column_kind(type_name: str) -> str:
    """`integer`, `float`, `boolean`, `string` or `other`, from an Arrow type name (`int64`) or
    an aiaas logical type (`integer`): the platform may speak either."""
    name = type_name.strip().lower()
    if name in _INTEGER_NAMES or name == "integer":
        return "integer"
    if name in _FLOAT_NAMES or name.startswith("decimal"):
        return "float"
    if name in {"bool", "boolean"}:
        return "boolean"
    if name in {"string", "large_string", "utf8", "large_utf8"} or name.startswith("dictionary"):
        return "string"
    return "other"


def arrow_kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_dictionary(arrow_type) and pa.types.is_string(arrow_type.value_type):
        return "string"
    return "other"


def table_column(table: pa.Table, name: str) -> np.ndarray:
    """A column as numpy: numbers and booleans as float64 with NaN for null, strings as an
    object array of `str` and `None`: what the encoders (`aiaas.formats.flax_nnx_features`) take,
    from a table as from a request."""
    column = table.column(name)
    if arrow_kind(column.type) == "string":
        return np.asarray(pc.cast(column, pa.string()).to_pylist(), dtype=object)
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))


# Split and batches ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSplit:
    train: np.ndarray
    validation: np.ndarray


def split_rows(row_count: int, validation_fraction: float, seed: int) -> RowSplit:
    """Row indices of each split, sizes from `split_sizes`, rows drawn by the seed alone."""
    sizes = split_sizes(row_count, validation_fraction)
    order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(row_count)
    return RowSplit(
        train=np.sort(order[sizes.validation :]), validation=np.sort(order[: sizes.validation])
    )


def epoch_batches(
    train_count: int, batch_size: int, steps_per_epoch: int, seed: int, epoch: int
) -> np.ndarray:
    """Row indices of every batch of one epoch, [steps_per_epoch, batch_size]. Determined by
    (seed, epoch) alone, so a run resumed mid-epoch sees exactly the batches an uninterrupted
    one would. A split smaller than one batch is repeated to fill it."""
    order = np.random.default_rng([seed, SHUFFLE_STREAM, epoch]).permutation(train_count)
    needed = steps_per_epoch * batch_size
    if order.size < needed:
        order = np.resize(order, needed)
    return order[:needed].reshape(steps_per_epoch, batch_size)


# Tabular features -----------------------------------------------------------------------------


def fit_tabular(
    columns: Mapping[str, np.ndarray], features: Sequence[str], max_categories: int
) -> dict[str, Any]:
    """Standardization of numbers and booleans, one-hot of strings.

    Numbers are scaled by the training split's mean and standard deviation so that the
    optimizer sees features of one scale whatever their units; a null becomes the mean, which
    is 0 once scaled. Strings become a one-hot vector over the training split's most frequent
    categories: an MLP needs numbers, and a fixed vocabulary stored in the bundle keeps
    prediction self-contained. The cap bounds the width for identifier-like columns; a category
    never seen in training (or beyond the cap, or null) encodes as all zeros, "none of these".
    """
    encoded: list[dict[str, Any]] = []
    for name in features:
        values = columns[name]
        if values.dtype == object:
            present = [value for value in values if value is not None]
            names, counts = np.unique(np.asarray(present, dtype=str), return_counts=True)
            # Most frequent first; ties by value so the order never depends on the row order.
            ranked = sorted(zip(counts.tolist(), names.tolist(), strict=True), key=_by_count)
            kept = sorted(category for _, category in ranked[:max_categories])
            encoded.append({"name": name, "kind": "categorical", "categories": kept})
        else:
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else 0.0
            std = float(finite.std()) if finite.size else 0.0
            encoded.append(
                {"name": name, "kind": "numeric", "mean": mean, "std": std if std > 0 else 1.0}
            )
    return {"kind": "tabular", "columns": encoded}


def _by_count(entry: tuple[int, str]) -> tuple[int, str]:
    return (-entry[0], entry[1])


# Images ---------------------------------------------------------------------------------------


def fit_image(
    columns: Mapping[str, np.ndarray], features: Sequence[str], shape: Sequence[int]
) -> dict[str, Any]:
    """One mean and standard deviation over all pixels: per-pixel statistics would divide by
    zero on constant borders (digits) and would distort images relative to each other."""
    pixels = np.stack([columns[name] for name in features], axis=1)
    finite = pixels[np.isfinite(pixels)]
    mean = float(finite.mean()) if finite.size else 0.0
    std = float(finite.std()) if finite.size else 0.0
    return {
        "kind": "image",
        "pixels": list(features),
        "shape": [int(size) for size in shape],
        "mean": mean,
        "std": std if std > 0 else 1.0,
    }


# Text -----------------------------------------------------------------------------------------


def fit_text(
    strings: np.ndarray,
    column: str,
    *,
    analyzer: str,
    min_ngram: int,
    max_ngram: int,
    buckets: int,
    max_tokens: int,
) -> dict[str, Any]:
    """Hashing needs no vocabulary; only the padded length is learned: the longest training
    text's gram count, capped, so short texts do not pay for a length they never use."""
    longest = max(
        (len(text_grams(text, analyzer, min_ngram, max_ngram)) for text in strings if text),
        default=1,
    )
    return {
        "kind": "text",
        "column": column,
        "analyzer": analyzer,
        "min_ngram": min_ngram,
        "max_ngram": max_ngram,
        "buckets": buckets,
        "hash": "crc32",
        "length": max(1, min(longest, max_tokens)),
    }


# Targets --------------------------------------------------------------------------------------


def target_values(table: pa.Table, target: str) -> list[Any]:
    """The target column as Python values (int, bool, str, float or None)."""
    return list(table.column(target).to_pylist())


def fit_classes(labels: Sequence[Any]) -> list[Any]:
    """The classes, sorted, from the non-null labels of the training split."""
    return sorted(set(labels))


def encode_classes(classes: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """Class indices; a label absent from `classes` (seen only in validation) is -1."""
    position = {value: index for index, value in enumerate(classes)}
    return np.array([position.get(label, -1) for label in labels], dtype=np.int32)


def balanced_class_weights(class_indices: np.ndarray, class_count: int) -> np.ndarray:
    """Inverse frequency, scaled so the average weight over the training rows is 1 (scikit-
    learn's "balanced"): a rare class, fraud say, weighs as much in the loss as a common one."""
    counts = np.bincount(class_indices, minlength=class_count).astype(np.float64)
    weights = class_indices.size / (class_count * np.maximum(counts, 1.0))
    return weights.astype(np.float32)


def fit_standardized_target(values: np.ndarray) -> dict[str, float]:
    """A regressor learns a standardized target (unit scale keeps the default learning rate
    sensible for any units) and the bundle scales its output back."""
    std = float(values.std()) if values.size else 0.0
    return {"mean": float(values.mean()) if values.size else 0.0, "std": std if std > 0 else 1.0}
