"""Serving: deployments, the inference server, batching, rollouts, serving metrics and drift.

A deployment (`deployments`) serves model versions under a name, in a traffic split: a stable
version, optionally a canary that takes a share of the requests and a shadow that sees a copy of
each. Every serving process runs an `InferenceServer` (`INFERENCE_SERVER`), which loads the
versions it is asked for into a model cache, queues requests to one adaptive batcher per model
and deployment, and answers them; whichever process claims a new or updated deployment warms
its versions before it serves (`rollout`). Drift checks compare what a deployment was asked with
what its version was trained on (`drift_checks`). A batch prediction job (`batch_prediction`)
scores a whole dataset version in a worker into a new version.

What other packages use is named here; the modules beneath hold the rest.
"""

from aiaas.core.serving import batch_prediction, deployments
from aiaas.core.serving.batch_prediction import BATCH_PREDICTION_JOB
from aiaas.core.serving.batch_prediction_runner import run_batch_prediction
from aiaas.core.serving.deployment_cache import ServingTarget
from aiaas.core.serving.drift_checks import check_drift, latest_drift_gauges
from aiaas.core.serving.inference import (
    INFERENCE_SERVER,
    InferenceServer,
    Prediction,
    stop_and_drain,
)
from aiaas.core.serving.json_records import MAX_RECORDS, output_records, records_to_columns
from aiaas.core.serving.rollout import ROLLOUT_SUPERVISOR, wake_rollouts

__all__ = [
    "BATCH_PREDICTION_JOB",
    "INFERENCE_SERVER",
    "MAX_RECORDS",
    "ROLLOUT_SUPERVISOR",
    "InferenceServer",
    "Prediction",
    "ServingTarget",
    "batch_prediction",
    "check_drift",
    "deployments",
    "latest_drift_gauges",
    "output_records",
    "records_to_columns",
    "run_batch_prediction",
    "stop_and_drain",
    "wake_rollouts",
]
