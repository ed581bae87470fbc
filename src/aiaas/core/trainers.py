"""The trainer protocol: what a trainer plugin implements, and what the platform hands it.

A trainer is a family of models (`tabular-classifier`, ...). The platform vets a submission
against the trainer's typed hyperparameters and its idea of a usable target, then, in a worker
thread, calls `Trainer.fit` with the dataset version's table. `fit` reports progress through a
`TrainingReporter`, writes checkpoints into the directory it is given, sealed with the sealer it
is given, resumes from the latest complete one when there is one, and returns a `TrainedModel`:
a self-contained bundle of weights and preprocessing (msgpack, never pickle), its input/output
signature and its evaluation metrics on the held-out split.

Nothing here imports JAX: the API process vets submissions without loading a compute stack.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pyarrow as pa

from aiaas.core.signatures import ModelSignature

Task = Literal["classification", "regression"]
ParameterType = Literal["int", "float", "bool", "str"]
Direction = Literal["minimize", "maximize"]

TASK_OBJECTIVES: Mapping[Task, Mapping[str, Direction]] = {
    "classification": {
        "loss": "minimize",
        "accuracy": "maximize",
        "f1": "maximize",
        "f1_macro": "maximize",
        "precision": "maximize",
        "precision_macro": "maximize",
        "recall": "maximize",
        "recall_macro": "maximize",
        "roc_auc": "maximize",
        "roc_auc_macro": "maximize",
    },
    "regression": {"loss": "minimize", "mae": "minimize", "rmse": "minimize", "r2": "maximize"},
}
"""The evaluation figures of the built-in trainers by task (docs/metrics.md), each with the
direction that makes it better. A binary classifier reports `f1`, a multi-class one `f1_macro`."""


@dataclass(frozen=True, kw_only=True)
class HyperParameter:
    """One typed hyperparameter. `minimum`/`maximum` bound numbers (inclusive); `choices`
    restricts strings."""

    name: str
    type: ParameterType
    default: Any
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None."""
        if self.type == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.type == "str":
            if not isinstance(value, str):
                return "must be a string"
            if self.choices and value not in self.choices:
                return f"must be one of {', '.join(self.choices)}"
            return None
        return self._number_problem(value)

    def _number_problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {'an integer' if self.type == 'int' else 'a number'}"
        if not math.isfinite(value):
            return "must be finite"
        if self.type == "int" and not float(value).is_integer():
            return "must be an integer"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}"
        return None

    def coerce(self, value: Any) -> Any:
        if self.type == "int":
            return int(value)
        if self.type == "float":
            return float(value)
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}[
                self.type
            ],
            "default": self.default,
        }
        if self.description:
            schema["description"] = self.description
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.choices:
            schema["enum"] = list(self.choices)
        return schema


def vet_hyperparameters(
    parameters: Sequence[HyperParameter], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The full set of values (defaults filled in, types coerced) and the problems, by name."""
    known = {parameter.name: parameter for parameter in parameters}
    problems = {
        name: f"unknown hyperparameter; known: {', '.join(sorted(known))}"
        for name in given
        if name not in known
    }
    values: dict[str, Any] = {}
    for name, parameter in known.items():
        value = given.get(name, parameter.default)
        problem = parameter.problem(value)
        if problem is not None:
            problems[name] = problem
        else:
            values[name] = parameter.coerce(value)
    return values, problems


CHECKPOINT_FILE = "checkpoint.sealed"
"""The checkpoint of step N is the one sealed file `<checkpoint_dir>/<N>/checkpoint.sealed`,
complete once `checkpointed(N)` is reported. The platform copies it from there to the artifact
store, and puts a stored one back there for a job resumed on a worker whose directory holds
none (`aiaas.core.training.checkpoint_uploads`)."""
CHECKPOINT_PARTIAL_SUFFIX = ".partial"
"""A checkpoint being written, by the trainer or by the platform fetching a stored one, goes
under `<N>.partial/` and is renamed to `<N>/` once complete; a directory left with this suffix
is a crash's remains, never a checkpoint."""


@dataclass(frozen=True, kw_only=True)
class TrainingRun:
    """Everything `fit` needs. The table holds only the feature columns and the target."""

    table: pa.Table
    target: str
    features: tuple[str, ...]
    hyperparameters: Mapping[str, Any]
    validation_fraction: float
    seed: int
    checkpoint_dir: Path
    """Owned by this job, local to the worker. `fit` writes checkpoints there, each of step N as
    `<N>/CHECKPOINT_FILE`, and resumes from the latest complete one it finds."""
    checkpoint_every_steps: int
    checkpoint_sealer: CheckpointSealer | None = None
    """Seals every checkpoint before it reaches the disk. A job's run gets one keyed with its
    project's data key. Without one (a run outside a job) the trainer seals with a key that
    lives only in its own process: nothing readable is written, and only that process resumes."""
    epoch_verdicts: bool = False
    """Someone judges each epoch's figures as they come (a sweep's pruner): report an epoch's
    figures before the next step runs, waiting for the device once an epoch, instead of
    reading them late in blocks. A pruned trial then stops at the epoch it was pruned at."""


class CheckpointSealer(Protocol):
    """Checkpoint bytes, sealed and opened again. `unseal` raises on anything it did not seal
    (another key, a changed or cut-off byte)."""

    def seal(self, plaintext: bytes) -> bytes: ...

    def unseal(self, sealed: bytes) -> bytes: ...


@dataclass(frozen=True, kw_only=True)
class Progress:
    step: int
    total_steps: int
    epoch: int
    metrics: Mapping[str, float]
    """This step's training `loss`; at the last step of an epoch also the epoch's metrics:
    `train_loss` (the mean of its step losses) and, evaluated on the validation split,
    `val_loss` and `val_<metric>` for each figure of the final evaluation (`val_accuracy`,
    `val_f1_macro`, `val_rmse`, ...). docs/metrics.md names them."""
    examples_per_s: float
    eta_s: float


class TrainingReporter(abc.ABC):
    """How `fit` talks to the platform. Called from the training thread."""

    @abc.abstractmethod
    def resumed(self, step: int) -> None:
        """`fit` restored a checkpoint of `step` (0 when it starts afresh); progress after that
        step will be reported again."""

    @abc.abstractmethod
    def progress(self, progress: Progress) -> None:
        """One step's progress. Must be cheap: it runs on the training thread."""

    def checkpointing(self, step: int) -> None:
        """A checkpoint of `step` is about to be written: what was reported up to it must be
        durable first, since a run resumed from the checkpoint reports only what came after.
        Nothing to do by default."""
        del step  # a reporter that keeps nothing has nothing to make durable

    @abc.abstractmethod
    def checkpointed(self, step: int) -> None:
        """A checkpoint of `step` is complete."""

    @abc.abstractmethod
    def should_stop(self) -> bool:
        """True once the job is cancelled; `fit` then raises `TrainingCancelled` where it next
        checks. A trainer checks as often as it can stop cleanly: the built-in ones between
        segments of at most `LOSS_BLOCK` steps (`flax_trainers.segments`)."""


class SilentReporter(TrainingReporter):
    """Hears nothing and never stops: for running a trainer outside a job (a script, a
    notebook, a benchmark)."""

    def resumed(self, step: int) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def checkpointed(self, step: int) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class TrainedModel:
    format: str
    """What a serving runtime must understand to load `bundle`, e.g. `flax-nnx`."""
    bundle: bytes
    """Weights and everything needed to predict (preprocessing, labels), self-contained."""
    signature: ModelSignature
    metrics: Mapping[str, Any]
    """Evaluation on the held-out split: numbers, and lists for a confusion matrix. Names say
    how a figure is averaged (`f1` of a binary classifier's positive class, `f1_macro` over
    more classes; docs/metrics.md)."""
    steps: int


class Trainer(abc.ABC):
    """Trains one family of models (for example a Flax NNX tabular classifier)."""

    task: Task

    @abc.abstractmethod
    def hyperparameters(self) -> Sequence[HyperParameter]:
        """The typed hyperparameters, with their defaults and ranges."""

    def hyperparameter_schema(self) -> Mapping[str, Any]:
        """JSON Schema of the hyperparameters."""
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {p.name: p.json_schema() for p in self.hyperparameters()},
        }

    def objective_metrics(self) -> Mapping[str, Direction]:
        """The figures of the evaluation a sweep may optimize, each with the direction that
        improves it. Each must be in the model version's metrics, and reported at the end of
        every epoch as `val_<name>` (that is what pruning judges). By default those of the
        trainer's task, as the built-in trainers report them."""
        return TASK_OBJECTIVES[self.task]

    @abc.abstractmethod
    def target_problem(self, column_type: str) -> str | None:
        """Why a target column of this type (`int64`, `float64`, `string`, `bool`...) cannot be
        trained on, or None."""

    @abc.abstractmethod
    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        """Problems with the feature columns (name → type), by column; empty when usable."""

    @abc.abstractmethod
    def fit(self, run: TrainingRun, reporter: TrainingReporter) -> TrainedModel:
        """Train, evaluate on the held-out split, and return the model. Runs in a worker thread,
        never on the event loop. Raises `TrainingCancelled`, `TrainingDiverged`, or `ValueError`
        with a message for the user (an empty training split, say)."""


@dataclass(frozen=True)
class SplitSizes:
    train: int
    validation: int = field(default=0)


def split_sizes(row_count: int, validation_fraction: float) -> SplitSizes:
    """Rows in each split. Every trainer splits the same way, so the API can refuse an empty
    training split before a job exists."""
    validation = round(row_count * validation_fraction)
    if validation_fraction > 0 and row_count >= 2:
        validation = max(1, validation)
    return SplitSizes(train=row_count - validation, validation=validation)
