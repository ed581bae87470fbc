"""Held-out metrics in plain numpy, on the run's own validation split.

The names say how a figure is averaged (docs/metrics.md). With two classes, `precision`,
`recall`, `f1` and `roc_auc` are those of the positive class, the second of the sorted classes
(`True`, `1`, or the later string), recorded as `positive_label`. With more, they are the
unweighted means over the classes (one-vs-rest for ROC AUC), named `precision_macro`,
`recall_macro`, `f1_macro` and `roc_auc_macro`.

A metric that cannot be computed (no validation rows, a single class present, a constant
target) is left out rather than given a made-up value. Precision and recall of a class that was
never predicted (or never present) count as 0, as scikit-learn does by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_PROBABILITY_FLOOR = 1e-7
"""Log loss clips probabilities so one confident mistake gives a large, finite loss."""
_NOT_PER_EPOCH = frozenset({"validation_examples", "positive_label", "best_epoch", "epochs_run"})
"""Numbers that describe the split or the run rather than the model: the version keeps them, an
epoch does not repeat them."""


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, classes: Sequence[Any]
) -> dict[str, Any]:
    """`labels` are class indices; -1 marks a validation label the training split never had,
    which counts as wrong and is left out of the per-class figures."""
    count = int(labels.size)
    metrics: dict[str, Any] = {"validation_examples": count, "labels": list(classes)}
    if count == 0:
        return metrics
    class_count = len(classes)
    predicted = probabilities.argmax(axis=1)
    known = labels >= 0
    true_probability = np.where(known, probabilities[np.arange(count), np.maximum(labels, 0)], 0.0)
    metrics["loss"] = float(-np.mean(np.log(np.clip(true_probability, _PROBABILITY_FLOOR, 1.0))))
    metrics["accuracy"] = float(np.mean(predicted == labels))

    confusion = np.zeros((class_count, class_count), dtype=np.int64)
    np.add.at(confusion, (labels[known], predicted[known]), 1)
    metrics["confusion_matrix"] = confusion.tolist()

    true_positives = np.diag(confusion).astype(np.float64)
    predicted_totals = confusion.sum(axis=0).astype(np.float64)
    actual_totals = confusion.sum(axis=1).astype(np.float64)
    precision = _safe_divide(true_positives, predicted_totals)
    recall = _safe_divide(true_positives, actual_totals)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    binary = class_count == 2
    if binary:
        # The figures of the positive class, the second of the sorted classes (True, 1).
        metrics["positive_label"] = classes[1]
        averaged = {"precision": precision[1], "recall": recall[1], "f1": f1[1]}
    else:
        averaged = {
            "precision_macro": precision.mean(),
            "recall_macro": recall.mean(),
            "f1_macro": f1.mean(),
        }
    metrics.update({key: float(value) for key, value in averaged.items()})

    roc_auc = _roc_auc(probabilities[known], labels[known], class_count)
    if roc_auc is not None:
        metrics["roc_auc" if binary else "roc_auc_macro"] = roc_auc
    return metrics


def regression_metrics(
    predictions: np.ndarray, targets: np.ndarray, loss_scale: float = 1.0
) -> dict[str, Any]:
    """`loss` is the training objective, the mean squared error in units of `loss_scale` (the
    training target's standard deviation); mae and rmse are in the target's own units."""
    count = int(targets.size)
    metrics: dict[str, Any] = {"validation_examples": count}
    if count == 0:
        return metrics
    errors = predictions.astype(np.float64) - targets.astype(np.float64)
    squared = float(np.mean(errors**2))
    metrics["loss"] = squared / loss_scale**2
    metrics["mae"] = float(np.mean(np.abs(errors)))
    metrics["rmse"] = float(np.sqrt(squared))
    total = float(np.sum((targets - targets.mean()) ** 2))
    if count >= 2 and total > 0:
        metrics["r2"] = 1.0 - float(np.sum(errors**2)) / total
    return metrics


def epoch_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """What an epoch reports of an evaluation: its figures, each prefixed `val_` (`val_loss`,
    `val_f1_macro`), without the counts and lists (`validation_examples`, `labels`,
    `confusion_matrix`) that only the model version keeps."""
    return {
        f"val_{key}": float(value)
        for key, value in metrics.items()
        if key not in _NOT_PER_EPOCH
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    quotient: np.ndarray = np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0
    )
    return quotient


def _roc_auc(probabilities: np.ndarray, labels: np.ndarray, class_count: int) -> float | None:
    """Binary: of the positive class's probability. Multiclass: the unweighted mean over the
    classes of one-vs-rest, over the classes that have both positives and negatives here."""
    if class_count == 2:
        return _binary_roc_auc(probabilities[:, 1], labels == 1)
    scores = [
        _binary_roc_auc(probabilities[:, index], labels == index) for index in range(class_count)
    ]
    defined = [score for score in scores if score is not None]
    return float(np.mean(defined)) if defined else None


def _binary_roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """The Mann-Whitney statistic: the chance a random positive outscores a random negative,
    ties counting half (average ranks)."""
    positives = int(positive.sum())
    negatives = int(positive.size - positives)
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(scores)
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values; each run gets the mean of the ranks it spans.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    run_ranks = (starts + ends + 1) / 2.0  # ranks are 1-based: mean of start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks
