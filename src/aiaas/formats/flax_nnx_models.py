"""The Flax NNX models a flax-nnx bundle can hold: its `architecture`, built.

Each model is built from an `architecture` mapping of plain values (stored in the bundle), so
that training builds it afresh (`aiaas.plugins.flax_trainers`) and a serving runtime rebuilds
the same module graph and pours the saved parameters into it. Every model takes one array,
`inputs`, and returns unnormalized outputs: logits for a classifier, a standardized value for a
regressor.

Mixed precision: a training run at `precision` bfloat16 builds its model from the architecture
with `"compute_dtype": "bfloat16"` added (the bundle's architecture never has it, so a served
model computes in float32). Each layer then keeps its parameters in float32 (`param_dtype`, the
master weights the optimizer updates) and casts them and its input to bfloat16 for its matmul or
convolution (`dtype`). The output layer is left to promote, so it computes in float32 and the
outputs, the loss and the metrics are float32 whatever the precision.

This module imports JAX: `aiaas.formats.flax_nnx` imports it only when a bundle is loaded.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from aiaas.formats.flax_nnx_resnet import ResidualNet

COMPUTE_DTYPES: dict[str, Any] = {"float32": None, "bfloat16": jnp.bfloat16}
"""An architecture's `compute_dtype` → the `dtype` its hidden layers compute in (None: that of
their float32 parameters)."""


class MultilayerPerceptron(nnx.Module):
    """Dense ReLU layers over encoded tabular features, [batch, features] → [batch, outputs].

    `dropout` zeroes that fraction of each hidden layer's units (scaling the rest up) only when
    the call is given a `dropout_key`, as the train step does: evaluation and serving call the
    model without one, so they are deterministic and read every unit."""

    def __init__(
        self,
        inputs: int,
        hidden_size: int,
        hidden_layers: int,
        outputs: int,
        *,
        rngs: nnx.Rngs,
        dropout: float = 0.0,
        dtype: Any = None,
    ) -> None:
        sizes = [inputs] + [hidden_size] * hidden_layers
        self.hidden = nnx.List(
            [nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.head = nnx.Linear(sizes[-1], outputs, rngs=rngs)
        # A plain float: static, part of the graph definition, not a parameter to save.
        self.dropout = float(dropout)

    def __call__(self, inputs: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        hidden = inputs
        for index, layer in enumerate(self.hidden):
            hidden = jax.nn.relu(layer(hidden))
            if dropout_key is not None and self.dropout > 0:
                kept = jax.random.bernoulli(
                    jax.random.fold_in(dropout_key, index), 1.0 - self.dropout, hidden.shape
                )
                hidden = jnp.where(kept, hidden / (1.0 - self.dropout), 0.0)
        return self.head(hidden)


class HashedEmbeddingBag(nnx.Module):
    """fastText-style text model: the mean embedding of a text's hashed n-grams, then a ReLU
    layer and the output layer. [batch, length] int32 bucket ids (0 = padding) → [batch,
    outputs]."""

    def __init__(
        self,
        buckets: int,
        embedding_dim: int,
        hidden_size: int,
        outputs: int,
        *,
        rngs: nnx.Rngs,
        dtype: Any = None,
    ) -> None:
        # Small initial embeddings (fastText draws them from ±1/dim), not Embed's unit scale:
        # the mean of a text's random unit-scale vectors would start it far from the origin in
        # a random direction, and the first steps would be spent undoing that.
        self.embedding = nnx.Embed(
            buckets + 1,
            embedding_dim,
            embedding_init=nnx.initializers.normal(stddev=1.0 / embedding_dim),
            dtype=dtype,
            rngs=rngs,
        )
        self.hidden = nnx.Linear(embedding_dim, hidden_size, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(hidden_size, outputs, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        present = (inputs > 0)[..., None]
        # Summed in float32 whatever the compute dtype: in bfloat16 (8 bits of mantissa) a sum
        # of hundreds of n-gram vectors would round away the small ones.
        summed = jnp.sum(jnp.where(present, self.embedding(inputs), 0), axis=1, dtype=jnp.float32)
        mean = summed / jnp.maximum(jnp.sum(present, axis=1, dtype=jnp.float32), 1.0)
        return self.head(jax.nn.relu(self.hidden(mean)))


class SmallConvNet(nnx.Module):
    """Blocks of 3x3 convolution, ReLU and 2x2 max pooling (while the image is at least 2 pixels
    high and wide), then a dense ReLU layer and the output layer. [batch, height, width,
    channels] → [batch, outputs]."""

    def __init__(
        self,
        height: int,
        width: int,
        channels: int,
        conv_channels: int,
        conv_layers: int,
        hidden_size: int,
        outputs: int,
        *,
        rngs: nnx.Rngs,
        dtype: Any = None,
    ) -> None:
        convolutions = []
        self.pool_after: tuple[bool, ...] = ()
        features = channels
        for layer in range(conv_layers):
            # Twice the channels per block, as the pooled image shrinks.
            out_features = conv_channels * 2**layer
            convolutions.append(nnx.Conv(features, out_features, (3, 3), dtype=dtype, rngs=rngs))
            features = out_features
            pool = height >= 2 and width >= 2
            self.pool_after += (pool,)
            if pool:
                height, width = height // 2, width // 2
        self.convolutions = nnx.List(convolutions)
        self.hidden = nnx.Linear(height * width * features, hidden_size, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(hidden_size, outputs, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        hidden = inputs
        for convolution, pool in zip(self.convolutions, self.pool_after, strict=True):
            hidden = jax.nn.relu(convolution(hidden))
            if pool:
                hidden = max_pool_2x2(hidden)
        hidden = hidden.reshape(hidden.shape[0], -1)
        return self.head(jax.nn.relu(self.hidden(hidden)))


def max_pool_2x2(images: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2; an odd last row or column is dropped, as VALID
    padding does."""
    batch, height, width, channels = images.shape
    cropped = images[:, : height // 2 * 2, : width // 2 * 2]
    blocks = cropped.reshape(batch, height // 2, 2, width // 2, 2, channels)
    return blocks.max(axis=(2, 4))


def build_model(architecture: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    kind = architecture["kind"]
    compute_dtype = architecture.get("compute_dtype", "float32")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute_dtype {compute_dtype!r}")
    dtype = COMPUTE_DTYPES[compute_dtype]
    if kind == "mlp":
        return MultilayerPerceptron(
            architecture["inputs"],
            architecture["hidden_size"],
            architecture["hidden_layers"],
            architecture["outputs"],
            rngs=rngs,
            # Bundles saved before dropout existed have no such key.
            dropout=architecture.get("dropout", 0.0),
            dtype=dtype,
        )
    if kind == "embedding_bag":
        return HashedEmbeddingBag(
            architecture["buckets"],
            architecture["embedding_dim"],
            architecture["hidden_size"],
            architecture["outputs"],
            rngs=rngs,
            dtype=dtype,
        )
    if kind == "cnn":
        return SmallConvNet(
            architecture["height"],
            architecture["width"],
            architecture["channels"],
            architecture["conv_channels"],
            architecture["conv_layers"],
            architecture["hidden_size"],
            architecture["outputs"],
            rngs=rngs,
            dtype=dtype,
        )
    if kind == "resnet":
        return ResidualNet(
            architecture["channels"],
            architecture["base_channels"],
            architecture["stages"],
            architecture["blocks_per_stage"],
            architecture["outputs"],
            mean=architecture["mean"],
            std=architecture["std"],
            rngs=rngs,
            dtype=dtype,
        )
    raise ValueError(f"unknown architecture {kind!r}")
