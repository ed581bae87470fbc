"""Shared pieces of the trainer tests: a recording reporter, runs over small tables, and the
scikit-learn datasets the trainers are measured against.

Models stay tiny and epochs few: the whole directory runs on two CPU cores in about two
minutes, most of it XLA compiles (kept across runs by the persistent compilation cache that
tests/conftest.py switches on).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_diabetes, load_digits, load_wine

from aiaas.core.trainers import Progress, TrainingReporter, TrainingRun


class RecordingReporter(TrainingReporter):
    """Keeps everything `fit` reports; asks to stop once `stop_after_checkpoint` is saved."""

    def __init__(self, stop_after_checkpoint: int | None = None) -> None:
        self.resumed_steps: list[int] = []
        self.progress_reports: list[Progress] = []
        self.checkpoints: list[int] = []
        self.stop_after_checkpoint = stop_after_checkpoint

    def resumed(self, step: int) -> None:
        self.resumed_steps.append(step)

    def progress(self, progress: Progress) -> None:
        self.progress_reports.append(progress)

    def checkpointed(self, step: int) -> None:
        self.checkpoints.append(step)

    def should_stop(self) -> bool:
        limit = self.stop_after_checkpoint
        return limit is not None and any(step >= limit for step in self.checkpoints)


@pytest.fixture(scope="session")
def recording_reporter() -> type[RecordingReporter]:
    return RecordingReporter


MakeRun = Callable[..., TrainingRun]


@pytest.fixture(scope="session")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> MakeRun:
    """A run over `table`, every other column a feature, in a fresh checkpoint directory
    unless one is given."""

    def make(
        table: pa.Table,
        target: str,
        hyperparameters: Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        validation_fraction: float = 0.2,
        checkpoint_dir: Path | None = None,
        checkpoint_every_steps: int = 1_000_000,
    ) -> TrainingRun:
        return TrainingRun(
            table=table,
            target=target,
            features=tuple(name for name in table.column_names if name != target),
            hyperparameters=dict(hyperparameters or {}),
            validation_fraction=validation_fraction,
            seed=seed,
            checkpoint_dir=checkpoint_dir or tmp_path_factory.mktemp("checkpoints"),
            checkpoint_every_steps=checkpoint_every_steps,
        )

    return make


def table_of(features: np.ndarray, target: Any, prefix: str = "x") -> pa.Table:
    columns: dict[str, Any] = {
        f"{prefix}{index:02d}": features[:, index] for index in range(features.shape[1])
    }
    columns["target"] = target
    return pa.table(columns)


@pytest.fixture(scope="session")
def wine() -> tuple[np.ndarray, np.ndarray, pa.Table]:
    features, target = load_wine(return_X_y=True)
    return features, target, table_of(features, target)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, pa.Table]:
    features, target = load_digits(return_X_y=True)
    return features, target, table_of(features, target, prefix="pixel")


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray, pa.Table]:
    features, target = load_diabetes(return_X_y=True)
    return features, target, table_of(features, target)


INTENTS = {
    "book_flight": [
        "book a flight to {city}",
        "i need a plane ticket to {city} {when}",
        "fly me to {city}",
        "find flights from {city} to {other_city} {when}",
    ],
    "weather": [
        "what is the weather in {city} {when}",
        "will it rain in {city} {when}",
        "how cold is it in {city}",
        "forecast for {city} {when}",
    ],
    "play_music": [
        "play some {genre}",
        "put on {genre} music",
        "i want to hear {genre} {when}",
        "play a song by {artist}",
    ],
    "set_alarm": [
        "wake me up at {time}",
        "set an alarm for {time} {when}",
        "alarm at {time} please",
        "remind me at {time} to leave",
    ],
    "restaurant": [
        "book a table for {people} in {city}",
        "find a {cuisine} restaurant near me",
        "reserve dinner for {people} {when}",
        "where can i eat {cuisine} in {city}",
    ],
}
SLOTS = {
    "city": ["paris", "london", "tokyo", "berlin", "madrid", "rome", "boston", "lima"],
    "other_city": ["oslo", "cairo", "delhi", "sydney"],
    "when": ["today", "tomorrow", "tonight", "next week", "on monday", ""],
    "genre": ["jazz", "rock", "classical", "pop", "hip hop"],
    "artist": ["the beatles", "miles davis", "adele", "queen"],
    "time": ["7 am", "6:30", "noon", "midnight", "9 pm"],
    "people": ["two", "four", "6", "three"],
    "cuisine": ["italian", "thai", "mexican", "sushi", "indian"],
}


@pytest.fixture(scope="session")
def intents() -> pa.Table:
    """Utterances of five intents from templates with random slot values."""
    draw = random.Random(7)
    names = sorted(INTENTS)
    texts, labels = [], []
    for row in range(300):
        label = names[row % len(names)]
        slots = {slot: draw.choice(values) for slot, values in SLOTS.items()}
        texts.append(" ".join(draw.choice(INTENTS[label]).format(**slots).split()))
        labels.append(label)
    return pa.table({"utterance": texts, "intent": labels})
