"""The residual network of the `image-resnet` trainer: a small pre-activation ResNet over uint8
images.

The model takes the pixels as they are sent, uint8 [batch, height, width, channels], and
normalizes them itself with the training split's per-channel mean and standard deviation
(static numbers of its architecture): a runtime sends a request's pixels to the device as
bytes, a quarter of their float32 size, and training and serving cannot normalize differently.

Normalization is GroupNorm rather than BatchNorm: it keeps no running statistics, so the model
is a pure function of its parameters, which the train step, the checkpoints and the bundle
handle like every other model's; and it does not depend on the batch, so a request of one
image is predicted as it would be in a batch of a hundred.

This module imports JAX: `aiaas.formats.flax_nnx` imports it only when a bundle is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

MAX_GROUPS = 8


def _norm(features: int, rngs: nnx.Rngs, dtype: Any) -> nnx.GroupNorm:
    # Groups must divide the channels; any width a hyperparameter allows has a divisor here.
    # (Its statistics are reduced in float32 whatever `dtype` is.)
    return nnx.GroupNorm(
        features, num_groups=math.gcd(features, MAX_GROUPS), dtype=dtype, rngs=rngs
    )


def _block_conv(
    in_features: int,
    out_features: int,
    side: int,
    stride: int,
    dtype: Any,
    rngs: nnx.Rngs,
    **options: Any,
) -> nnx.Conv:
    """A residual block's side x side convolution: without bias, computing in `dtype`."""
    return nnx.Conv(
        in_features,
        out_features,
        (side, side),
        strides=stride,
        use_bias=False,
        dtype=dtype,
        rngs=rngs,
        **options,
    )


class ResidualBlock(nnx.Module):
    """Norm, ReLU, 3x3 convolution, twice, added to the block's input (a 1x1 strided convolution
    of it where the block halves the image or widens the channels).

    The second convolution starts at zero, so each block starts as the identity and a deeper
    network starts as trainable as a shallow one."""

    def __init__(
        self, in_features: int, out_features: int, stride: int, *, rngs: nnx.Rngs, dtype: Any = None
    ) -> None:
        self.norm1 = _norm(in_features, rngs, dtype)
        self.conv1 = _block_conv(in_features, out_features, 3, stride, dtype, rngs)
        self.norm2 = _norm(out_features, rngs, dtype)
        self.conv2 = _block_conv(
            out_features,
            out_features,
            3,
            1,
            dtype,
            rngs,
            kernel_init=nnx.initializers.zeros_init(),
        )
        self.shortcut = (
            _block_conv(in_features, out_features, 1, stride, dtype, rngs)
            if stride != 1 or in_features != out_features
            else None
        )

    def __call__(self, inputs: jax.Array) -> jax.Array:
        activated = jax.nn.relu(self.norm1(inputs))
        hidden = self.conv1(activated)
        hidden = self.conv2(jax.nn.relu(self.norm2(hidden)))
        # Pre-activation: the projection reads the activated input, the identity the raw one.
        shortcut = inputs if self.shortcut is None else self.shortcut(activated)
        return shortcut + hidden


class ResidualNet(nnx.Module):
    """A 3x3 stem convolution, `stages` stages of `blocks_per_stage` residual blocks (each
    stage after the first halves the image and doubles the channels), then norm, ReLU, global
    average pooling and the output layer. uint8 [batch, height, width, channels] → [batch,
    outputs]. Global pooling makes the layers independent of the image size; the size a model
    was trained at is its signature's."""

    def __init__(
        self,
        channels: int,
        base_channels: int,
        stages: int,
        blocks_per_stage: int,
        outputs: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        rngs: nnx.Rngs,
        dtype: Any = None,
    ) -> None:
        """`dtype`: what the convolutions and norms compute in (`flax_nnx_models`, mixed
        precision); the head computes in float32."""
        # Tuples of plain floats: static, part of the graph definition, not parameters.
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)
        self.stem = nnx.Conv(channels, base_channels, (3, 3), dtype=dtype, rngs=rngs)
        blocks = []
        features = base_channels
        for stage in range(stages):
            out_features = base_channels * 2**stage
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(ResidualBlock(features, out_features, stride, rngs=rngs, dtype=dtype))
                features = out_features
        self.blocks = nnx.List(blocks)
        self.norm = _norm(features, rngs, dtype)
        self.head = nnx.Linear(features, outputs, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        mean = jnp.asarray(self.mean, jnp.float32)
        std = jnp.asarray(self.std, jnp.float32)
        hidden = self.stem((inputs.astype(jnp.float32) - mean) / std)
        for block in self.blocks:
            hidden = block(hidden)
        pooled = jax.nn.relu(self.norm(hidden)).mean(axis=(1, 2))
        return self.head(pooled)
