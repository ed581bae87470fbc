"""Protocols of the compute plugins: trainers, serving runtimes and validators.

Their hooks and registries exist from the start so that plugin packages can target them; each
protocol gains its full contract with the service that drives it (training jobs, deployments,
dataset quality checks). Until then a registered backend is listed and validated, never run.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any


class Trainer(abc.ABC):
    """Trains one family of models (for example a Flax NNX tabular classifier)."""

    @abc.abstractmethod
    def hyperparameter_schema(self) -> Mapping[str, Any]:
        """JSON Schema of the hyperparameters: their types, defaults and ranges."""


class ServingRuntime(abc.ABC):
    """Loads a registered model version and answers predictions for it."""

    @abc.abstractmethod
    def supported_model_formats(self) -> frozenset[str]:
        """The model formats (for example `flax-nnx`) this runtime can load."""


class Validator(abc.ABC):
    """Checks a dataset version or a model version against declared expectations or gates."""

    @abc.abstractmethod
    def subjects(self) -> frozenset[str]:
        """What it validates: `dataset-version`, `model-version`, or both."""
