"""The built-in Flax NNX trainers, registered through `aiaas_trainers` like any plugin's.

    tabular-classifier  an MLP over number, boolean and string columns → a class
    tabular-regressor   the same MLP → a number
    text-classifier     a hashed n-gram embedding bag over one string column → a class
    image-classifier    a small CNN over pixel columns → a class
    image-resnet        a small ResNet over encoded images (an image dataset) → a class

Each returns a `flax-nnx` bundle, a format of its own (`aiaas.formats.flax_nnx`, with the models
and the feature encoding it holds) that the `jax` runtime reads. Importing this package does not
import JAX: factories only build the trainer objects, and JAX is loaded when a trainer first fits
or a bundle is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import TrainerSpec
from aiaas.plugins.flax_trainers.fitting import FlaxTrainer
from aiaas.plugins.flax_trainers.image_resnet import ImageResNet
from aiaas.plugins.flax_trainers.trainers import (
    TRAINERS,
    ImageClassifier,
    TabularClassifier,
    TabularRegressor,
    TextClassifier,
)

__all__ = [
    "FlaxTrainer",
    "ImageClassifier",
    "ImageResNet",
    "TabularClassifier",
    "TabularRegressor",
    "TextClassifier",
    "aiaas_trainers",
]


def _factory(trainer_class: type[FlaxTrainer]) -> TrainerSpec:
    def build(config: Config) -> FlaxTrainer:
        return trainer_class()

    description = (trainer_class.__doc__ or "").strip().splitlines()[0]
    return TrainerSpec(name=trainer_class.name, factory=build, description=description)


@hookimpl
def aiaas_trainers() -> Iterable[TrainerSpec]:
    trainers: tuple[type[FlaxTrainer], ...] = (*TRAINERS, ImageResNet)
    return [_factory(trainer_class) for trainer_class in trainers]
