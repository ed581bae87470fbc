"""Serving: deployments, the inference server, batching, rollouts, serving metrics and drift.

A deployment (`deployments`) serves model versions under a name, in a traffic split: a stable
version, optionally a canary that takes a share of the requests and a shadow that sees a copy of
each. Every serving process runs an `InferenceServer` (`INFERENCE_SERVER`), which loads the
versions it is asked for into a model cache, queues requests to one adaptive batcher per model
and deployment, and answers them; whichever process claims a new or updated deployment warms
its versions before it serves (`rollout`). Drift checks compare what a deployment was asked with
what its version was trained on (`drift_checks`).

What other packages use is named here; the modules beneath hold the rest.
"""

from aiaas.core.serving import deployments
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
    "INFERENCE_SERVER",
    "MAX_RECORDS",
    "ROLLOUT_SUPERVISOR",
    "InferenceServer",
    "Prediction",
    "ServingTarget",
    "check_drift",
    "deployments",
    "latest_drift_gauges",
    "output_records",
    "records_to_columns",
    "stop_and_drain",
    "wake_rollouts",
]
