"""Training jobs: submitted from a project, followed through `jobEvents` with a progress bar,
and their metric histories as DataFrames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiaas.client.connection import Client
from aiaas.client.deployments import ModelVersion
from aiaas.client.errors import JobFailedError, NotFoundError, raise_for
from aiaas.client.generated.documents import JOB_EVENTS_DOCUMENT
from aiaas.client.generated.schema_types import JobState
from aiaas.client.generated.training import (
    JobEventsEvent,
    JobEventsEventJobEvents,
    TrainingJobMetricsQueryNodeTrainingJob,
    TrainingJobQueryNodeTrainingJob,
)
from aiaas.client.job_states import FINISHED
from aiaas.client.progress import job_progress_bar
from aiaas.client.subscriptions import subscribe
from aiaas.client.uploads import progress_wanted

if TYPE_CHECKING:
    import pandas

JobEvent = JobEventsEventJobEvents
"""One event of a job: `type` (state, progress, checkpoint, resumed, model), `cursor`, and the
fields of its type (`state`; `step`, `total_steps`, `metrics`, `eta_seconds`...)."""


@dataclass
class TrainingJob:
    """A training job as last read. `model_version_id` is set once it registered a model."""

    client: Client = field(repr=False)
    id: str
    state: JobState
    trainer: str
    target: str
    reason: str | None = None
    metric_keys: list[str] = field(default_factory=list)
    model_version_id: str | None = None
    cursor: str | None = None
    """The last event `events()` saw: where following resumes."""

    @classmethod
    def of(cls, client: Client, fields: Any) -> TrainingJob:
        job = cls(client, fields.id, fields.state, fields.trainer, fields.target)
        job._read(fields)
        return job

    def _read(self, fields: Any) -> None:
        self.state, self.reason = fields.state, fields.reason
        self.metric_keys = list(fields.metric_keys)
        self.model_version_id = fields.model_version.id if fields.model_version else None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def model_version(self) -> ModelVersion | None:
        """The model version it registered (asked of the server); None before it has one."""
        if self.model_version_id is None:
            self.refresh()
        if self.model_version_id is None:
            return None
        return ModelVersion.get(self.client, self.model_version_id)

    def refresh(self) -> TrainingJob:
        """Read its state again; answers itself."""
        node = self.client.api.training_job(id=self.id).node
        if not isinstance(node, TrainingJobQueryNodeTrainingJob):
            raise NotFoundError(f"training job {self.id} is gone", "NOT_FOUND")
        self._read(node)
        return self

    def cancel(self) -> TrainingJob:
        """Ask the server to cancel it: at once if queued, at its next step if running.
        Answers itself as the server then saw it; `ConflictError` once it has finished."""
        answer = self.client.api.cancel_training_job(id=self.id).cancel_training_job
        self._read(raise_for(answer).job)
        return self

    def events(self) -> Iterator[JobEvent]:
        """Its events after `cursor` (all of them at first), then live ones until it ends,
        over a WebSocket; after a dropped connection, resumed from the last one seen."""

        def variables() -> dict[str, Any]:
            return {"jobId": self.id, "after": self.cursor}

        client = self.client
        for data in subscribe(
            client.url, client.token, JOB_EVENTS_DOCUMENT, variables, timeout=client.timeout
        ):
            event = JobEventsEvent.model_validate(data).job_events
            self.cursor = event.cursor
            if event.state is not None:
                self.state = event.state
            yield event

    def wait(self, progress: bool | None = None) -> TrainingJob:
        """Follow it until it ends, with a progress bar (step, loss, ETA) on stderr in a
        terminal or a notebook unless `progress=False`. Answers itself once SUCCEEDED;
        `JobFailedError` if it FAILED or was CANCELLED."""
        with job_progress_bar(
            progress_wanted(progress), f"training {self.trainer}", with_loss=True
        ) as show:
            for event in self.events():
                show(event)
        self.refresh()
        if self.state is not JobState.SUCCEEDED:
            why = f": {self.reason}" if self.reason else ""
            raise JobFailedError(f"training job {self.id} {self.state.value}{why}", self)
        return self

    def metrics(self, key: str = "loss", max_points: int = 10_000) -> pandas.DataFrame:
        """The history of metric `key` (loss at every step; train_loss and val_* per epoch):
        a DataFrame of step, value, min and max, downsampled to at most `max_points` rows."""
        import pandas

        node = self.client.api.training_job_metrics(id=self.id, key=key, max_points=max_points)
        found = node.node
        if not isinstance(found, TrainingJobMetricsQueryNodeTrainingJob):
            raise NotFoundError(f"training job {self.id} is gone", "NOT_FOUND")
        rows = [point.model_dump() for point in found.metrics]
        return pandas.DataFrame(rows, columns=["step", "value", "min", "max"])
