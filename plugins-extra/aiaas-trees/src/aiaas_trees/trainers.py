"""The trainers: which library each wraps, its hyperparameters, and its native estimator.

    hist-gradient-boosting-classifier / -regressor   scikit-learn's HistGradientBoosting*
    logistic-regression                              scikit-learn: standardized, then logistic
    random-forest-classifier / -regressor            scikit-learn's RandomForest*
    xgboost-classifier / -regressor                  XGBoost's XGB* (histogram trees)
    lightgbm-classifier / -regressor                 LightGBM's LGBM*

Each `estimator` is the library's own class with the vetted hyperparameters passed through as
the library names them, so a model is what the library gives for those values on that split.
A family's classifier and regressor differ only in their task, which picks the library's class.
Libraries are imported only when an estimator is built: listing and vetting trainers in the API
process loads none of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiaas.core.trainers import HyperParameter, Task
from aiaas_trees import hyperparameters as parameters
from aiaas_trees.fitting import TreeTrainer


class _HistGradientBoosting(TreeTrainer):
    library = "scikit-learn"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return parameters.hist_gradient_boosting()

    def estimator(self, values: Mapping[str, Any], seed: int) -> Any:
        from sklearn import ensemble

        native = (
            ensemble.HistGradientBoostingClassifier
            if self.task == "classification"
            else ensemble.HistGradientBoostingRegressor
        )
        # No early stopping of the library's own: it would hold out rows of the training split;
        # the run's validation split is the one every figure is measured on.
        return native(
            **{**values, "max_depth": values["max_depth"] or None},
            early_stopping=False,
            random_state=seed,
        )


class HistGradientBoostingClassifier(_HistGradientBoosting):
    """scikit-learn's histogram gradient boosting, predicting a class."""

    name = "hist-gradient-boosting-classifier"
    task: Task = "classification"


class HistGradientBoostingRegressor(_HistGradientBoosting):
    """scikit-learn's histogram gradient boosting, predicting a number."""

    name = "hist-gradient-boosting-regressor"
    task: Task = "regression"


class LogisticRegression(TreeTrainer):
    """scikit-learn's logistic regression over standardized features, predicting a class."""

    name = "logistic-regression"
    task: Task = "classification"
    library = "scikit-learn"
    reads_missing_values = False

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return parameters.logistic_regression()

    def estimator(self, values: Mapping[str, Any], seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression as Native
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # Standardized first: L-BFGS on raw units (a breast's area in the thousands next to a
        # smoothness below one) converges slowly or not at all.
        return make_pipeline(StandardScaler(), Native(**values, random_state=seed))


class _RandomForest(TreeTrainer):
    library = "scikit-learn"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        # scikit-learn's own defaults: a classifier's trees each see the square root of the
        # features at a split, a regressor's all of them.
        return parameters.random_forest("sqrt" if self.task == "classification" else "all")

    def estimator(self, values: Mapping[str, Any], seed: int) -> Any:
        from sklearn import ensemble

        native = (
            ensemble.RandomForestClassifier
            if self.task == "classification"
            else ensemble.RandomForestRegressor
        )
        features = values["max_features"]
        return native(
            **{
                **values,
                "max_depth": values["max_depth"] or None,
                "max_features": None if features == "all" else features,
            },
            random_state=seed,
        )


class RandomForestClassifier(_RandomForest):
    """scikit-learn's random forest, predicting a class."""

    name = "random-forest-classifier"
    task: Task = "classification"


class RandomForestRegressor(_RandomForest):
    """scikit-learn's random forest, predicting a number."""

    name = "random-forest-regressor"
    task: Task = "regression"


class _XGBoost(TreeTrainer):
    library = "xgboost"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return parameters.xgboost()

    def estimator(self, values: Mapping[str, Any], seed: int) -> Any:
        import xgboost

        native = xgboost.XGBClassifier if self.task == "classification" else xgboost.XGBRegressor
        return native(**values, tree_method="hist", random_state=seed)


class XGBoostClassifier(_XGBoost):
    """XGBoost's gradient-boosted trees, predicting a class."""

    name = "xgboost-classifier"
    task: Task = "classification"


class XGBoostRegressor(_XGBoost):
    """XGBoost's gradient-boosted trees, predicting a number."""

    name = "xgboost-regressor"
    task: Task = "regression"


class _LightGBM(TreeTrainer):
    library = "lightgbm"

    def hyperparameters(self) -> Sequence[HyperParameter]:
        return parameters.lightgbm()

    def estimator(self, values: Mapping[str, Any], seed: int) -> Any:
        import lightgbm

        native = (
            lightgbm.LGBMClassifier if self.task == "classification" else lightgbm.LGBMRegressor
        )
        # LightGBM samples rows only every `subsample_freq` rounds, and never with its default
        # of 0: a subsample below 1 means every round.
        every = 1 if values["subsample"] < 1 else 0
        return native(
            **{**values, "max_depth": values["max_depth"] or -1, "subsample_freq": every},
            random_state=seed,
            verbose=-1,
        )


class LightGBMClassifier(_LightGBM):
    """LightGBM's gradient-boosted trees, predicting a class."""

    name = "lightgbm-classifier"
    task: Task = "classification"


class LightGBMRegressor(_LightGBM):
    """LightGBM's gradient-boosted trees, predicting a number."""

    name = "lightgbm-regressor"
    task: Task = "regression"


TRAINERS: tuple[type[TreeTrainer], ...] = (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    LogisticRegression,
    RandomForestClassifier,
    RandomForestRegressor,
    XGBoostClassifier,
    XGBoostRegressor,
    LightGBMClassifier,
    LightGBMRegressor,
)
