"""The job kinds a worker runs, each handled by a core service."""

from __future__ import annotations

from collections.abc import Mapping

from aiaas.core.data.quality import VALIDATE_JOB, run_validation
from aiaas.core.serving import BATCH_PREDICTION_JOB, run_batch_prediction
from aiaas.core.training import TRAINING_JOB, run_training
from aiaas.workers.jobs import JobHandler

JOB_HANDLERS: Mapping[str, JobHandler] = {
    VALIDATE_JOB: run_validation,
    TRAINING_JOB: run_training,
    BATCH_PREDICTION_JOB: run_batch_prediction,
}
