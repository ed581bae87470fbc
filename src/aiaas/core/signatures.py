"""A model's signature: the named, typed and shaped tensors it takes and returns.

Trainers produce one with every model (`aiaas.core.trainers.TrainedModel`), the registry stores
it as JSON beside the model version, and serving reads it back to check requests
(`aiaas.core.model_inputs`), to describe a deployment to V2 clients, and to warm a model up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STRING_DTYPES = frozenset({"str", "string", "object"})
"""Signature dtypes that mean text. Strings travel as numpy object arrays of `str`."""


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    name: str
    dtype: str
    """numpy dtype name: `float32`, `int32`, `str`..."""
    shape: tuple[int, ...]
    """-1 for the batch dimension and any other free one."""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> TensorSpec:
        return cls(name=spec["name"], dtype=spec["dtype"], shape=tuple(spec["shape"]))


@dataclass(frozen=True, kw_only=True)
class ModelSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "inputs": [spec.as_json() for spec in self.inputs],
            "outputs": [spec.as_json() for spec in self.outputs],
        }

    @classmethod
    def from_json(cls, encoded: Mapping[str, Any]) -> ModelSignature:
        """The signature `as_json` wrote (a model version's stored `signature`)."""
        return cls(
            inputs=tuple(TensorSpec.from_json(spec) for spec in encoded["inputs"]),
            outputs=tuple(TensorSpec.from_json(spec) for spec in encoded["outputs"]),
        )
