"""The built-in JAX serving runtime over real, tiny trained models: registration, buckets that
compile once each, no compilation in the steady state, predictions equal to the bundle's own
`Predictor`, and the adaptive batcher in front of it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aiaas.core.config import build_config
from aiaas.core.errors import InputError
from aiaas.core.model_inputs import check_inputs
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.registry import load_registries
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batching import AdaptiveBatcher
from aiaas.core.trainers import SilentReporter, TrainedModel, TrainingRun
from aiaas.formats.flax_nnx import Predictor, load_predictor
from aiaas.plugins.flax_trainers import TabularClassifier, TabularRegressor
from aiaas.plugins.jax_serving import JaxServingRuntime

MAX_BATCH_SIZE = 8  # buckets 1, 2, 4, 8
ROWS = 300
WAIT_S = 60


def mixed_table(rows: int, seed: int = 0) -> pa.Table:
    """Numbers, integers, booleans and strings (with nulls), and a label that depends on them."""
    draw = np.random.default_rng(seed)
    amount = draw.normal(size=rows)
    city = draw.choice(["paris", "lima", "oslo"], rows).astype(object)
    city[::7] = None
    score = amount + (city == "paris")
    return pa.table(
        {
            "amount": pa.array(amount),
            "count": pa.array(draw.integers(0, 5, rows)),
            "member": pa.array(draw.random(rows) > 0.5),
            "city": pa.array(city.tolist(), pa.string()),
            "label": pa.array(np.where(score > 0.3, "yes", "no").tolist()),
            "value": pa.array(score * 10 + 100),
        }
    )


def fit(trainer: Any, table: pa.Table, target: str, checkpoint_dir: Path) -> TrainedModel:
    features = ("amount", "count", "member", "city")
    run = TrainingRun(
        table=table.select([*features, target]),
        target=target,
        features=features,
        hyperparameters={"epochs": 2, "hidden_size": 8, "hidden_layers": 1, "batch_size": 64},
        validation_fraction=0.2,
        seed=0,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_steps=1_000_000,
    )
    model: TrainedModel = trainer.fit(run, SilentReporter())
    return model


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return mixed_table(ROWS)


@pytest.fixture(scope="module")
def classifier(table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return fit(TabularClassifier(), table, "label", tmp_path_factory.mktemp("classifier"))


@pytest.fixture(scope="module")
def regressor(table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return fit(TabularRegressor(), table, "value", tmp_path_factory.mktemp("regressor"))


@pytest.fixture(scope="module")
def warm_classifier(classifier: TrainedModel) -> LoadedModel:
    model = JaxServingRuntime().load(classifier.bundle, max_batch_size=MAX_BATCH_SIZE)
    model.warm_up()
    return model


def rows_of(table: pa.Table, indices: list[int]) -> dict[str, list[Any]]:
    """Request columns as JSON would bring them: Python lists, None for a null string."""
    picked = table.take(indices)
    return {name: picked.column(name).to_pylist() for name in ("amount", "count", "member", "city")}


def expected(predictor: Predictor, columns: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    return predictor.predict({name: np.asarray(values) for name, values in columns.items()})


def test_the_plugin_registers_the_jax_runtime_without_importing_jax() -> None:
    config = build_config({"disable_plugin_autoload": True})
    # A built-in: registered by every plugin manager, as a third-party one would be.
    spec = load_registries(create_plugin_manager(config)).serving_runtimes.get("jax")
    assert spec.plugin == "aiaas.plugins.jax_serving"
    assert spec.description
    runtime = spec.factory(config)
    assert isinstance(runtime, JaxServingRuntime)
    assert runtime.supported_model_formats() == {"flax-nnx"}

    script = (
        "import sys\n"
        "from aiaas.plugins.jax_serving import aiaas_serving_runtimes\n"
        "[spec] = aiaas_serving_runtimes()\n"
        "spec.factory(None).supported_model_formats()\n"
        "print('jax' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=WAIT_S
    )
    assert result.stdout.strip() == "False"


def test_warm_up_compiles_each_bucket_exactly_once(classifier: TrainedModel) -> None:
    model = JaxServingRuntime().load(classifier.bundle, max_batch_size=MAX_BATCH_SIZE)
    assert model.bucket_sizes == (1, 2, 4, 8)
    assert model.compilations == 0

    model.warm_up()
    assert model.compilations == len(model.bucket_sizes)
    model.warm_up()
    assert model.compilations == len(model.bucket_sizes)


def test_the_steady_state_never_compiles(warm_classifier: Any, table: pa.Table) -> None:
    compiled = warm_classifier.compilations
    draw = random.Random(11)
    for _ in range(500):
        indices = draw.sample(range(ROWS), draw.randint(1, MAX_BATCH_SIZE))
        columns = check_inputs(
            warm_classifier.signature, rows_of(table, indices), max_batch=MAX_BATCH_SIZE
        )
        outputs = warm_classifier.predict_batch(columns)
        assert len(outputs["label"]) == len(indices)
    assert warm_classifier.compilations == compiled

    # The count is real: a shape outside the buckets (which the model itself never sends)
    # compiles, and the count shows it.
    width = warm_classifier.predictor.preprocess(rows_of(table, [0]))["inputs"].shape[1]
    warm_classifier._apply(warm_classifier.predictor.params, np.zeros((3, width), np.float32))
    assert warm_classifier.compilations == compiled + 1


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_classifier_predictions_equal_the_predictors(
    warm_classifier: LoadedModel, classifier: TrainedModel, table: pa.Table, rows: int
) -> None:
    predictor = load_predictor(classifier.bundle)
    columns = rows_of(table, list(range(rows * 5, rows * 6)))
    outputs = warm_classifier.predict_batch(
        check_inputs(warm_classifier.signature, columns, max_batch=MAX_BATCH_SIZE)
    )
    reference = expected(predictor, columns)
    assert set(outputs) == {"label", "probabilities"}
    assert outputs["label"].tolist() == reference["label"].tolist()
    assert set(outputs["label"].tolist()) <= {"no", "yes"}
    np.testing.assert_allclose(outputs["probabilities"], reference["probabilities"], atol=1e-5)
    assert outputs["probabilities"].dtype == np.float32


def test_regressor_predictions_equal_the_predictors(
    regressor: TrainedModel, table: pa.Table
) -> None:
    model = JaxServingRuntime().load(regressor.bundle, max_batch_size=4)
    model.warm_up()
    columns = rows_of(table, [4, 8, 15])
    outputs = model.predict_batch(check_inputs(model.signature, columns, max_batch=4))
    assert set(outputs) == {"value"}
    reference = expected(load_predictor(regressor.bundle), columns)["value"]
    np.testing.assert_allclose(outputs["value"], reference, rtol=1e-5, atol=1e-3)
    assert model.compilations == len(model.bucket_sizes)


async def test_the_batcher_serves_the_real_model_end_to_end(
    warm_classifier: LoadedModel, classifier: TrainedModel, table: pa.Table
) -> None:
    predictor = load_predictor(classifier.bundle)
    compiled = warm_classifier.compilations
    draw = random.Random(2)
    requests = [draw.sample(range(ROWS), draw.randint(1, 4)) for _ in range(40)]
    batcher = AdaptiveBatcher(
        warm_classifier, max_batch_size=MAX_BATCH_SIZE, max_wait_ms=2, max_queue_size=256
    )
    async with asyncio.timeout(WAIT_S), batcher:
        results = await asyncio.gather(*(batcher.submit(rows_of(table, r)) for r in requests))
        with pytest.raises(InputError) as caught:
            await batcher.submit({**rows_of(table, [0, 1]), "amount": [float("nan"), 1.0]})
        assert caught.value.field_errors == {"amount": "must be finite: NaN or infinity at row 0"}

    for indices, result in zip(requests, results, strict=True):
        reference = expected(predictor, rows_of(table, indices))
        assert result["label"].tolist() == reference["label"].tolist()
        np.testing.assert_allclose(result["probabilities"], reference["probabilities"], atol=1e-5)
    assert batcher.stats().batches_run < len(requests)
    assert warm_classifier.compilations == compiled
