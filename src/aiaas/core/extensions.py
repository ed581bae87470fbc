"""Protocol of the compute plugin still to come to life: serving runtimes.

Its hook and registry exist from the start so that plugin packages can target it; the protocol
gains its full contract with the service that drives it (deployments). Until then a registered
runtime is listed and validated, never run. Trainers have theirs in `aiaas.core.training`,
validators in `aiaas.core.validation`.
"""

from __future__ import annotations

import abc


class ServingRuntime(abc.ABC):
    """Loads a registered model version and answers predictions for it."""

    @abc.abstractmethod
    def supported_model_formats(self) -> frozenset[str]:
        """The model formats (for example `flax-nnx`) this runtime can load."""
