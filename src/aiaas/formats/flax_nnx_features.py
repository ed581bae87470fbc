"""The feature encoding of a flax-nnx bundle: from columns to the one array its model reads.

A bundle's `preprocessing` is a mapping of plain values, fitted by the trainer on the training
split (`aiaas.plugins.flax_trainers.input_pipeline`): standardization and one-hot categories for
tabular data, pixel statistics for images, hashed n-grams for text, the size of encoded images
(`flax_nnx_images`). Training encodes its table with these functions, and a runtime encodes each
request with the same ones, so the two can never encode a value differently.

Nothing here imports JAX.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from aiaas.formats.flax_nnx_images import encode_image_tensor


def as_numbers(values: Any, name: str) -> np.ndarray:
    """float64, with NaN for null and for anything not finite."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        numbers = array.astype(np.float64)
    else:
        try:
            numbers = np.array(
                [np.nan if value is None else float(value) for value in array.ravel()],
                dtype=np.float64,
            )
        except (TypeError, ValueError):
            raise ValueError(f"column {name!r} must hold numbers") from None
    numbers = numbers.reshape(-1)
    numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def as_strings(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=object).reshape(-1)
    return np.array([None if value is None else str(value) for value in array], dtype=object)


# Tabular features -----------------------------------------------------------------------------


def encode_tabular(encoder: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for column in encoder["columns"]:
        name = column["name"]
        if column["kind"] == "numeric":
            numbers = (as_numbers(columns[name], name) - column["mean"]) / column["std"]
            parts.append(np.nan_to_num(numbers, nan=0.0)[:, None])
        else:
            strings = as_strings(columns[name])
            position = {category: index for index, category in enumerate(column["categories"])}
            one_hot = np.zeros((strings.size, len(position)), dtype=np.float32)
            for row, value in enumerate(strings):
                index = position.get(value)
                if index is not None:
                    one_hot[row, index] = 1.0
            parts.append(one_hot)
    return np.concatenate(parts, axis=1).astype(np.float32)


def tabular_width(encoder: Mapping[str, Any]) -> int:
    return sum(
        1 if column["kind"] == "numeric" else len(column["categories"])
        for column in encoder["columns"]
    )


# Images -------------------------------------------------------------------------------------


def encode_image(encoder: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """[rows, height, width, channels]; the pixel columns are in row-major (h, w, c) order."""
    pixels = np.stack([as_numbers(columns[name], name) for name in encoder["pixels"]], axis=1)
    scaled: np.ndarray = np.nan_to_num((pixels - encoder["mean"]) / encoder["std"], nan=0.0)
    return scaled.reshape(-1, *encoder["shape"]).astype(np.float32)


# Text ---------------------------------------------------------------------------------------

_WORD_SEPARATORS = str.maketrans(dict.fromkeys("\t\n\r.,;:!?\"'()[]{}<>/\\|", " "))


def text_grams(text: str, analyzer: str, min_ngram: int, max_ngram: int) -> list[str]:
    """Lower-cased word n-grams, or character n-grams inside word boundaries (each word padded
    with spaces, so a gram never spans two words)."""
    words = text.lower().translate(_WORD_SEPARATORS).split()
    grams: list[str] = []
    if analyzer == "word":
        for size in range(min_ngram, max_ngram + 1):
            grams.extend(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))
        return grams
    for word in words:
        padded = f" {word} "
        for size in range(min_ngram, max_ngram + 1):
            grams.extend(padded[i : i + size] for i in range(len(padded) - size + 1))
    return grams


def hash_gram(gram: str, buckets: int) -> int:
    """Bucket 1..buckets (0 is padding). CRC-32 of the UTF-8 bytes: the same in every process
    and on every machine, unlike Python's salted `hash()`."""
    return zlib.crc32(gram.encode("utf-8")) % buckets + 1


def encode_text(encoder: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """Bucket ids [rows, length], int32, 0-padded; grams beyond the length are dropped."""
    strings = as_strings(columns[encoder["column"]])
    length = encoder["length"]
    ids = np.zeros((strings.size, length), dtype=np.int32)
    for row, text in enumerate(strings):
        if not text:
            continue
        grams = text_grams(text, encoder["analyzer"], encoder["min_ngram"], encoder["max_ngram"])
        hashed = [hash_gram(gram, encoder["buckets"]) for gram in grams[:length]]
        ids[row, : len(hashed)] = hashed
    return ids


def encode_features(encoder: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    kind = encoder["kind"]
    if kind == "tabular":
        return encode_tabular(encoder, columns)
    if kind == "image":
        return encode_image(encoder, columns)
    if kind == "text":
        return encode_text(encoder, columns)
    if kind == "image_tensor":
        return encode_image_tensor(encoder, columns)
    raise ValueError(f"unknown preprocessing {kind!r}")
