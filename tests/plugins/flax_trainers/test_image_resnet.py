"""The `image-resnet` trainer over tables of encoded images, as an image dataset version holds
them: quality against the pixel-column `image-classifier` and scikit-learn on digits, a
generated shapes task, an exact resume, the `jax` runtime serving the model as training
evaluated it, and everything it refuses.

Models stay small (two or three stages of one block, 16 channels) so that the file runs on two
CPU cores in a minute or two, most of it the two quality fits.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from aiaas.core.errors import TrainingCancelled
from aiaas.core.images import encode_png
from aiaas.core.trainers import CHECKPOINT_PARTIAL_SUFFIX, TrainedModel, vet_hyperparameters
from aiaas.formats.flax_nnx import load_predictor
from aiaas.plugins.flax_trainers import ImageClassifier, ImageResNet
from aiaas.plugins.flax_trainers.input_pipeline import split_rows
from aiaas.plugins.jax_serving import JaxServingRuntime

DIGITS_HYPERPARAMETERS = {"epochs": 20, "stages": 2, "augment": False}
"""Digits are no mirror images of themselves, and a shift of one pixel of 8 is a large one: no
augmentation (measured: 99.4% without it, 98.9% with shifts of one pixel)."""
SHAPES = ("circle", "cross", "square", "stripe", "triangle")


def image_table(images: list[bytes], labels: list[str], **extra: Any) -> pa.Table:
    """The columns of an image dataset version that matter here (the contract's `image`
    column, binary, and `label`), and any others given."""
    return pa.table({"image": pa.array(images, pa.binary()), "label": labels, **extra})


def digit_pixels(features: np.ndarray) -> np.ndarray:
    """scikit-learn's digits (16 grey levels) as uint8 8x8 grey images."""
    return np.rint(features * 255 / 16).astype(np.uint8).reshape(-1, 8, 8, 1)


@pytest.fixture(scope="module")
def digits_png(digits: tuple[np.ndarray, np.ndarray, pa.Table]) -> pa.Table:
    features, target, _ = digits
    images = [encode_png(pixels) for pixels in digit_pixels(features)]
    return image_table(images, [str(label) for label in target])


@pytest.fixture(scope="module")
def digits_resnet(digits_png: pa.Table, make_run: Any, recording_reporter: Any) -> TrainedModel:
    run = make_run(digits_png, "label", DIGITS_HYPERPARAMETERS)
    model: TrainedModel = ImageResNet().fit(run, recording_reporter())
    return model


def shape_image(kind: str, draw: np.random.Generator, size: int = 64) -> np.ndarray:
    """A bright shape of random colour, size and place over dim RGB noise."""
    image = Image.fromarray(draw.integers(0, 128, (size, size, 3), dtype=np.uint8))
    pen = ImageDraw.Draw(image)
    colour = tuple(int(value) for value in draw.integers(140, 256, 3))
    radius = int(draw.integers(10, 18))
    x, y = (int(value) for value in draw.integers(radius + 2, size - radius - 2, 2))
    if kind == "circle":
        pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif kind == "square":
        pen.rectangle((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif kind == "triangle":
        pen.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], colour)
    elif kind == "cross":
        arm = max(2, radius // 3)
        pen.rectangle((x - radius, y - arm, x + radius, y + arm), fill=colour)
        pen.rectangle((x - arm, y - radius, x + arm, y + radius), fill=colour)
    else:  # three horizontal stripes
        half = max(2, radius // 6)
        for offset in (-radius, 0, radius):
            pen.rectangle((x - radius, y + offset - half, x + radius, y + offset + half), colour)
    return np.asarray(image, dtype=np.uint8)


def shapes_table(per_class: int, seed: int = 3) -> pa.Table:
    draw = np.random.default_rng(seed)
    labels = [SHAPES[row % len(SHAPES)] for row in range(per_class * len(SHAPES))]
    return image_table([encode_png(shape_image(label, draw)) for label in labels], labels)


# Quality --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_digits_as_png_match_the_pixel_classifier_and_an_mlp(
    digits: tuple[np.ndarray, np.ndarray, pa.Table],
    digits_resnet: TrainedModel,
    make_run: Any,
    recording_reporter: Any,
) -> None:
    features, target, pixel_table = digits
    pixel_model = ImageClassifier().fit(make_run(pixel_table, "target"), recording_reporter())
    # The same split: it depends on the row count and the seed alone.
    split = split_rows(len(features), 0.2, 0)
    scaler = StandardScaler().fit(features[split.train])
    mlp = MLPClassifier(random_state=0, max_iter=1000).fit(
        scaler.transform(features[split.train]), target[split.train]
    )
    mlp_accuracy = mlp.score(scaler.transform(features[split.validation]), target[split.validation])
    accuracy = digits_resnet.metrics["accuracy"]
    assert accuracy >= pixel_model.metrics["accuracy"] - 0.01
    assert accuracy >= mlp_accuracy - 0.01
    assert digits_resnet.metrics["validation_examples"] == split.validation.size
    assert len(digits_resnet.metrics["confusion_matrix"]) == 10


@pytest.mark.slow
def test_shapes_on_noise_reach_95_percent(make_run: Any, recording_reporter: Any) -> None:
    """64x64 RGB images, trained at 32x32 with flips and shifts."""
    table = shapes_table(per_class=120)
    hyperparameters = {"epochs": 15, "height": 32, "width": 32, "crop_padding": 2}
    model = ImageResNet().fit(make_run(table, "label", hyperparameters), recording_reporter())
    assert model.metrics["accuracy"] >= 0.95
    assert model.signature.inputs[0].shape == (-1, 32, 32, 3)


# The signature and the bundle --------------------------------------------------------------------


def test_signature_takes_uint8_images_at_the_trained_size(digits_resnet: TrainedModel) -> None:
    signature = digits_resnet.signature.as_json()
    assert signature["inputs"] == [{"name": "image", "dtype": "uint8", "shape": [-1, 8, 8, 1]}]
    assert [output["name"] for output in signature["outputs"]] == ["label", "probabilities"]
    assert signature["outputs"][1]["shape"] == [-1, 10]
    assert digits_resnet.metrics["best_epoch"] >= 1


def test_the_jax_runtime_serves_what_training_evaluated(
    digits_png: pa.Table, digits: tuple[np.ndarray, np.ndarray, pa.Table], digits_resnet: Any
) -> None:
    model = JaxServingRuntime().load(digits_resnet.bundle, max_batch_size=64)
    model.warm_up()
    assert model.compilations == len(model.bucket_sizes)

    validation = split_rows(digits_png.num_rows, 0.2, 0).validation
    pixels = digit_pixels(digits[0])[validation]
    labels = np.asarray(digits_png.column("label").to_pylist())[validation]
    probabilities, predicted = [], []
    for start in range(0, len(pixels), 50):  # 50: a batch padded to its bucket of 64
        outputs = model.predict_batch({"image": pixels[start : start + 50]})
        probabilities.append(outputs["probabilities"])
        predicted.append(outputs["label"])
    served = np.concatenate(probabilities)
    assert model.compilations == len(model.bucket_sizes)  # nothing compiled after warm-up

    # The training run's evaluation of the same rows, figure for figure.
    position = {label: index for index, label in enumerate(digits_resnet.metrics["labels"])}
    truth = served[np.arange(len(labels)), [position[label] for label in labels]]
    assert float(-np.mean(np.log(np.clip(truth, 1e-7, 1.0)))) == pytest.approx(
        digits_resnet.metrics["loss"], abs=1e-5
    )
    assert float(np.mean(np.concatenate(predicted) == labels)) == pytest.approx(
        digits_resnet.metrics["accuracy"]
    )

    # Encoded images, and float pixels, are the same images.
    encoded = np.asarray(digits_png.column("image").to_pylist()[:8], dtype=object)
    from_png = model.predict_batch({"image": encoded})
    first = model.predict_batch({"image": digit_pixels(digits[0])[:8]})
    assert from_png["probabilities"] == pytest.approx(first["probabilities"], abs=1e-6)
    floats = model.predict_batch({"image": digit_pixels(digits[0])[:8].astype(np.float32)})
    assert floats["probabilities"] == pytest.approx(first["probabilities"], abs=1e-6)
    # And so is the bundle's own predictor.
    predictor = load_predictor(digits_resnet.bundle)
    direct = predictor.predict({"image": pixels[:50]})
    assert direct["probabilities"] == pytest.approx(served[:50], abs=1e-5)
    assert direct["label"].tolist() == np.concatenate(predicted)[:50].tolist()


def test_images_of_another_size_are_fitted(digits_resnet: TrainedModel) -> None:
    predictor = load_predictor(digits_resnet.bundle)
    draw = np.random.default_rng(0)
    big = draw.integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    assert predictor.preprocess({"image": big})["inputs"].shape == (3, 8, 8, 1)
    with pytest.raises(ValueError, match="tensor"):
        predictor.preprocess({"image": np.zeros((3, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match=r"image\[1\]"):
        predictor.preprocess({"image": np.asarray([encode_png(big[0]), None], dtype=object)})


# Checkpoints ----------------------------------------------------------------------------------


def test_a_cancelled_run_resumes_and_ends_like_an_uninterrupted_one(
    digits_png: pa.Table, make_run: Any, recording_reporter: Any, tmp_path: Path
) -> None:
    """Augmentation on: its draws depend on the step alone, so the resumed steps see the same
    flips and shifts. 400 images: 320 to train on, 5 steps an epoch of 64, 15 in all."""
    table = digits_png.slice(0, 400)
    hyperparameters = {"epochs": 3, "stages": 1, "base_channels": 8, "patience": 0}
    straight = recording_reporter()
    uninterrupted = ImageResNet().fit(
        make_run(table, "label", hyperparameters, checkpoint_every_steps=4), straight
    )
    assert uninterrupted.steps == 15

    directory = tmp_path / "job"
    run = make_run(
        table, "label", hyperparameters, checkpoint_dir=directory, checkpoint_every_steps=4
    )
    cancelled = recording_reporter(stop_after_checkpoint=8)
    with pytest.raises(TrainingCancelled):
        ImageResNet().fit(run, cancelled)
    assert cancelled.checkpoints == [4, 8]
    # A write of the next checkpoint cut short is ignored.
    shutil.copytree(directory / "8", directory / f"12{CHECKPOINT_PARTIAL_SUFFIX}")

    resumed = recording_reporter()
    model = ImageResNet().fit(run, resumed)
    assert resumed.resumed_steps == [8]
    assert [report.step for report in resumed.progress_reports] == list(range(9, 16))
    assert model.metrics == uninterrupted.metrics
    assert model.bundle == uninterrupted.bundle


# Refusals -------------------------------------------------------------------------------------


def _problems(columns: dict[str, str], **hyperparameters: Any) -> dict[str, str]:
    trainer = ImageResNet()
    values, wrong = vet_hyperparameters(trainer.hyperparameters(), hyperparameters)
    assert not wrong
    return trainer.feature_problems(columns, values)


def test_vetting_wants_one_image_column() -> None:
    contract = {
        "path": "string",
        "image": "image",
        "width": "int64",
        "height": "int64",
        "channels": "int64",
        "format": "string",
    }
    # The contract's columns are what a request without features sends: accepted, not read.
    assert _problems(contract) == {}
    assert _problems({"image": "binary"}) == {}
    assert _problems({"image": "large_binary"}) == {}
    assert set(_problems({"pixel": "float64", "name": "string"})) == {"pixel", "name", "features"}
    assert "image column" in _problems({"path": "string"})["features"]
    two = _problems({"image": "image", "mask": "image"})
    assert set(two) == {"image", "mask"}
    assert "only one image column" in two["image"]
    assert set(_problems({"image": "image", "age": "int64"})) == {"age"}
    assert set(_problems({"image": "image"}, channels=2)) == {"channels"}
    trainer = ImageResNet()
    assert trainer.target_problem("string") is None
    assert "classes" in str(trainer.target_problem("binary"))
    _, wrong = vet_hyperparameters(trainer.hyperparameters(), {"stages": 9, "augment": "yes"})
    assert set(wrong) == {"stages", "augment"}


def test_fit_refuses_what_is_not_an_image_dataset(make_run: Any, recording_reporter: Any) -> None:
    images = [encode_png(np.full((8, 8, 1), value, np.uint8)) for value in range(0, 200, 10)]
    labels = ["dark" if index < 10 else "light" for index in range(20)]
    with pytest.raises(ValueError, match="image column"):
        ImageResNet().fit(
            make_run(pa.table({"name": labels, "label": labels}), "label"), recording_reporter()
        )
    corrupt = [*images[:5], images[5][:20], *images[6:]]
    # Named by its row in the split it was found in; ingest proves every stored image whole,
    # so only a table made by hand gets here.
    with pytest.raises(ValueError, match=r"image\[\d+\] does not decode"):
        ImageResNet().fit(make_run(image_table(corrupt, labels), "label"), recording_reporter())
    missing: list[bytes | None] = [*images[:3], None, *images[4:]]
    with pytest.raises(ValueError, match=r"image\[3\] has no image"):
        ImageResNet().fit(make_run(image_table(missing, labels), "label"), recording_reporter())
    with pytest.raises(ValueError, match="channels"):
        ImageResNet().fit(
            make_run(image_table(images, labels), "label", {"channels": 2}), recording_reporter()
        )


def test_a_training_set_too_large_to_hold_is_refused_before_any_image_is_decoded(
    make_run: Any, recording_reporter: Any
) -> None:
    """300 grey scans of 6000x6000 (240 in the training split) would take 8.6 GB at their size:
    the bound is checked on the sizes their headers give, before a pixel is decoded."""
    import io
    import resource

    buffer = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buffer, format="PNG")
    scan = buffer.getvalue()
    labels = ["a" if index % 2 else "b" for index in range(300)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="take more than 8 GiB"):
        ImageResNet().fit(
            make_run(image_table([scan] * 300, labels), "label"), recording_reporter()
        )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20, f"the refusal took {grown_kib} KiB: images were decoded"
