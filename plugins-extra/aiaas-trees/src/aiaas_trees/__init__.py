"""aiaas-trees: gradient-boosted trees and scikit-learn trainers, and the runtime that serves
them as ONNX, as an aiaas plugin registered through the `aiaas` entry point group (`trees`).

    trainers   hist-gradient-boosting-classifier / -regressor, logistic-regression,
               random-forest-classifier / -regressor, xgboost-classifier / -regressor,
               lightgbm-classifier / -regressor
    runtime    onnx: loads the `onnx` bundles they write, with ONNX Runtime

Importing this package imports no estimator library and no ONNX package: a process that only
lists trainers and vets submissions (the API) never loads them.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ServingRuntimeSpec, TrainerSpec
from aiaas_trees.fitting import TreeTrainer
from aiaas_trees.serving import OnnxServingRuntime
from aiaas_trees.trainers import TRAINERS

__all__ = ["OnnxServingRuntime", "TreeTrainer", "aiaas_serving_runtimes", "aiaas_trainers"]

RUNTIME = "onnx"


def _spec(trainer_class: type[TreeTrainer]) -> TrainerSpec:
    def build(config: Config) -> TreeTrainer:
        return trainer_class()

    description = (trainer_class.__doc__ or "").strip().splitlines()[0]
    return TrainerSpec(name=trainer_class.name, factory=build, description=description)


@hookimpl
def aiaas_trainers() -> Iterable[TrainerSpec]:
    return [_spec(trainer_class) for trainer_class in TRAINERS]


@hookimpl
def aiaas_serving_runtimes() -> Iterable[ServingRuntimeSpec]:
    return [
        ServingRuntimeSpec(
            name=RUNTIME,
            factory=OnnxServingRuntime,
            description="Serves onnx models (trees, linear models) with ONNX Runtime on the CPU.",
        )
    ]
