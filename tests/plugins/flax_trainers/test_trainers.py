"""Each trainer end to end on a tiny table, and everything a trainer refuses."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aiaas.core.specs import TrainerSpec
from aiaas.core.trainers import TrainedModel, vet_hyperparameters
from aiaas.formats.flax_nnx import load_predictor
from aiaas.plugins.flax_trainers import (
    ImageClassifier,
    TabularClassifier,
    TabularRegressor,
    TextClassifier,
    aiaas_trainers,
    staging,
)
from aiaas.plugins.flax_trainers.evaluation import epoch_metrics


def _check_reports(reporter: Any, model: TrainedModel) -> None:
    assert reporter.resumed_steps == [0]
    steps = [report.step for report in reporter.progress_reports]
    assert steps == list(range(1, model.steps + 1))
    last = reporter.progress_reports[-1]
    assert last.total_steps == model.steps
    assert last.epoch >= 1
    assert np.isfinite(last.metrics["loss"])
    assert last.examples_per_s > 0
    assert last.eta_s == 0
    assert reporter.checkpoints == [model.steps]  # the final state is always checkpointed
    # Each epoch's last step also carries the epoch's mean loss and its validation metrics,
    # the best epoch's (early stopping keeps its weights) those of the model.
    per_epoch = model.steps // last.epoch
    ends = [report for report in reporter.progress_reports if "train_loss" in report.metrics]
    assert [report.step for report in ends] == list(range(per_epoch, model.steps + 1, per_epoch))
    for report in ends:
        first = report.step - per_epoch
        losses = [r.metrics["loss"] for r in reporter.progress_reports[first : report.step]]
        assert report.metrics["train_loss"] == pytest.approx(np.mean(losses))
    best = ends[model.metrics["best_epoch"] - 1]
    assert min(report.metrics["val_loss"] for report in ends) == best.metrics["val_loss"]
    validation = {key: value for key, value in best.metrics.items() if key.startswith("val_")}
    assert validation == epoch_metrics(model.metrics)
    assert validation["val_loss"] == model.metrics["loss"]
    assert model.metrics["epochs_run"] == last.epoch


def test_hook_registers_the_five_trainers_without_importing_jax() -> None:
    script = (
        "import sys\n"
        "from aiaas.plugins.flax_trainers import aiaas_trainers\n"
        "for spec in aiaas_trainers():\n"
        "    trainer = spec.factory(None)\n"
        "    trainer.hyperparameter_schema()\n"
        "    trainer.target_problem('int64')\n"
        "    trainer.feature_problems({'a': 'string'}, {})\n"
        "print('jax' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
    specs = list(aiaas_trainers())
    assert all(isinstance(spec, TrainerSpec) and spec.description for spec in specs)
    assert [spec.name for spec in specs] == [
        "tabular-classifier",
        "tabular-regressor",
        "text-classifier",
        "image-classifier",
        "image-resnet",
    ]


def test_tabular_classifier_smoke_with_mixed_columns(
    make_run: Any, recording_reporter: Any
) -> None:
    draw = np.random.default_rng(0)
    rows = 60
    amount = draw.normal(size=rows)
    city = draw.choice(["paris", "lima", "oslo"], rows).astype(object)
    city[::7] = None
    label = np.where(amount + (city == "paris") > 0.3, "yes", "no")
    table = pa.table(
        {
            "amount": pa.array([None if i % 9 == 0 else v for i, v in enumerate(amount)]),
            "count": pa.array(draw.integers(0, 5, rows)),
            "member": pa.array(draw.random(rows) > 0.5),
            "city": pa.array(city.tolist(), pa.string()),
            "label": pa.array(label.tolist()),
        }
    )
    run = make_run(table, "label", {"epochs": 1, "hidden_size": 8, "batch_size": 16})
    reporter = recording_reporter()
    model = TabularClassifier().fit(run, reporter)
    assert model.format == "flax-nnx"
    assert model.steps == 3  # 48 training rows in batches of 16
    _check_reports(reporter, model)
    assert [(spec.name, spec.dtype) for spec in model.signature.inputs] == [
        ("amount", "float32"),
        ("count", "float32"),
        ("member", "float32"),
        ("city", "str"),
    ]
    assert [spec.as_json() for spec in model.signature.outputs] == [
        {"name": "label", "dtype": "str", "shape": [-1]},
        {"name": "probabilities", "dtype": "float32", "shape": [-1, 2]},
    ]
    assert set(model.metrics) >= {"loss", "accuracy", "precision", "recall", "f1", "roc_auc"}
    assert model.metrics["labels"] == ["no", "yes"]
    assert model.metrics["validation_examples"] == 12

    predictor = load_predictor(model.bundle)
    output = predictor.predict(
        {
            "amount": np.array([0.5, None], dtype=object),
            "count": np.array([1, 2]),
            "member": np.array([True, False]),
            "city": np.array(["tokyo", None], dtype=object),  # unseen and null
        }
    )
    assert set(output["label"].tolist()) <= {"no", "yes"}
    assert output["probabilities"].shape == (2, 2)
    assert output["probabilities"].dtype == np.float32
    assert output["probabilities"].sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_tabular_regressor_smoke(make_run: Any, recording_reporter: Any) -> None:
    draw = np.random.default_rng(1)
    features = draw.normal(size=(40, 3))
    target = features @ np.array([1.0, -2.0, 0.5]) * 10 + 100
    table = pa.table({"a": features[:, 0], "b": features[:, 1], "c": features[:, 2], "y": target})
    reporter = recording_reporter()
    model = TabularRegressor().fit(
        make_run(table, "y", {"epochs": 2, "hidden_size": 8, "batch_size": 8}), reporter
    )
    assert model.steps == 8
    _check_reports(reporter, model)
    assert set(model.metrics) >= {"loss", "mae", "rmse", "r2"}
    assert {"val_mae", "val_rmse", "val_r2"} <= set(reporter.progress_reports[-1].metrics)
    assert [spec.as_json() for spec in model.signature.outputs] == [
        {"name": "value", "dtype": "float32", "shape": [-1]}
    ]
    values = load_predictor(model.bundle).predict({"a": [0.0], "b": [0.0], "c": [0.0]})["value"]
    assert values.dtype == np.float32
    assert values.shape == (1,)
    assert 50 < values[0] < 150  # de-standardized: around the target's mean


def test_text_classifier_smoke(make_run: Any, recording_reporter: Any, intents: pa.Table) -> None:
    reporter = recording_reporter()
    hyperparameters = {"epochs": 1, "buckets": 256, "embedding_dim": 8, "hidden_size": 8}
    model = TextClassifier().fit(make_run(intents, "intent", hyperparameters), reporter)
    _check_reports(reporter, model)
    assert [spec.as_json() for spec in model.signature.inputs] == [
        {"name": "utterance", "dtype": "str", "shape": [-1]}
    ]
    output = load_predictor(model.bundle).predict({"utterance": ["play some jazz", ""]})
    assert output["probabilities"].shape == (2, 5)


def test_image_classifier_smoke(make_run: Any, recording_reporter: Any) -> None:
    draw = np.random.default_rng(2)
    pixels = draw.random((32, 4 * 4 * 2))
    label = (pixels[:, 0] > 0.5).astype(np.int64)
    columns = {f"p{index:02d}": pixels[:, index] for index in range(pixels.shape[1])}
    table = pa.table({**columns, "digit": label})
    hyperparameters = {
        "epochs": 1,
        "channels": 2,
        "conv_channels": 2,
        "conv_layers": 1,
        "hidden_size": 4,
    }
    reporter = recording_reporter()
    model = ImageClassifier().fit(make_run(table, "digit", hyperparameters), reporter)
    _check_reports(reporter, model)
    assert model.signature.outputs[0].dtype == "int64"
    output = load_predictor(model.bundle).predict(columns)
    assert output["label"].dtype == np.int64
    assert output["probabilities"].shape == (32, 2)


# Refusals -------------------------------------------------------------------------------------


def test_empty_training_split_is_refused(make_run: Any, recording_reporter: Any) -> None:
    table = pa.table({"a": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    with pytest.raises(ValueError, match="training split is empty"):
        TabularClassifier().fit(
            make_run(table, "label", validation_fraction=1.0), recording_reporter()
        )
    nulls = pa.table({"a": [1.0, 2.0], "label": pa.array([None, None], pa.int64())})
    with pytest.raises(ValueError, match="training split is empty"):
        TabularClassifier().fit(make_run(nulls, "label"), recording_reporter())


def test_without_a_validation_split_epochs_report_only_the_training_loss(
    make_run: Any, recording_reporter: Any
) -> None:
    draw = np.random.default_rng(3)
    table = pa.table({"a": draw.normal(size=16), "label": draw.integers(0, 2, 16)})
    reporter = recording_reporter()
    model = TabularClassifier().fit(
        make_run(table, "label", {"epochs": 2, "hidden_size": 8}, validation_fraction=0.0),
        reporter,
    )
    assert model.metrics == {"validation_examples": 0, "labels": [0, 1]}
    ends = [report for report in reporter.progress_reports if "train_loss" in report.metrics]
    assert [report.step for report in ends] == [1, 2]  # 16 rows: one batch an epoch
    assert all(set(report.metrics) == {"loss", "train_loss"} for report in ends)


def test_single_class_is_refused(make_run: Any, recording_reporter: Any) -> None:
    table = pa.table({"a": [1.0, 2.0, 3.0, 4.0], "label": ["x", "x", "x", "x"]})
    with pytest.raises(ValueError, match="at least two classes"):
        TabularClassifier().fit(make_run(table, "label"), recording_reporter())


def test_target_types() -> None:
    classifier, regressor = TabularClassifier(), TabularRegressor()
    for type_name in ("int64", "bool", "string"):
        assert classifier.target_problem(type_name) is None
    assert "tabular-regressor" in (classifier.target_problem("double") or "")
    assert classifier.target_problem("timestamp[us]") is not None
    assert regressor.target_problem("float64") is None
    assert regressor.target_problem("int32") is None
    assert regressor.target_problem("string") is not None
    assert regressor.target_problem("bool") is not None


def test_float_target_for_a_classifier_is_refused(make_run: Any, recording_reporter: Any) -> None:
    table = pa.table({"a": [1.0, 2.0, 3.0, 4.0], "price": [1.5, 2.5, 3.5, 4.5]})
    with pytest.raises(ValueError, match="price: a classifier predicts classes"):
        TabularClassifier().fit(make_run(table, "price"), recording_reporter())


def test_feature_problems() -> None:
    tabular = TabularClassifier()
    assert tabular.feature_problems({"a": "int64", "b": "string", "c": "bool"}, {}) == {}
    assert set(tabular.feature_problems({"a": "int64", "when": "timestamp[us]"}, {})) == {"when"}

    text = TextClassifier()
    assert text.feature_problems({"utterance": "string"}, {}) == {}
    assert set(text.feature_problems({"count": "int64"}, {})) == {"count", "features"}
    assert set(text.feature_problems({"a": "string", "b": "string"}, {})) == {"a", "b"}
    assert "min_ngram" in text.feature_problems({"t": "string"}, {"min_ngram": 3, "max_ngram": 2})

    image = ImageClassifier()
    pixels = {f"p{index}": "int64" for index in range(64)}
    assert image.feature_problems(pixels, {}) == {}  # 0 height and width: a square image
    assert image.feature_problems(pixels, {"height": 4, "width": 16}) == {}
    assert "features" in image.feature_problems(pixels, {"height": 8, "width": 8, "channels": 3})
    assert "features" in image.feature_problems(dict(list(pixels.items())[:63]), {})
    assert set(
        image.feature_problems({**pixels, "name": "string"}, {"height": 5, "width": 13})
    ) == {"name"}


def test_wrong_image_columns_and_missing_text_column_are_refused(
    make_run: Any, recording_reporter: Any
) -> None:
    pixels = pa.table({**{f"p{index}": [0.0, 1.0] * 5 for index in range(10)}, "y": [0, 1] * 5})
    with pytest.raises(ValueError, match="pixel columns do not make"):
        ImageClassifier().fit(
            make_run(pixels, "y", {"height": 3, "width": 3}), recording_reporter()
        )
    numbers = pa.table({"a": [1, 2, 3, 4], "y": ["p", "q", "p", "q"]})
    with pytest.raises(ValueError, match="exactly one string column"):
        TextClassifier().fit(make_run(numbers, "y"), recording_reporter())


@pytest.mark.parametrize(
    ("trainer", "given", "wrong"),
    [
        (TabularClassifier(), {"learning_rate": "fast"}, "learning_rate"),
        (TabularClassifier(), {"learning_rate": 0}, "learning_rate"),
        (TabularClassifier(), {"epochs": 0}, "epochs"),
        (TabularClassifier(), {"batch_size": 2.5}, "batch_size"),
        (TabularClassifier(), {"hidden_layers": True}, "hidden_layers"),
        (TabularClassifier(), {"balance_classes": 1}, "balance_classes"),
        (TabularClassifier(), {"dropout": 0.95}, "dropout"),
        (TabularRegressor(), {"dropout": -0.1}, "dropout"),
        (TabularRegressor(), {"patience": -1}, "patience"),
        (TabularRegressor(), {"patience": 1001}, "patience"),
        (TabularRegressor(), {"patience": "ten"}, "patience"),
        (TabularRegressor(), {"lr_schedule": "step"}, "lr_schedule"),
        (TabularRegressor(), {"warmup_fraction": 0.6}, "warmup_fraction"),
        (TextClassifier(), {"dropout": 0.5}, "dropout"),  # no hidden layers to drop from
        (TabularRegressor(), {"balance_classes": True}, "balance_classes"),
        (TextClassifier(), {"analyzer": "bpe"}, "analyzer"),
        (TextClassifier(), {"buckets": 10**9}, "buckets"),
        (ImageClassifier(), {"channels": 5}, "channels"),
        (ImageClassifier(), {"height": -1}, "height"),
    ],
)
def test_hyperparameters_of_wrong_type_or_range_are_refused(
    trainer: Any, given: dict[str, Any], wrong: str
) -> None:
    values, problems = vet_hyperparameters(trainer.hyperparameters(), given)
    assert set(problems) == {wrong}
    assert wrong not in values


def test_fit_refuses_bad_hyperparameters(make_run: Any, recording_reporter: Any) -> None:
    table = pa.table({"a": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match="epochs: must be at least 1"):
        TabularClassifier().fit(make_run(table, "label", {"epochs": 0}), recording_reporter())


def test_defaults_are_valid_and_schema_is_json_schema() -> None:
    for trainer in (TabularClassifier(), TabularRegressor(), TextClassifier(), ImageClassifier()):
        values, problems = vet_hyperparameters(trainer.hyperparameters(), {})
        assert problems == {}
        schema = trainer.hyperparameter_schema()
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) == set(values)


def test_balanced_class_weights_find_the_rare_class(make_run: Any, recording_reporter: Any) -> None:
    draw = np.random.default_rng(3)
    features = draw.normal(size=(2000, 4))
    score = features[:, 0] + 0.5 * features[:, 1] + draw.normal(size=2000)
    fraud = score > np.quantile(score, 0.95)  # 5% positives
    table = pa.table({**{f"x{index}": features[:, index] for index in range(4)}, "fraud": fraud})
    recall = {}
    for balance in (False, True):
        hyperparameters = {"balance_classes": balance, "epochs": 5, "hidden_size": 16}
        model = TabularClassifier().fit(
            make_run(table, "fraud", hyperparameters), recording_reporter()
        )
        assert model.metrics["labels"] == [False, True]
        assert model.signature.outputs[0].dtype == "bool"
        recall[balance] = model.metrics["recall"]  # of the positive class, True
    assert recall[True] >= 0.7
    assert recall[True] > recall[False] + 0.3


def test_chunks_of_an_epoch_train_exactly_like_one_chunk(
    wine: tuple[np.ndarray, np.ndarray, pa.Table],
    make_run: Any,
    recording_reporter: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hyperparameters = {"epochs": 2, "hidden_size": 8}
    whole = TabularClassifier().fit(
        make_run(wine[2], "target", hyperparameters), recording_reporter()
    )
    # Chunks of 3 steps (a row is 13 float32 and an int32 class), so each 4-step epoch is a
    # full chunk and a padded one.
    monkeypatch.setattr(staging, "STAGED_BYTES", 3 * 32 * (13 * 4 + 4))
    assert staging.plan_schedule(142, 2, 32, 1, 13 * 4 + 4).chunk_steps == 3
    chunked = TabularClassifier().fit(
        make_run(wine[2], "target", hyperparameters), recording_reporter()
    )
    assert chunked.bundle == whole.bundle
