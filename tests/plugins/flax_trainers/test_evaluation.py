"""The numpy metrics agree with scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from aiaas.plugins.flax_trainers.evaluation import (
    classification_metrics,
    epoch_metrics,
    regression_metrics,
)


def _probabilities(rows: int, classes: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(rows, classes))
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("class_count", [2, 4])
def test_classification_metrics_match_scikit_learn(class_count: int) -> None:
    probabilities = _probabilities(200, class_count, seed=class_count)
    labels = np.random.default_rng(1).integers(0, class_count, 200)
    # Informative scores; binary ones rounded, for ties that the rank statistic must average.
    probabilities[np.arange(200), labels] += 0.3
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    if class_count == 2:
        probabilities[:, 1] = np.round(probabilities[:, 1], 2)
        probabilities[:, 0] = 1 - probabilities[:, 1]
    classes = [f"c{index}" for index in range(class_count)]
    metrics = classification_metrics(probabilities, labels, classes)
    predicted = probabilities.argmax(axis=1)
    average = "binary" if class_count == 2 else "macro"
    precision, recall, f1, _ = sk.precision_recall_fscore_support(
        labels, predicted, average=average, zero_division=0
    )
    # The name says the averaging: the positive class's figures, or the classes' mean.
    suffix = "" if class_count == 2 else "_macro"
    assert metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert metrics[f"precision{suffix}"] == pytest.approx(precision)
    assert metrics[f"recall{suffix}"] == pytest.approx(recall)
    assert metrics[f"f1{suffix}"] == pytest.approx(f1)
    other = "_macro" if class_count == 2 else ""
    assert not {f"precision{other}", f"recall{other}", f"f1{other}"} & set(metrics)
    assert metrics["confusion_matrix"] == sk.confusion_matrix(labels, predicted).tolist()
    assert metrics["labels"] == classes
    assert metrics["validation_examples"] == 200
    if class_count == 2:
        assert metrics["positive_label"] == "c1"  # the second in sorted order
    else:
        assert "positive_label" not in metrics
    expected_auc = (
        sk.roc_auc_score(labels, probabilities[:, 1])
        if class_count == 2
        else sk.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
    assert metrics[f"roc_auc{suffix}"] == pytest.approx(expected_auc)
    clipped = np.clip(probabilities[np.arange(200), labels], 1e-7, 1)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(clipped)))


def test_metrics_that_cannot_be_computed_are_left_out() -> None:
    empty = classification_metrics(np.zeros((0, 3)), np.zeros(0, np.int32), ["a", "b", "c"])
    assert empty == {"validation_examples": 0, "labels": ["a", "b", "c"]}
    one_class = classification_metrics(
        np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 0]), [False, True]
    )
    assert "roc_auc" not in one_class
    assert one_class["accuracy"] == 1.0
    assert regression_metrics(np.zeros(0), np.zeros(0)) == {"validation_examples": 0}
    assert "r2" not in regression_metrics(np.array([1.0, 2.0]), np.array([3.0, 3.0]))


def test_regression_metrics_match_scikit_learn() -> None:
    draw = np.random.default_rng(0)
    targets = draw.normal(10, 3, 100)
    predictions = targets + draw.normal(0, 1, 100)
    metrics = regression_metrics(predictions, targets, loss_scale=3.0)
    assert metrics["mae"] == pytest.approx(sk.mean_absolute_error(targets, predictions))
    assert metrics["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(targets, predictions)))
    assert metrics["r2"] == pytest.approx(sk.r2_score(targets, predictions))
    assert metrics["loss"] == pytest.approx(sk.mean_squared_error(targets, predictions) / 9)


def test_an_epoch_reports_every_figure_as_val_and_leaves_out_the_counts_and_lists() -> None:
    probabilities = _probabilities(50, 3, seed=0)
    labels = np.random.default_rng(2).integers(0, 3, 50)
    metrics = classification_metrics(probabilities, labels, ["a", "b", "c"])
    reported = epoch_metrics(metrics)
    assert set(reported) == {
        "val_loss",
        "val_accuracy",
        "val_precision_macro",
        "val_recall_macro",
        "val_f1_macro",
        "val_roc_auc_macro",
    }
    assert reported["val_f1_macro"] == metrics["f1_macro"]
    binary = classification_metrics(_probabilities(20, 2, seed=1), labels[:20] % 2, [0, 1])
    assert set(epoch_metrics(binary)) == {
        "val_loss",
        "val_accuracy",
        "val_precision",
        "val_recall",
        "val_f1",
        "val_roc_auc",
    }
    regression = regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
    assert set(epoch_metrics(regression)) == {"val_loss", "val_mae", "val_rmse", "val_r2"}
    assert epoch_metrics(regression_metrics(np.zeros(0), np.zeros(0))) == {}
