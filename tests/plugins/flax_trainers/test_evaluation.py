"""The numpy metrics agree with scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from aiaas.plugins.flax_trainers.evaluation import classification_metrics, regression_metrics


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
    assert metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert metrics["precision"] == pytest.approx(precision)
    assert metrics["recall"] == pytest.approx(recall)
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["confusion_matrix"] == sk.confusion_matrix(labels, predicted).tolist()
    assert metrics["labels"] == classes
    assert metrics["validation_examples"] == 200
    expected_auc = (
        sk.roc_auc_score(labels, probabilities[:, 1])
        if class_count == 2
        else sk.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
    assert metrics["roc_auc"] == pytest.approx(expected_auc)
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
