"""Each trainer of the trees extra against the library it wraps, run directly: on scikit-learn's
bundled datasets, with the same hyperparameters, on the same split, the trainer's held-out figure
is within 1 point of the library's; and the ONNX graph it wrote, served by the `onnx` runtime,
answers what the library's own model answers, to 1e-5."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pyarrow as pa
import pytest
import xgboost
from aiaas_trees.serving import OnnxServingRuntime
from aiaas_trees.trainers import TRAINERS
from sklearn import ensemble, linear_model, metrics, pipeline, preprocessing
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from aiaas.core.trainers import SilentReporter, TrainedModel, TrainingRun
from aiaas.plugins.flax_trainers.input_pipeline import split_rows

SEED = 3
VALIDATION_FRACTION = 0.25
ROUNDS = 40
POINT = 0.01
"""One point of accuracy (classifiers) or of R² (regressors)."""

Native = Callable[[], Any]

# The library's own estimator for each trainer, built here from the hyperparameters the test
# gives the trainer, named as the library names them.
CASES: list[tuple[str, dict[str, Any], Native]] = [
    (
        "hist-gradient-boosting-classifier",
        {"max_iter": ROUNDS, "learning_rate": 0.2, "max_leaf_nodes": 15},
        lambda: ensemble.HistGradientBoostingClassifier(
            max_iter=ROUNDS,
            learning_rate=0.2,
            max_leaf_nodes=15,
            early_stopping=False,
            random_state=SEED,
        ),
    ),
    (
        "hist-gradient-boosting-regressor",
        {"max_iter": ROUNDS, "learning_rate": 0.2, "max_leaf_nodes": 15},
        lambda: ensemble.HistGradientBoostingRegressor(
            max_iter=ROUNDS,
            learning_rate=0.2,
            max_leaf_nodes=15,
            early_stopping=False,
            random_state=SEED,
        ),
    ),
    (
        "logistic-regression",
        {"C": 0.5},
        lambda: pipeline.make_pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(C=0.5, max_iter=1000, random_state=SEED),
        ),
    ),
    (
        "random-forest-classifier",
        {"n_estimators": ROUNDS, "max_depth": 6},
        lambda: ensemble.RandomForestClassifier(
            n_estimators=ROUNDS, max_depth=6, random_state=SEED
        ),
    ),
    (
        "random-forest-regressor",
        {"n_estimators": ROUNDS, "min_samples_leaf": 3},
        lambda: ensemble.RandomForestRegressor(
            n_estimators=ROUNDS, min_samples_leaf=3, max_features=None, random_state=SEED
        ),
    ),
    (
        "xgboost-classifier",
        {"n_estimators": ROUNDS, "max_depth": 4, "learning_rate": 0.2},
        lambda: xgboost.XGBClassifier(
            n_estimators=ROUNDS,
            max_depth=4,
            learning_rate=0.2,
            tree_method="hist",
            random_state=SEED,
        ),
    ),
    (
        "xgboost-regressor",
        {"n_estimators": ROUNDS, "max_depth": 3, "learning_rate": 0.1},
        lambda: xgboost.XGBRegressor(
            n_estimators=ROUNDS,
            max_depth=3,
            learning_rate=0.1,
            tree_method="hist",
            random_state=SEED,
        ),
    ),
    (
        "lightgbm-classifier",
        {"n_estimators": ROUNDS, "num_leaves": 15, "min_child_samples": 10},
        lambda: lightgbm.LGBMClassifier(
            n_estimators=ROUNDS,
            num_leaves=15,
            min_child_samples=10,
            random_state=SEED,
            verbose=-1,
        ),
    ),
    (
        "lightgbm-regressor",
        {"n_estimators": ROUNDS, "num_leaves": 7, "learning_rate": 0.05},
        lambda: lightgbm.LGBMRegressor(
            n_estimators=ROUNDS,
            num_leaves=7,
            learning_rate=0.05,
            random_state=SEED,
            verbose=-1,
        ),
    ),
]

TRAINER_CLASSES = {trainer.name: trainer for trainer in TRAINERS}


def datasets_for(task: str) -> list[Callable[..., Any]]:
    # A binary and a multi-class problem for every classifier.
    return [load_breast_cancer, load_wine] if task == "classification" else [load_diabetes]


def bundled(load: Callable[..., Any]) -> tuple[pa.Table, tuple[str, ...]]:
    data = load()
    features = tuple(f"f{index}" for index in range(data.data.shape[1]))
    columns = {name: data.data[:, index] for index, name in enumerate(features)}
    return pa.table({**columns, "target": data.target}), features


def fit(name: str, hyperparameters: dict[str, Any], table: pa.Table, tmp: Path) -> TrainedModel:
    features = tuple(column for column in table.column_names if column != "target")
    run = TrainingRun(
        table=table,
        target="target",
        features=features,
        hyperparameters=hyperparameters,
        validation_fraction=VALIDATION_FRACTION,
        seed=SEED,
        checkpoint_dir=tmp,
        checkpoint_every_steps=1_000_000,
    )
    return TRAINER_CLASSES[name]().fit(run, SilentReporter())


def test_every_trainer_of_the_extra_is_measured_here() -> None:
    assert {name for name, _, _ in CASES} == set(TRAINER_CLASSES)


@pytest.mark.parametrize(("name", "hyperparameters", "native"), CASES, ids=[c[0] for c in CASES])
def test_a_trainer_matches_its_library_and_its_graph_matches_the_library_model(
    name: str, hyperparameters: dict[str, Any], native: Native, tmp_path: Path
) -> None:
    task = TRAINER_CLASSES[name].task
    for load in datasets_for(task):
        table, features = bundled(load)
        trained = fit(name, hyperparameters, table, tmp_path)

        # The library, run directly on the same split of the same rows.
        data = load()
        inputs = data.data.astype(np.float32)  # what a request carries, and the graph reads
        split = split_rows(table.num_rows, VALIDATION_FRACTION, SEED)
        model = native().fit(inputs[split.train].astype(np.float64), data.target[split.train])
        held_out = inputs[split.validation].astype(np.float64)
        truth = data.target[split.validation]
        if task == "classification":
            expected = metrics.accuracy_score(truth, model.predict(held_out))
            assert abs(trained.metrics["accuracy"] - expected) <= POINT, (load.__name__, expected)
        else:
            expected = metrics.r2_score(truth, model.predict(held_out))
            assert abs(trained.metrics["r2"] - expected) <= POINT, (load.__name__, expected)

        # The graph, served, against the library's model on the same float32 rows.
        served = OnnxServingRuntime().load(trained.bundle, max_batch_size=64)
        served.warm_up()
        columns = {feature: inputs[:, index] for index, feature in enumerate(features)}
        answered = served.predict_batch(columns)
        rows = inputs.astype(np.float64)
        if task == "classification":
            np.testing.assert_allclose(
                answered["probabilities"], model.predict_proba(rows), rtol=1e-5, atol=1e-5
            )
            assert (answered["label"] == model.predict(rows)).all()
        else:
            np.testing.assert_allclose(answered["value"], model.predict(rows), rtol=1e-5)
