"""What every built-in trainer shares: vetting, the split, the loop, evaluation, the bundle.

A trainer subclass says how its features are encoded (`fit_preprocessing`) and which model reads
them (`architecture`); `FlaxTrainer.fit` does the rest. JAX is imported only inside `fit`, so
listing and vetting trainers never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aiaas.core.signatures import ModelSignature, TensorSpec
from aiaas.core.trainers import (
    Task,
    TrainedModel,
    Trainer,
    TrainingReporter,
    TrainingRun,
    vet_hyperparameters,
)
from aiaas.formats import flax_nnx
from aiaas.plugins.flax_trainers import input_pipeline as pipeline
from aiaas.plugins.flax_trainers.augmentation import Augmentation
from aiaas.plugins.flax_trainers.evaluation import classification_metrics, regression_metrics


def joined(problems: Mapping[str, str]) -> str:
    return "; ".join(f"{name}: {problem}" for name, problem in sorted(problems.items()))


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    """The table with a target in every row, its split, and the encoded features."""

    table: pa.Table
    split: pipeline.RowSplit
    preprocessing: dict[str, Any]
    train_inputs: np.ndarray
    validation_inputs: np.ndarray


class FlaxTrainer(Trainer):
    """What every built-in trainer shares: vetting, the split, the loop, evaluation, the bundle.
    A subclass says how its features are encoded and which model reads them."""

    name: str
    task: Task

    def target_problem(self, column_type: str) -> str | None:
        kind = pipeline.column_kind(column_type)
        if self.task == "regression":
            if kind in {"integer", "float"}:
                return None
            return f"a regressor predicts a number; the target is of type {column_type}"
        if kind in {"integer", "boolean", "string"}:
            return None
        if kind == "float":
            return (
                "a classifier predicts classes, and a float column holds measurements: use "
                "tabular-regressor, or cast the column to integer or string if it holds codes"
            )
        return f"a classifier needs integer, boolean or string classes, not {column_type}"

    def vetted(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values, problems = vet_hyperparameters(self.hyperparameters(), given)
        if problems:
            details = joined(problems)
            raise ValueError(f"invalid hyperparameters: {details}")
        return values

    # What a subclass provides --------------------------------------------------------------

    def fit_preprocessing(
        self, columns: Mapping[str, np.ndarray], features: Sequence[str], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def architecture(
        self, preprocessing: Mapping[str, Any], values: Mapping[str, Any], outputs: int
    ) -> dict[str, Any]:
        raise NotImplementedError

    def feature_columns(self, table: pa.Table, features: Sequence[str]) -> dict[str, np.ndarray]:
        """The feature columns as the encoders take them; an image trainer decodes its images
        here, once."""
        return {name: pipeline.table_column(table, name) for name in features}

    def input_specs(
        self, schema: pa.Schema, features: Sequence[str], preprocessing: Mapping[str, Any]
    ) -> tuple[TensorSpec, ...]:
        """The signature's inputs: one [-1] column per feature, strings as strings (the bundle
        encodes them) and every other column read as float32."""
        return tuple(
            TensorSpec(name=name, dtype=_input_dtype(schema.field(name).type), shape=(-1,))
            for name in features
        )

    def augmentation(self, values: Mapping[str, Any]) -> Augmentation | None:
        """What the train step does to each batch on the device; None for nothing."""
        return None

    # The shared fit ---------------------------------------------------------------------------

    def fit(self, run: TrainingRun, reporter: TrainingReporter) -> TrainedModel:
        values = self.vetted(run.hyperparameters)
        self._check_columns(run, values)
        table = run.table.filter(_has_target(run.table.column(run.target)))
        split = pipeline.split_rows(table.num_rows, run.validation_fraction, run.seed)
        if split.train.size == 0:
            raise ValueError(
                f"the training split is empty: {run.table.num_rows} rows, "
                f"{table.num_rows} with a target, validation fraction {run.validation_fraction:g}"
            )
        columns = self.feature_columns(table, run.features)
        train_columns = {name: column[split.train] for name, column in columns.items()}
        validation_columns = {name: column[split.validation] for name, column in columns.items()}
        preprocessing = self.fit_preprocessing(train_columns, run.features, values)
        prepared = _Prepared(
            table=table,
            split=split,
            preprocessing=preprocessing,
            train_inputs=pipeline.encode_features(preprocessing, train_columns),
            validation_inputs=pipeline.encode_features(preprocessing, validation_columns),
        )
        if self.task == "classification":
            return self._fit_classifier(run, reporter, values, prepared)
        return self._fit_regressor(run, reporter, values, prepared)

    def _check_columns(self, run: TrainingRun, values: Mapping[str, Any]) -> None:
        schema = run.table.schema
        types = {name: str(schema.field(name).type) for name in run.features}
        problems = self.feature_problems(types, values)
        target_problem = self.target_problem(str(schema.field(run.target).type))
        if target_problem is not None:
            problems[run.target] = target_problem
        if problems:
            details = joined(problems)
            raise ValueError(f"unusable columns: {details}")

    def _fit_classifier(
        self,
        run: TrainingRun,
        reporter: TrainingReporter,
        values: Mapping[str, Any],
        prepared: _Prepared,
    ) -> TrainedModel:
        from aiaas.plugins.flax_trainers import train

        table, split, preprocessing = prepared.table, prepared.split, prepared.preprocessing
        labels = pipeline.target_values(table, run.target)
        train_labels = [labels[index] for index in split.train]
        classes = pipeline.fit_classes(train_labels)
        if len(classes) < 2:
            raise ValueError(
                f"a classifier needs at least two classes in the training split; "
                f"{run.target!r} has {len(classes)}"
            )
        train_targets = pipeline.encode_classes(classes, train_labels)
        validation_targets = pipeline.encode_classes(
            classes, [labels[index] for index in split.validation]
        )

        def evaluate(probabilities: np.ndarray) -> dict[str, Any]:
            return classification_metrics(probabilities, validation_targets, classes)

        weights = (
            pipeline.balanced_class_weights(train_targets, len(classes))
            if values["balance_classes"]
            else None
        )
        architecture = self.architecture(preprocessing, values, len(classes))
        result = train.train_and_evaluate(
            training_architecture(architecture, values),
            train.TrainingArrays(
                train_inputs=prepared.train_inputs,
                train_targets=train_targets,
                validation_inputs=prepared.validation_inputs,
                evaluate=evaluate,
                class_weights=weights,
            ),
            self._loop_settings(run, values),
            reporter,
        )
        label_dtype = {bool: "bool", int: "int64", str: "str"}.get(type(classes[0]), "str")
        outputs = (
            TensorSpec(name="label", dtype=label_dtype, shape=(-1,)),
            TensorSpec(name="probabilities", dtype="float32", shape=(-1, len(classes))),
        )
        return self._trained(
            run, values, preprocessing, architecture, {"classes": classes}, outputs, result
        )

    def _fit_regressor(
        self,
        run: TrainingRun,
        reporter: TrainingReporter,
        values: Mapping[str, Any],
        prepared: _Prepared,
    ) -> TrainedModel:
        from aiaas.plugins.flax_trainers import train

        table, split, preprocessing = prepared.table, prepared.split, prepared.preprocessing
        targets = pipeline.table_column(table, run.target)
        scale = pipeline.fit_standardized_target(targets[split.train])
        standardized = ((targets[split.train] - scale["mean"]) / scale["std"]).astype(np.float32)
        validation_targets = targets[split.validation]

        def evaluate(predictions: np.ndarray) -> dict[str, Any]:
            # The model predicts the standardized target; the metrics are in the target's units.
            unscaled = predictions * scale["std"] + scale["mean"]
            return regression_metrics(unscaled, validation_targets, scale["std"])

        architecture = self.architecture(preprocessing, values, 1)
        result = train.train_and_evaluate(
            training_architecture(architecture, values),
            train.TrainingArrays(
                train_inputs=prepared.train_inputs,
                train_targets=standardized,
                validation_inputs=prepared.validation_inputs,
                evaluate=evaluate,
            ),
            self._loop_settings(run, values),
            reporter,
        )
        outputs = (TensorSpec(name="value", dtype="float32", shape=(-1,)),)
        return self._trained(run, values, preprocessing, architecture, scale, outputs, result)

    def _loop_settings(self, run: TrainingRun, values: Mapping[str, Any]) -> Any:
        from aiaas.plugins.flax_trainers.train import LoopSettings

        return LoopSettings(
            task=self.task,
            epochs=values["epochs"],
            batch_size=values["batch_size"],
            learning_rate=values["learning_rate"],
            weight_decay=values["weight_decay"],
            patience=values["patience"],
            lr_schedule=values["lr_schedule"],
            warmup_fraction=values["warmup_fraction"],
            seed=run.seed,
            checkpoint_dir=run.checkpoint_dir,
            checkpoint_every_steps=max(1, run.checkpoint_every_steps),
            checkpoint_sealer=run.checkpoint_sealer,
            epoch_verdicts=run.epoch_verdicts,
            augmentation=self.augmentation(values),
        )

    def _trained(
        self,
        run: TrainingRun,
        values: Mapping[str, Any],
        preprocessing: Mapping[str, Any],
        architecture: Mapping[str, Any],
        target: Mapping[str, Any],
        outputs: tuple[TensorSpec, ...],
        result: Any,
    ) -> TrainedModel:
        inputs = self.input_specs(run.table.schema, run.features, preprocessing)
        signature = ModelSignature(inputs=inputs, outputs=outputs)
        bundle = flax_nnx.encode_bundle(
            trainer=self.name,
            task=self.task,
            architecture=architecture,
            hyperparameters=values,
            preprocessing=preprocessing,
            target=target,
            signature=signature,
            params=result.params,
        )
        return TrainedModel(
            format=flax_nnx.FORMAT,
            bundle=bundle,
            signature=signature,
            metrics=result.metrics,
            steps=result.steps,
        )


def training_architecture(
    architecture: Mapping[str, Any], values: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The model trained: the bundle's `architecture` computing at the run's `precision`. The
    bundle keeps the architecture without it, and its float32 weights, so a model trained in
    bfloat16 serves in float32 like any other (`aiaas.formats.flax_nnx_models`)."""
    if values["precision"] == "float32":
        return architecture
    return {**architecture, "compute_dtype": values["precision"]}


def _input_dtype(arrow_type: pa.DataType) -> str:
    return "str" if pipeline.arrow_kind(arrow_type) == "string" else "float32"


def _has_target(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Rows a trainer can learn from: a target that is present and, for numbers, finite (a NaN
    target would make the loss NaN from the first step)."""
    present = pc.is_valid(column)
    if pa.types.is_floating(column.type):
        return pc.and_(present, pc.is_finite(column))
    return present
