"""The JAX-free preparation of tables: split, batches, encoders, hashing, labels."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pytest

from aiaas.core.trainers import split_sizes
from aiaas.plugins.flax_trainers import input_pipeline as pipeline


def test_split_sizes_match_the_core_rule_and_depend_on_the_seed_only() -> None:
    split = pipeline.split_rows(101, 0.2, seed=3)
    sizes = split_sizes(101, 0.2)
    assert (split.train.size, split.validation.size) == (sizes.train, sizes.validation)
    assert np.array_equal(np.sort(np.r_[split.train, split.validation]), np.arange(101))
    again = pipeline.split_rows(101, 0.2, seed=3)
    assert np.array_equal(split.validation, again.validation)
    assert not np.array_equal(split.validation, pipeline.split_rows(101, 0.2, seed=4).validation)


def test_epoch_batches_are_a_function_of_seed_and_epoch() -> None:
    first = pipeline.epoch_batches(50, 8, 6, seed=1, epoch=0)
    assert first.shape == (6, 8)
    assert len(np.unique(first)) == 48  # a permutation: no row twice in an epoch
    assert np.array_equal(first, pipeline.epoch_batches(50, 8, 6, seed=1, epoch=0))
    assert not np.array_equal(first, pipeline.epoch_batches(50, 8, 6, seed=1, epoch=1))
    # A split smaller than a batch is repeated to fill it.
    assert pipeline.epoch_batches(3, 8, 1, seed=1, epoch=0).shape == (1, 8)


def test_tabular_encoding_standardizes_with_training_statistics() -> None:
    table = pa.table(
        {
            "amount": pa.array([1.0, 2.0, None, 3.0]),
            "count": pa.array([10, 10, 10, 10]),
            "flag": pa.array([True, False, None, True]),
            "city": pa.array(["paris", "lima", None, "paris"]),
        }
    )
    columns = {name: pipeline.table_column(table, name) for name in table.column_names}
    encoder = pipeline.fit_tabular(columns, table.column_names, max_categories=10)
    encoded = pipeline.encode_tabular(encoder, columns)
    assert encoded.dtype == np.float32
    assert encoded.shape == (4, 3 + 2)
    assert encoded[:, 0] == pytest.approx([-1.2247449, 0.0, 0.0, 1.2247449], abs=1e-6)
    assert encoded[:, 1].tolist() == [0.0] * 4  # constant column: std treated as 1
    assert encoded[2, 2] == 0.0  # null: the mean
    # One-hot over the sorted kept categories; null is "none of these".
    assert encoder["columns"][3]["categories"] == ["lima", "paris"]
    assert encoded[:, 3:].tolist() == [[0, 1], [1, 0], [0, 0], [0, 1]]

    unseen = {
        "amount": np.array([np.inf]),
        "count": np.array([10]),
        "flag": np.array([False]),
        "city": np.array(["tokyo"]),
    }
    row = pipeline.encode_tabular(encoder, unseen)
    assert row[0, 0] == 0.0  # not finite: the mean
    assert row[0, 3:].tolist() == [0.0, 0.0]  # unknown category: all zeros


def test_categories_are_capped_at_the_most_frequent() -> None:
    values = np.array(["a", "b", "b", "c", "c", "c", None], dtype=object)
    encoder = pipeline.fit_tabular({"letter": values}, ["letter"], max_categories=2)
    assert encoder["columns"][0]["categories"] == ["b", "c"]


def test_text_hashing_is_stable_across_processes() -> None:
    # CRC-32 is fixed by its definition, unlike the salted hash() of str.
    assert pipeline.hash_gram("book a", 1000) == zlib.crc32(b"book a") % 1000 + 1
    assert pipeline.text_grams("Book a FLIGHT!", "word", 1, 2) == [
        "book",
        "a",
        "flight",
        "book a",
        "a flight",
    ]
    assert pipeline.text_grams("hi", "char", 2, 3) == [" h", "hi", "i ", " hi", "hi "]
    encoder = pipeline.fit_text(
        np.array(["play jazz", "wake me up now", None], dtype=object),
        "text",
        analyzer="word",
        min_ngram=1,
        max_ngram=1,
        buckets=64,
        max_tokens=3,
    )
    assert encoder["length"] == 3  # the longest text, capped
    ids = pipeline.encode_text(encoder, {"text": np.array(["play jazz", None], dtype=object)})
    assert ids.dtype == np.int32
    assert ids[0].tolist() == [pipeline.hash_gram("play", 64), pipeline.hash_gram("jazz", 64), 0]
    assert ids[1].tolist() == [0, 0, 0]


def test_image_encoding_is_row_major() -> None:
    columns = {f"p{index}": np.array([float(index)]) for index in range(12)}
    encoder = pipeline.fit_image(columns, list(columns), (2, 3, 2))
    images = pipeline.encode_image(encoder, columns)
    assert images.shape == (1, 2, 3, 2)
    flat = (np.arange(12) - encoder["mean"]) / encoder["std"]
    assert images[0, 1, 2, 0] == pytest.approx(flat[1 * 6 + 2 * 2 + 0])


def test_labels_and_balanced_weights() -> None:
    classes = pipeline.fit_classes(["no", "yes", "no", "no"])
    assert classes == ["no", "yes"]
    indices = pipeline.encode_classes(classes, ["no", "yes", "no", "no", "maybe"])
    assert indices.tolist() == [0, 1, 0, 0, -1]
    weights = pipeline.balanced_class_weights(indices[:4], 2)
    assert weights.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    assert pipeline.fit_classes([True, False, True]) == [False, True]


@pytest.mark.parametrize(
    ("type_name", "kind"),
    [
        ("int64", "integer"),
        ("uint8", "integer"),
        ("integer", "integer"),
        ("double", "float"),
        ("float64", "float"),
        ("bool", "boolean"),
        ("string", "string"),
        ("large_string", "string"),
        ("timestamp[us]", "other"),
        ("date32[day]", "other"),
    ],
)
def test_column_kinds(type_name: str, kind: str) -> None:
    assert pipeline.column_kind(type_name) == kind
