"""The training domain: training jobs, their metric history, and the model registry.

- `submission`: vetting a training request and recording the QUEUED job; cancelling one.
- `runner`: what a worker does with the job: `fit` in a thread, progress relayed to the job's
  stream and the metric history, checkpoints resumed, the trained model version registered;
  `checkpoint_uploads` and `checkpoint_records`: the job's checkpoints in the artifact store,
  fetched back by a worker that resumes it, forgotten on success or after their retention.
- `metric_history` (the stored per-step metrics and the reads that chart and compare them) and
  `metric_writer` (`MetricWriter`, which writes them with COPY in micro-batches).
- `registry`: models, their immutable versions and the aliases deployments follow;
  `promotion`: the gates a version passes before an alias moves to it.
- `comparison`: jobs side by side, their hyperparameters and final metrics.
- sweeps: `sweep_spec` (what a sweep searches, vetted against its trainer), `sweep_studies`
  (Optuna's storage, samplers and pruners), `sweep_records` (sweeps and trials as stored, and
  their event stream), `sweep_driver` (settling, starting and finishing trials), `sweep_trials`
  (a trial's pruning as its job runs) and `sweeps` (creating, cancelling, promoting).

`__all__` is what other domains (serving follows versions and aliases), the interfaces (GraphQL
and the workers) and plugins use; anything else is the domain's own business and may change.
Modules inside this package import each other, never this package, so that importing it cannot
start a cycle.
"""

from aiaas.core.training.checkpoint_uploads import expire_checkpoints
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
from aiaas.core.training.sweep_driver import advance_running_sweeps
from aiaas.core.training.sweep_records import (
    SWEEP_EVENTS,
    SWEEP_STREAM,
    Sweep,
    SweepState,
    SweepTrial,
    TrialState,
    best_of,
    get_sweep,
    list_sweeps,
    sweeps_by_ids,
    trials_by_jobs,
    trials_of,
)
from aiaas.core.training.sweep_spec import Pruner, Sampler, SearchDimension, SweepRequest
from aiaas.core.training.sweeps import (
    cancel_sweep,
    create_sweep,
    parameter_importances,
    promote_sweep_trial,
    trial_curves,
)

__all__ = [
    "DEFAULT_GATE_ALIASES",
    "GATE_ARGUMENTS",
    "PROTECTED_ALIAS",
    "SWEEP_EVENTS",
    "SWEEP_STREAM",
    "TRAINING_JOB",
    "MetricPoint",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "Pruner",
    "Sampler",
    "SearchDimension",
    "Sweep",
    "SweepRequest",
    "SweepState",
    "SweepTrial",
    "TrainingRequest",
    "TrialState",
    "advance_running_sweeps",
    "aliases_by_models",
    "best_of",
    "cancel_sweep",
    "cancel_training_job",
    "compare_jobs",
    "create_sweep",
    "expire_checkpoints",
    "gate_validators",
    "get_sweep",
    "latest_metrics",
    "list_model_versions",
    "list_models",
    "list_sweeps",
    "metric_keys",
    "metric_series",
    "model_by_name",
    "model_versions_by_ids",
    "model_versions_by_jobs",
    "models_by_ids",
    "models_trained_on",
    "parameter_importances",
    "promote_sweep_trial",
    "resolve_alias",
    "run_training",
    "set_model_alias",
    "set_promotion_gates",
    "submit_training_job",
    "sweeps_by_ids",
    "trial_curves",
    "trials_by_jobs",
    "trials_of",
    "vet_promotion_gates",
]
