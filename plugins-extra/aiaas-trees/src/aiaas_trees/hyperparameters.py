"""The typed hyperparameters of each trainer, named as the library it wraps names them, so
that a value means what that library's documentation says (a few renamed where the library's
"none" is a sentinel: `max_depth` 0 is unlimited)."""

from __future__ import annotations

from aiaas.core.trainers import HyperParameter


def _bounded(
    name: str, kind: str, default: float, minimum: float, maximum: float, description: str
) -> HyperParameter:
    return HyperParameter(
        name=name,
        type="int" if kind == "int" else "float",
        default=default,
        description=description,
        minimum=minimum,
        maximum=maximum,
    )


def integer(
    name: str, default: int, minimum: int, maximum: int, description: str
) -> HyperParameter:
    return _bounded(name, "int", default, minimum, maximum, description)


def number(
    name: str, default: float, minimum: float, maximum: float, description: str
) -> HyperParameter:
    return _bounded(name, "float", default, minimum, maximum, description)


ROUNDS_LIMIT = 10_000
"""Boosting rounds and forest trees at most: a model of more does not fit the request path of a
serving replica anyway."""


def hist_gradient_boosting() -> list[HyperParameter]:
    return [
        integer("max_iter", 100, 1, ROUNDS_LIMIT, "boosting rounds (trees per class)"),
        number("learning_rate", 0.1, 1e-4, 10.0, "shrinkage of each tree's contribution"),
        integer("max_leaf_nodes", 31, 2, 65_536, "leaves per tree at most"),
        integer("max_depth", 0, 0, 256, "depth of a tree at most (0: unlimited)"),
        integer("min_samples_leaf", 20, 1, 1_000_000, "training rows per leaf at least"),
        number("l2_regularization", 0.0, 0.0, 1e6, "L2 penalty on leaf values"),
        integer("max_bins", 255, 2, 255, "histogram bins per feature"),
    ]


def logistic_regression() -> list[HyperParameter]:
    return [
        number("C", 1.0, 1e-6, 1e6, "inverse strength of the L2 penalty"),
        integer("max_iter", 1000, 1, 100_000, "L-BFGS iterations at most"),
    ]


def random_forest(default_max_features: str) -> list[HyperParameter]:
    return [
        integer("n_estimators", 100, 1, ROUNDS_LIMIT, "trees in the forest"),
        integer("max_depth", 0, 0, 256, "depth of a tree at most (0: unlimited)"),
        integer("min_samples_leaf", 1, 1, 1_000_000, "training rows per leaf at least"),
        HyperParameter(
            name="max_features",
            type="str",
            default=default_max_features,
            description="features considered at each split: sqrt or log2 of their count, or all",
            choices=("sqrt", "log2", "all"),
        ),
        HyperParameter(
            name="bootstrap",
            type="bool",
            default=True,
            description="each tree learns from a bootstrap sample of the training rows",
        ),
    ]


def _boosting_common(learning_rate: float) -> list[HyperParameter]:
    return [
        integer("n_estimators", 100, 1, ROUNDS_LIMIT, "boosting rounds (trees per class)"),
        number("learning_rate", learning_rate, 1e-4, 10.0, "shrinkage of each tree"),
        number("subsample", 1.0, 0.01, 1.0, "share of training rows each tree samples"),
        number("colsample_bytree", 1.0, 0.01, 1.0, "share of features each tree samples"),
        number("reg_lambda", 1.0, 0.0, 1e6, "L2 penalty on leaf weights"),
        number("reg_alpha", 0.0, 0.0, 1e6, "L1 penalty on leaf weights"),
    ]


def xgboost() -> list[HyperParameter]:
    return [
        *_boosting_common(0.3),
        integer("max_depth", 6, 1, 64, "depth of a tree at most"),
        number("min_child_weight", 1.0, 0.0, 1e6, "hessian sum per leaf at least"),
    ]


def lightgbm() -> list[HyperParameter]:
    common = _boosting_common(0.1)
    # LightGBM's own default L2 penalty is none.
    common[4] = number("reg_lambda", 0.0, 0.0, 1e6, "L2 penalty on leaf weights")
    return [
        *common,
        integer("num_leaves", 31, 2, 131_072, "leaves per tree at most"),
        integer("max_depth", 0, 0, 256, "depth of a tree at most (0: unlimited)"),
        integer("min_child_samples", 20, 1, 1_000_000, "training rows per leaf at least"),
    ]
