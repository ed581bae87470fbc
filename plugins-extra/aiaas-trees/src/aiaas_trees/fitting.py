"""What every trainer of this package shares: vetting, the split, the fit, the history per
round, the evaluation, and the `onnx` bundle.

The split, the class encoding and the evaluation are the built-in trainers' own
(`aiaas.plugins.flax_trainers`): a tree and a network trained on one dataset version with one
seed learn from the same rows and are measured on the same rows, by the same code.

A fit is one call into the library, so there is no checkpoint to resume from: a job handed to
another worker fits again from the start (it reports `resumed(0)`), and a cancellation is
heard before the fit and between the rounds of the history.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.errors import TrainingCancelled
from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.core.trainers import (
    Progress,
    Task,
    TrainedModel,
    Trainer,
    TrainingReporter,
    TrainingRun,
    vet_hyperparameters,
)
from aiaas.plugins.flax_trainers import input_pipeline as pipeline
from aiaas.plugins.flax_trainers.evaluation import (
    classification_metrics,
    epoch_metrics,
    regression_metrics,
)
from aiaas_trees import rounds
from aiaas_trees.bundle import FORMAT, Manifest, encode_bundle

FEATURE_KINDS = frozenset({"integer", "float", "boolean"})


def joined(problems: Mapping[str, str]) -> str:
    return "; ".join(f"{name}: {problem}" for name, problem in sorted(problems.items()))


@dataclass(frozen=True)
class _Split:
    train: np.ndarray
    validation: np.ndarray
    train_targets: np.ndarray
    validation_targets: np.ndarray
    classes: list[Any]
    scale: float
    """A regressor's training target's standard deviation: the unit of its `loss`."""


class TreeTrainer(Trainer):
    """A trainer around one estimator of one library. Subclasses name the library, declare the
    hyperparameters, and build the library's estimator from their values."""

    name: ClassVar[str]
    task: Task
    library: ClassVar[str]
    """`scikit-learn`, `xgboost` or `lightgbm`: how its rounds and its graph are had."""
    reads_missing_values: ClassVar[bool] = True
    """Trees route a missing value down a branch they learned; a linear model cannot."""

    @abc.abstractmethod
    def estimator(self, values: Mapping[str, Any], seed: int) -> Any:
        """The library's estimator, not fitted yet, for vetted hyperparameter values."""

    def target_problem(self, column_type: str) -> str | None:
        kind = pipeline.column_kind(column_type)
        if self.task == "regression":
            if kind in {"integer", "float"}:
                return None
            return f"a regressor predicts a number; the target is of type {column_type}"
        if kind in {"integer", "boolean", "string"}:
            return None
        return f"a classifier needs integer, boolean or string classes, not {column_type}"

    def feature_problems(
        self, columns: Mapping[str, str], hyperparameters: Mapping[str, Any]
    ) -> dict[str, str]:
        if not columns:
            return {"features": "at least one feature column is needed"}
        return {
            name: f"type {column_type} cannot be used: {self.name} reads numbers and booleans"
            for name, column_type in columns.items()
            if pipeline.column_kind(column_type) not in FEATURE_KINDS
        }

    def fit(self, run: TrainingRun, reporter: TrainingReporter) -> TrainedModel:
        values, problems = vet_hyperparameters(self.hyperparameters(), run.hyperparameters)
        if problems:
            raise ValueError(f"invalid hyperparameters: {joined(problems)}")
        self._check_columns(run)
        table = run.table.filter(_has_target(run.table.column(run.target)))
        features = feature_matrix(table, run.features)
        if not self.reads_missing_values and np.isnan(features).any():
            raise ValueError(
                f"{self.name} cannot read missing feature values: fill them, or use a tree "
                "trainer, which learns where they go"
            )
        split = self._split(run, table)
        reporter.resumed(0)
        if reporter.should_stop():
            raise TrainingCancelled
        estimator = self.estimator(values, run.seed)
        started = time.monotonic()
        estimator.fit(features[split.train], split.train_targets)
        fit_s = time.monotonic() - started
        metrics = self._report_rounds(estimator, features, split, reporter, fit_s)
        return self._trained(run, values, estimator, split, metrics)

    def _check_columns(self, run: TrainingRun) -> None:
        schema = run.table.schema
        types = {name: str(schema.field(name).type) for name in run.features}
        problems = self.feature_problems(types, run.hyperparameters)
        target_problem = self.target_problem(str(schema.field(run.target).type))
        if target_problem is not None:
            problems[run.target] = target_problem
        if problems:
            raise ValueError(f"unusable columns: {joined(problems)}")

    def _split(self, run: TrainingRun, table: pa.Table) -> _Split:
        rows = pipeline.split_rows(table.num_rows, run.validation_fraction, run.seed)
        if rows.train.size == 0:
            raise ValueError(
                f"the training split is empty: {run.table.num_rows} rows, "
                f"{table.num_rows} with a target, validation fraction {run.validation_fraction:g}"
            )
        if self.task == "regression":
            targets = pipeline.table_column(table, run.target)
            scale = pipeline.fit_standardized_target(targets[rows.train])["std"]
            return _Split(
                rows.train,
                rows.validation,
                targets[rows.train],
                targets[rows.validation],
                [],
                scale,
            )
        labels = pipeline.target_values(table, run.target)
        train_labels = [labels[index] for index in rows.train]
        classes = pipeline.fit_classes(train_labels)
        if len(classes) < 2:
            raise ValueError(
                f"a classifier needs at least two classes in the training split; "
                f"{run.target!r} has {len(classes)}"
            )
        validation_labels = [labels[index] for index in rows.validation]
        return _Split(
            rows.train,
            rows.validation,
            pipeline.encode_classes(classes, train_labels),
            pipeline.encode_classes(classes, validation_labels),
            classes,
            1.0,
        )

    def _evaluate(self, outputs: np.ndarray, targets: np.ndarray, split: _Split) -> dict[str, Any]:
        if self.task == "classification":
            return classification_metrics(outputs, targets, split.classes)
        return regression_metrics(outputs, targets, split.scale)

    def _report_rounds(
        self,
        estimator: Any,
        features: np.ndarray,
        split: _Split,
        reporter: TrainingReporter,
        fit_s: float,
    ) -> dict[str, Any]:
        """Report each round's figures (`loss` and `train_loss` on the training split,
        `val_*` on the validation split) and return the last round's evaluation: the model's."""
        total = rounds.round_count(estimator, self.library)
        wanted = rounds.reported_rounds(total)
        classifier = self.task == "classification"
        staged = zip(
            rounds.staged_outputs(
                estimator, self.library, classifier, features[split.train], wanted
            ),
            rounds.staged_outputs(
                estimator, self.library, classifier, features[split.validation], wanted
            ),
            strict=True,
        )
        examples_per_s = split.train.size * total / fit_s if fit_s > 0 else 0.0
        evaluation: dict[str, Any] = {}
        for (round_, train_outputs), (_, validation_outputs) in staged:
            if reporter.should_stop():
                raise TrainingCancelled
            train_loss = self._evaluate(train_outputs, split.train_targets, split)["loss"]
            evaluation = self._evaluate(validation_outputs, split.validation_targets, split)
            figures = {"loss": train_loss, "train_loss": train_loss, **epoch_metrics(evaluation)}
            reporter.progress(
                Progress(
                    step=round_,
                    total_steps=total,
                    epoch=round_,
                    metrics=figures,
                    examples_per_s=examples_per_s,
                    eta_s=0.0,
                )
            )
        return evaluation

    def _trained(
        self,
        run: TrainingRun,
        values: Mapping[str, Any],
        estimator: Any,
        split: _Split,
        metrics: Mapping[str, Any],
    ) -> TrainedModel:
        from aiaas_trees.conversion import to_onnx

        inputs = tuple(TensorSpec(name=name, dtype="float32", shape=(-1,)) for name in run.features)
        if self.task == "classification":
            label_dtype = {bool: "bool", int: "int64", str: "str"}.get(
                type(split.classes[0]), "str"
            )
            outputs: tuple[TensorSpec, ...] = (
                TensorSpec(name="label", dtype=label_dtype, shape=(-1,)),
                TensorSpec(name="probabilities", dtype="float32", shape=(-1, len(split.classes))),
            )
        else:
            outputs = (TensorSpec(name="value", dtype="float32", shape=(-1,)),)
        signature = ModelSignature(inputs=inputs, outputs=outputs)
        manifest = Manifest(
            trainer=self.name,
            task=self.task,
            features=tuple(run.features),
            classes=tuple(split.classes),
            signature=signature,
            hyperparameters=dict(values),
            library={"name": self.library, "version": _library_version(self.library)},
        )
        graph = to_onnx(estimator, self.library, len(run.features))
        return TrainedModel(
            format=FORMAT,
            bundle=encode_bundle(manifest, graph),
            signature=signature,
            metrics=dict(metrics),
            steps=rounds.round_count(estimator, self.library),
        )


def feature_matrix(table: pa.Table, features: Sequence[str]) -> np.ndarray:
    """The features as float64 [rows, features] holding float32 values (NaN for a missing
    one): what the ONNX graph will be given when serving, so the trees learn the thresholds
    it will compare against."""
    if not features:
        return np.zeros((table.num_rows, 0))
    columns = [pipeline.table_column(table, name) for name in features]
    return np.column_stack(columns).astype(np.float32).astype(np.float64)


def _library_version(library: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in {"xgboost": ("xgboost-cpu", "xgboost")}.get(library, (library,)):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"


def _has_target(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Rows to learn from: a target that is present and, for numbers, finite."""
    present = pc.is_valid(column)
    if pa.types.is_floating(column.type):
        return pc.and_(present, pc.is_finite(column))
    return present
