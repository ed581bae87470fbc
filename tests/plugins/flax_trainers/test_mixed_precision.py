"""Mixed precision: `precision` bfloat16 computes in bfloat16 on float32 master weights, trains
as well as float32 does, and saves a float32 model that serves like any other."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pytest
from flax import nnx

from aiaas.core.trainers import vet_hyperparameters
from aiaas.formats.flax_nnx import decode_bundle, load_predictor
from aiaas.formats.flax_nnx_models import build_model
from aiaas.plugins.flax_trainers import (
    ImageClassifier,
    ImageResNet,
    TabularClassifier,
    TabularRegressor,
    TextClassifier,
)

EVERY_TRAINER = (
    TabularClassifier(),
    TabularRegressor(),
    TextClassifier(),
    ImageClassifier(),
    ImageResNet(),
)
# One tiny model of each kind, with an input it reads.
MODELS = {
    "mlp": (
        {"kind": "mlp", "inputs": 5, "hidden_size": 8, "hidden_layers": 2, "outputs": 3},
        np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32),
    ),
    "embedding_bag": (
        {
            "kind": "embedding_bag",
            "buckets": 64,
            "embedding_dim": 4,
            "hidden_size": 8,
            "outputs": 3,
        },
        np.array([[1, 2, 0], [3, 9, 40], [5, 0, 0], [7, 7, 7]], np.int32),
    ),
    "cnn": (
        {
            "kind": "cnn",
            "height": 6,
            "width": 6,
            "channels": 1,
            "conv_channels": 4,
            "conv_layers": 2,
            "hidden_size": 8,
            "outputs": 3,
        },
        np.random.default_rng(1).random((4, 6, 6, 1)).astype(np.float32),
    ),
    "resnet": (
        {
            "kind": "resnet",
            "height": 8,
            "width": 8,
            "channels": 3,
            "base_channels": 4,
            "stages": 2,
            "blocks_per_stage": 1,
            "outputs": 3,
            "mean": [120.0, 110.0, 100.0],
            "std": [60.0, 50.0, 40.0],
        },
        np.random.default_rng(2).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8),
    ),
}


@pytest.mark.parametrize("trainer", EVERY_TRAINER, ids=lambda trainer: trainer.name)
def test_every_trainer_takes_a_precision_and_refuses_an_unknown_one(trainer: Any) -> None:
    values, problems = vet_hyperparameters(trainer.hyperparameters(), {})
    assert (values["precision"], problems) == ("float32", {})
    values, problems = vet_hyperparameters(trainer.hyperparameters(), {"precision": "bfloat16"})
    assert (values["precision"], problems) == ("bfloat16", {})
    values, problems = vet_hyperparameters(trainer.hyperparameters(), {"precision": "float16"})
    assert problems == {"precision": "must be one of float32, bfloat16"}
    assert "precision" not in values


def test_fit_refuses_an_unknown_precision_before_it_trains(
    make_run: Any, recording_reporter: Any, wine: Any
) -> None:
    run = make_run(wine[2], "target", {"precision": "half"})
    reporter = recording_reporter()
    with pytest.raises(ValueError, match="precision: must be one of float32, bfloat16"):
        TabularClassifier().fit(run, reporter)
    assert reporter.progress_reports == []
    assert list(run.checkpoint_dir.iterdir()) == []


def test_an_architecture_of_an_unknown_compute_dtype_is_refused() -> None:
    architecture, _ = MODELS["mlp"]
    with pytest.raises(ValueError, match="unknown compute_dtype 'float16'"):
        build_model({**architecture, "compute_dtype": "float16"}, nnx.Rngs(0))


def _dtypes_of_products(graphdef: Any, params: Any, inputs: np.ndarray) -> list[str]:
    """The operand dtype of each matmul and convolution of the forward pass, in order."""
    traced = jax.make_jaxpr(lambda params: nnx.merge(graphdef, params)(inputs))(params)
    return [
        str(equation.invars[0].aval.dtype)
        for equation in traced.eqns
        if equation.primitive.name in {"dot_general", "conv_general_dilated"}
    ]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_bfloat16_model_computes_in_bfloat16_on_float32_weights(kind: str) -> None:
    architecture, inputs = MODELS[kind]
    graphdef, state = nnx.split(build_model(architecture, nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)
    mixed_graphdef, mixed_state = nnx.split(
        build_model({**architecture, "compute_dtype": "bfloat16"}, nnx.Rngs(0))
    )
    mixed_params = nnx.to_pure_dict(mixed_state)
    # The same float32 parameters: a checkpoint or a bundle does not know the precision.
    assert jax.tree.structure(mixed_params) == jax.tree.structure(params)
    for mixed, plain in zip(jax.tree.leaves(mixed_params), jax.tree.leaves(params), strict=True):
        assert mixed.dtype == plain.dtype == jnp.float32
        np.testing.assert_array_equal(mixed, plain)

    # Every product but the output layer's reads bfloat16; the output layer's reads float32.
    assert set(_dtypes_of_products(graphdef, params, inputs)) == {"float32"}
    mixed_products = _dtypes_of_products(mixed_graphdef, params, inputs)
    assert mixed_products[:-1] and set(mixed_products[:-1]) == {"bfloat16"}
    assert mixed_products[-1] == "float32"

    outputs = nnx.merge(graphdef, params)(inputs)
    mixed_outputs = nnx.merge(mixed_graphdef, params)(inputs)
    assert mixed_outputs.dtype == jnp.float32
    scale = float(jnp.abs(outputs).max()) + 1e-3
    np.testing.assert_allclose(mixed_outputs, outputs, atol=0.05 * scale)

    def loss(params: Any) -> jax.Array:
        return jnp.mean(nnx.merge(mixed_graphdef, params)(inputs) ** 2)

    # The gradients the optimizer applies to the master weights are float32.
    gradients = jax.grad(loss)(params)
    assert {leaf.dtype for leaf in jax.tree.leaves(gradients)} == {jnp.dtype(jnp.float32)}


def test_bfloat16_training_matches_float32_and_saves_a_float32_model(
    make_run: Any, recording_reporter: Any, wine: tuple[np.ndarray, np.ndarray, pa.Table]
) -> None:
    _, target, table = wine
    models = {}
    for precision in ("float32", "bfloat16"):
        hyperparameters = {
            "precision": precision,
            "hidden_size": 16,
            "epochs": 12,
            "learning_rate": 0.01,
            "patience": 0,
        }
        run = make_run(table, "target", hyperparameters, validation_fraction=0.25)
        models[precision] = TabularClassifier().fit(run, recording_reporter())
    plain, mixed = models["float32"].metrics, models["bfloat16"].metrics
    assert plain["accuracy"] >= 0.9
    assert mixed["accuracy"] >= plain["accuracy"] - 0.05  # two of the 44 validation rows
    assert mixed["loss"] == pytest.approx(plain["loss"], abs=0.1)

    bundle = decode_bundle(models["bfloat16"].bundle)
    assert bundle["hyperparameters"]["precision"] == "bfloat16"
    assert "compute_dtype" not in bundle["architecture"]  # it serves in float32
    assert {array["dtype"] for array in bundle["params"].values()} == {"float32"}
    columns = {name: table.column(name).to_numpy() for name in table.column_names[:-1]}
    output = load_predictor(models["bfloat16"].bundle).predict(columns)
    assert output["probabilities"].dtype == np.float32
    assert float(np.mean(output["label"] == target)) >= 0.9
