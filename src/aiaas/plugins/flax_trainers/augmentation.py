"""Image augmentation on the device, inside the jitted train step: random horizontal flips and
random crops of the image padded with black, drawn per image from a key the step derives from
the run's seed and its step count (so a resumed run draws exactly what an uninterrupted one
would).

The staged batches stay the uint8 pixels of the dataset; augmenting them on the device costs
the host nothing and sends nothing more.

Importing this module does not import JAX (trainers name their augmentation while vetting a
request); applying an augmentation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jax


@dataclass(frozen=True)
class Augmentation:
    """Hashable: part of the compiled train step's cache key."""

    flip: bool
    """Mirror each image left to right with probability 1/2 (off for images whose orientation
    carries meaning: digits, letters, laterality marks)."""
    crop_padding: int
    """Pad by this many pixels each side, then crop back to the size at a random offset: a
    shift of up to this many pixels. At most half the image's side is used."""

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        """[batch, height, width, channels] images, augmented; the same dtype."""
        import jax
        import jax.numpy as jnp

        flip_key, crop_key = jax.random.split(key)
        if self.flip:
            mirrored = jax.random.bernoulli(flip_key, 0.5, (images.shape[0], 1, 1, 1))
            images = jnp.where(mirrored, images[:, :, ::-1], images)
        _, height, width, _ = images.shape
        padding = min(self.crop_padding, height // 2, width // 2)
        if padding == 0:
            return images
        padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        offsets = jax.random.randint(crop_key, (images.shape[0], 2), 0, 2 * padding + 1)

        def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
            return jax.lax.dynamic_slice(
                image, (offset[0], offset[1], 0), (height, width, image.shape[2])
            )

        cropped: jax.Array = jax.vmap(crop)(padded, offsets)
        return cropped
