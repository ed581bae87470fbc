"""Protocols of the compute plugins still to come to life: trainers and serving runtimes.

Their hooks and registries exist from the start so that plugin packages can target them; each
protocol gains its full contract with the service that drives it (training jobs, deployments).
Until then a registered backend is listed and validated, never run. Validators have theirs in
`aiaas.core.validation`.
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
