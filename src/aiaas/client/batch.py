"""Batch prediction jobs: a whole dataset version scored by a model version (or a deployment's
stable one) in a background job, into a new version with the prediction columns.

    job = model_version.batch_predict(version)  # or deployment.batch_predict(version)
    scored = job.wait().output  # a DatasetVersion, whose parent is `version`

`wait` follows the job's `jobEvents` (rows scored of the version's rows) with a progress bar,
resuming from its last event after a dropped connection, as `TrainingJob.wait` does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiaas.client.connection import Client
from aiaas.client.errors import JobFailedError, NotFoundError, ServerConnectionError, raise_for
from aiaas.client.generated.batch import BatchPredictionJobQueryNodeJob
from aiaas.client.generated.documents import JOB_EVENTS_DOCUMENT
from aiaas.client.generated.schema_types import JobState, SubmitBatchPredictionJobInput
from aiaas.client.generated.training import JobEventsEvent, JobEventsEventJobEvents
from aiaas.client.job_states import FINISHED
from aiaas.client.progress import job_progress_bar
from aiaas.client.subscriptions import subscribe
from aiaas.client.uploads import progress_wanted

__all__ = ["BATCH_PREDICTION_KIND", "BatchPredictionJob", "submit_batch_prediction"]

BATCH_PREDICTION_KIND = "batch_prediction"
"""The `kind` of a batch prediction job, as `Job.kind` reads."""

JobEvent = JobEventsEventJobEvents


class Identified(Protocol):
    """What names a dataset version here: a `DatasetVersion`, by its global `id`. (This module
    sits below the one of `DatasetVersion`, which reaches it through `ModelVersion`.)"""

    @property
    def id(self) -> str: ...


def _version_id(version: Identified | str) -> str:
    return version if isinstance(version, str) else version.id


def submit_batch_prediction(
    client: Client,
    dataset_version: Identified | str,
    output_dataset: str | None,
    *,
    model_version: str | None = None,
    deployment: str | None = None,
) -> BatchPredictionJob:
    """Queue the job (`ModelVersion.batch_predict` and `Deployment.batch_predict` call this).
    `InvalidInputError` names what is refused (feature columns the version lacks...), and no
    job is made then."""
    job_input: SubmitBatchPredictionJobInput = {"datasetVersion": _version_id(dataset_version)}
    if model_version is not None:
        job_input["modelVersion"] = model_version
    if deployment is not None:
        job_input["deployment"] = deployment
    if output_dataset is not None:
        job_input["outputDataset"] = output_dataset
    answer = client.api.submit_batch_prediction_job(input=job_input).submit_batch_prediction_job
    return BatchPredictionJob.of(client, raise_for(answer).job)


@dataclass
class BatchPredictionJob:
    """A batch prediction job as last read; `output` is the version it made."""

    client: Client = field(repr=False)
    id: str
    state: JobState
    reason: str | None = None
    finished_at: datetime | None = None
    rows_done: int | None = None
    """Rows scored, as the last progress event said (`events()` or `wait()`)."""
    cursor: str | None = None
    """The last event `events()` saw: where following resumes."""

    @classmethod
    def of(cls, client: Client, fields: Any) -> BatchPredictionJob:
        return cls(client, fields.id, fields.state, fields.reason, fields.finished_at)

    @classmethod
    def get(cls, client: Client, id: str) -> BatchPredictionJob:
        """The batch prediction job of global id `id`; `NotFoundError` for none (or for a job
        of another kind)."""
        return cls(client, id, JobState.QUEUED).refresh()

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def _node(self) -> BatchPredictionJobQueryNodeJob:
        node = self.client.api.batch_prediction_job(id=self.id).node
        if not isinstance(node, BatchPredictionJobQueryNodeJob) or (
            node.kind != BATCH_PREDICTION_KIND
        ):
            raise NotFoundError(f"no batch prediction job {self.id!r}", "NOT_FOUND")
        return node

    def refresh(self) -> BatchPredictionJob:
        """Read its state again; answers itself."""
        node = self._node()
        self.state, self.reason, self.finished_at = node.state, node.reason, node.finished_at
        return self

    @property
    def output(self) -> Any:
        """The `DatasetVersion` it made (asked of the server now); None unless it
        SUCCEEDED."""
        node = self._node()
        self.state, self.reason, self.finished_at = node.state, node.reason, node.finished_at
        made = node.output_dataset_version
        return self.client.dataset_version(made.id) if made is not None else None

    def cancel(self) -> BatchPredictionJob:
        """Ask the server to cancel it: at once if queued; if running, it stops at its next
        part and registers nothing. Answers itself as the server then saw it (still RUNNING
        until it stops); `ConflictError` once it has finished."""
        answer = self.client.api.cancel_batch_prediction_job(id=self.id)
        job = raise_for(answer.cancel_batch_prediction_job).job
        self.state, self.reason, self.finished_at = job.state, job.reason, job.finished_at
        return self

    def events(self, timeout: float | None = None) -> Iterator[JobEvent]:
        """Its events after `cursor` (all of them at first), then live ones until it ends,
        over a WebSocket; after a dropped connection, resumed from the last one seen.
        `TimeoutError` once `timeout` seconds pass before it ends."""

        def variables() -> dict[str, Any]:
            return {"jobId": self.id, "after": self.cursor}

        client = self.client
        deadline = None if timeout is None else time.monotonic() + timeout
        for data in subscribe(
            client.url,
            client.token,
            JOB_EVENTS_DOCUMENT,
            variables,
            timeout=client.timeout,
            deadline=deadline,
        ):
            event = JobEventsEvent.model_validate(data).job_events
            self.cursor = event.cursor
            if event.state is not None:
                self.state = event.state
            if event.type == "progress" and event.step is not None:
                self.rows_done = event.step
            yield event

    def wait(
        self, progress: bool | None = None, timeout: float | None = None
    ) -> BatchPredictionJob:
        """Follow it until it ends, with a progress bar of rows on stderr in a terminal or a
        notebook unless `progress=False`. Answers itself once SUCCEEDED (`output` is then its
        version); `JobFailedError` if it FAILED or was CANCELLED, `TimeoutError` if it is still
        going after `timeout` seconds."""
        try:
            with job_progress_bar(
                progress_wanted(progress), "batch prediction", unit="rows"
            ) as show:
                for event in self.events(timeout):
                    show(event)
        except TimeoutError as exc:
            if isinstance(exc, ServerConnectionError):
                raise  # the server did not answer: not the job's time
            raise TimeoutError(
                f"batch prediction job {self.id} is still {self.state.value} after {timeout} s"
            ) from None
        self.refresh()
        if self.state is not JobState.SUCCEEDED:
            why = f": {self.reason}" if self.reason else ""
            raise JobFailedError(f"batch prediction job {self.id} {self.state.value}{why}", self)
        return self
