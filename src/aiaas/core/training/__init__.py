"""The training domain: training jobs, their metric history, and the model registry.

- `submission`: vetting a training request and recording the QUEUED job; cancelling one.
- `runner`: what a worker does with the job: `fit` in a thread, progress relayed to the job's
  stream and the metric history, checkpoints resumed, the trained model version registered.
- `metric_history` (the stored per-step metrics and the reads that chart and compare them) and
  `metric_writer` (`MetricWriter`, which writes them with COPY in micro-batches).
- `registry`: models, their immutable versions and the aliases deployments follow;
  `promotion`: the gates a version passes before an alias moves to it.
- `comparison`: jobs side by side, their hyperparameters and final metrics.

`__all__` is what other domains (serving follows versions and aliases), the interfaces (GraphQL
and the workers) and plugins use; anything else is the domain's own business and may change.
Modules inside this package import each other, never this package, so that importing it cannot
start a cycle.
"""

from aiaas.core.training.comparison import compare_jobs
from aiaas.core.training.metric_history import (
    MetricPoint,
    latest_metrics,
    metric_keys,
    metric_series,
)
from aiaas.core.training.promotion import (
    DEFAULT_GATE_ALIASES,
    GATE_ARGUMENTS,
    PROTECTED_ALIAS,
    gate_validators,
    vet_promotion_gates,
)
from aiaas.core.training.registry import (
    Model,
    ModelAlias,
    ModelVersion,
    aliases_by_models,
    list_model_versions,
    list_models,
    model_by_name,
    model_versions_by_ids,
    model_versions_by_jobs,
    models_by_ids,
    models_trained_on,
    resolve_alias,
    set_model_alias,
    set_promotion_gates,
)
from aiaas.core.training.runner import run_training
from aiaas.core.training.submission import (
    TRAINING_JOB,
    TrainingRequest,
    cancel_training_job,
    submit_training_job,
)

__all__ = [
    "DEFAULT_GATE_ALIASES",
    "GATE_ARGUMENTS",
    "PROTECTED_ALIAS",
    "TRAINING_JOB",
    "MetricPoint",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "TrainingRequest",
    "aliases_by_models",
    "cancel_training_job",
    "compare_jobs",
    "gate_validators",
    "latest_metrics",
    "list_model_versions",
    "list_models",
    "metric_keys",
    "metric_series",
    "model_by_name",
    "model_versions_by_ids",
    "model_versions_by_jobs",
    "models_by_ids",
    "models_trained_on",
    "resolve_alias",
    "run_training",
    "set_model_alias",
    "set_promotion_gates",
    "submit_training_job",
    "vet_promotion_gates",
]
