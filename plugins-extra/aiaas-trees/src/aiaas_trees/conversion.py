"""A fitted estimator as an ONNX graph: skl2onnx for scikit-learn's, onnxmltools for XGBoost's
and LightGBM's. The graph takes one float32 input, `inputs` [rows, features]; a classifier's
last output is its class probabilities (no ZipMap: a tensor, not a list of maps), a regressor's
first output its values.

The input is float32 because the tree ensembles of ONNX compare float32 thresholds: a trainer
fits on features already rounded to float32, so the graph and the library see the same numbers
and split the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiaas_trees.bundle import INPUT_NAME

TARGET_OPSET = 15
"""The default ONNX domain's opset of every graph: the highest onnxmltools' XGBoost converter
writes, and one every ONNX Runtime since 1.10 runs."""


def to_onnx(estimator: Any, library: str, feature_count: int) -> bytes:
    if library == "xgboost":
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        graph = convert_xgboost(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, feature_count]))],
            target_opset=TARGET_OPSET,
        )
    elif library == "lightgbm":
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        graph = convert_lightgbm(
            _lightgbm_on_float32_grid(estimator),
            initial_types=[(INPUT_NAME, FloatTensorType([None, feature_count]))],
            target_opset=TARGET_OPSET,
            zipmap=False,
        )
    else:
        graph = _scikit_learn(estimator, feature_count)
    encoded: bytes = graph.SerializeToString()
    return encoded


def _lightgbm_on_float32_grid(estimator: Any) -> Any:
    """The LightGBM model with every threshold rounded down to the nearest float32.

    LightGBM keeps float64 thresholds, often a hair below a value of the data (13.2699999 for
    13.27), and the converter writes them rounded to the nearest float32, which can land on
    that value and send it down the other branch. A float32 x satisfies x <= t exactly when it
    satisfies x <= the largest float32 not above t: rounded down, the thresholds decide every
    float32 input as LightGBM does. The model is rebuilt from its own text, without the tree
    byte sizes the edit invalidates (LightGBM then reads the trees in sequence)."""
    import lightgbm

    lines = []
    for line in estimator.booster_.model_to_string().split("\n"):
        if line.startswith("tree_sizes="):
            continue
        if line.startswith("threshold="):
            values = (float(value) for value in line.removeprefix("threshold=").split())
            lines.append("threshold=" + " ".join(repr(_float32_floor(v)) for v in values))
        else:
            lines.append(line)
    return lightgbm.Booster(model_str="\n".join(lines))


def _float32_floor(value: float) -> float:
    rounded = np.float32(value)
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return float(rounded)


def _scikit_learn(estimator: Any, feature_count: int) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression

    return convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, feature_count]))],
        target_opset=TARGET_OPSET,
        options={
            kind: {"zipmap": False}
            for kind in (HistGradientBoostingClassifier, LogisticRegression, RandomForestClassifier)
        },
        custom_conversion_functions=_hist_gradient_boosting_converters(
            HistGradientBoostingClassifier, HistGradientBoostingRegressor
        ),
    )


def _hist_gradient_boosting_converters(classifier: type, regressor: type) -> dict[type, Any]:
    """skl2onnx's own converters of HistGradientBoosting*, with each node's "missing values go
    left" flag written as an integer. skl2onnx passes it as a Python or NumPy boolean, which the
    protobuf runtime that current onnx releases need refuses in an integer list attribute
    ("Expected an int, got a boolean"); ONNX defines the attribute as integers."""
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )

    def wrapped(convert: Any) -> Any:
        def convert_with_integer_flags(scope: Any, operator: Any, container: Any) -> Any:
            return convert(scope, operator, _IntegerFlags(container))

        return convert_with_integer_flags

    return {
        classifier: wrapped(convert_sklearn_random_forest_classifier),
        regressor: wrapped(convert_sklearn_random_forest_regressor_converter),
    }


class _IntegerFlags:
    """A converter's container that writes boolean list attributes as integers."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *arguments: Any, **attributes: Any) -> Any:
        fixed = {
            name: [int(item) for item in value] if _has_booleans(value) else value
            for name, value in attributes.items()
        }
        return self._container.add_node(*arguments, **fixed)


def _has_booleans(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(item, bool | np.bool_) for item in value)
