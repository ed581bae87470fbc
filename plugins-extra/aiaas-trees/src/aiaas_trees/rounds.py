"""A fitted model's outputs after each boosting round (each tree of a forest), for the metric
history: the figures a run reports per round are those of the model cut at that round.

Each library is asked the way it offers: scikit-learn's gradient boosting stages its own
predictions, a forest's partial mean is summed tree by tree, XGBoost predicts with an
`iteration_range` and LightGBM with `num_iteration`. A logistic regression has one round.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

MAX_REPORTED_ROUNDS = 200
"""Rounds of a history at most, spread evenly and always ending with the last: each reported
round of XGBoost or LightGBM costs a prediction over both splits with that many trees."""


def round_count(estimator: Any, library: str) -> int:
    if library == "xgboost":
        return int(estimator.get_booster().num_boosted_rounds())
    if library == "lightgbm":
        return int(estimator.booster_.current_iteration())
    if hasattr(estimator, "n_iter_") and hasattr(estimator, "staged_predict"):
        return int(estimator.n_iter_)
    if hasattr(estimator, "estimators_"):
        return len(estimator.estimators_)
    return 1


def reported_rounds(total: int) -> list[int]:
    if total <= MAX_REPORTED_ROUNDS:
        return list(range(1, total + 1))
    spread = np.linspace(1, total, MAX_REPORTED_ROUNDS).round().astype(int)
    return sorted({int(round_) for round_ in spread})


def staged_outputs(
    estimator: Any, library: str, classifier: bool, features: np.ndarray, rounds: Sequence[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """(round, outputs) for each of `rounds`, ascending: class probabilities [rows, classes]
    of a classifier, values [rows] of a regressor."""
    if features.shape[0] == 0:
        width = len(estimator.classes_) if classifier else 0
        empty = np.zeros((0, width) if classifier else (0,))
        yield from ((round_, empty) for round_ in rounds)
        return
    if library == "xgboost":
        for round_ in rounds:
            yield round_, _predicted(estimator, classifier, features, iteration_range=(0, round_))
    elif library == "lightgbm":
        for round_ in rounds:
            yield round_, _predicted(estimator, classifier, features, num_iteration=round_)
    elif hasattr(estimator, "n_iter_") and hasattr(estimator, "staged_predict"):
        stages = estimator.staged_predict_proba if classifier else estimator.staged_predict
        wanted = set(rounds)
        for round_, outputs in enumerate(stages(features), start=1):
            if round_ in wanted:
                yield round_, np.asarray(outputs)
    elif hasattr(estimator, "estimators_"):
        yield from _forest_means(estimator, classifier, features, rounds)
    else:
        yield rounds[-1], _predicted(estimator, classifier, features)


def _predicted(estimator: Any, classifier: bool, features: np.ndarray, **options: Any) -> Any:
    if classifier:
        return np.asarray(estimator.predict_proba(features, **options))
    return np.asarray(estimator.predict(features, **options))


def _forest_means(
    forest: Any, classifier: bool, features: np.ndarray, rounds: Sequence[int]
) -> Iterator[tuple[int, np.ndarray]]:
    # A forest predicts the mean of its trees: the mean of the first N is the forest of N.
    inputs = features.astype(np.float32)
    wanted = set(rounds)
    total: np.ndarray | None = None
    for count, tree in enumerate(forest.estimators_, start=1):
        outputs = tree.predict_proba(inputs) if classifier else tree.predict(inputs)
        total = outputs.astype(np.float64) if total is None else total + outputs
        if count in wanted:
            yield count, total / count
