"""The job kinds a worker runs, each handled by a core service."""

from __future__ import annotations

from collections.abc import Mapping

from aiaas.core.data.quality import VALIDATE_JOB, run_validation
from aiaas.core.training import TRAINING_JOB, run_training
from aiaas.workers.jobs import JobHandler

JOB_HANDLERS: Mapping[str, JobHandler] = {
    VALIDATE_JOB: run_validation,
    TRAINING_JOB: run_training,
}
