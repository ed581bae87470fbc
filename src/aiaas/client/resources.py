"""The objects a `Client` answers: projects, dataset versions and jobs. Each holds its client
and the fields it was read with; methods that need the server's current state ask it again."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Unpack
from urllib.parse import quote

import httpx

from aiaas.client import downloads
from aiaas.client.connection import Client
from aiaas.client.deployments import Deployment, ModelVersion
from aiaas.client.errors import (
    AiaasClientError,
    InvalidInputError,
    JobFailedError,
    NotFoundError,
    raise_for,
)
from aiaas.client.generated.cli import (
    ProjectModelsQueryProjectModelsNodes as ProjectModel,
)
from aiaas.client.generated.datasets import QualityReportQueryNodeDatasetVersion
from aiaas.client.generated.datasets import (
    QualityReportQueryNodeDatasetVersionQualityReport as QualityReport,
)
from aiaas.client.generated.jobs import JobQueryNodeJob
from aiaas.client.generated.schema_types import JobState, SubmitTrainingJobInput
from aiaas.client.job_states import FINISHED
from aiaas.client.models import Model
from aiaas.client.sweeps import Sweep, SweepOptions, submit_sweep
from aiaas.client.training import TrainingJob
from aiaas.client.transport import answered, check_response
from aiaas.client.uploads import Body, Source, chunks, opened, opened_model, progress_wanted

if TYPE_CHECKING:
    import pandas
    import pyarrow

__all__ = ["DatasetVersion", "Job", "Project", "ProjectModel", "QualityReport", "Sweep"]

UPLOAD_ANSWER_TIMEOUT_S = 600.0
"""How long an upload may wait for its answer once sent: the server ingests the whole file
(normalizes it to Parquet, profiles it) before it answers."""


def _send(
    client: Client, path: str, body: Body, params: dict[str, str], progress: bool | None
) -> dict[str, Any]:
    """POST `body` to `path` in chunks, behind a progress bar where wanted; the JSON answer."""
    timeout = httpx.Timeout(client.timeout, read=max(client.timeout, UPLOAD_ANSWER_TIMEOUT_S))
    headers = {"Content-Length": str(body.size), "Content-Type": "application/octet-stream"}
    with chunks(body, progress_wanted(progress)) as content, answered(client.url):
        # An interruption (Ctrl-C) while `content` is read closes the connection mid-body:
        # the server stops the upload and keeps nothing of it.
        response = client.http.post(
            path, content=content, params=params, headers=headers, timeout=timeout
        )
    answer: dict[str, Any] = check_response(client.url, response)
    return answer


@dataclass
class Project:
    """A project the caller is a member of. `id` is its global id."""

    client: Client = field(repr=False)
    id: str
    slug: str
    name: str
    description: str
    role: str | None

    @classmethod
    def of(cls, client: Client, fields: Any) -> Project:
        role = fields.viewer_role.value if fields.viewer_role else None
        return cls(client, fields.id, fields.slug, fields.name, fields.description, role)

    def upload(
        self,
        source: Source,
        name: str,
        *,
        description: str = "",
        progress: bool | None = None,
    ) -> DatasetVersion:
        """Upload `source` as a version of dataset `name` (created if there is none).

        `source` is a path or binary file (CSV, Parquet, or a zip or tar archive of PNG, JPEG
        or DICOM images: docs/guides/images.md; told from its bytes), a pyarrow
        Table or a pandas DataFrame (sent as Parquet). It streams to the server in chunks; a
        progress bar shows on stderr in a terminal or a notebook unless `progress=False`.
        Content uploaded before answers its existing version (`version.created` is False).
        Interrupted (Ctrl-C), the upload leaves no version on the server.
        """
        path = f"/v1/projects/{quote(self.slug, safe='')}/datasets/{quote(name, safe='')}/versions"
        with opened(source) as body:
            params = {"format": body.format}
            if description:
                params["description"] = description
            answer = _send(self.client, path, body, params, progress)
        return DatasetVersion.from_rest(
            self.client, answer, project_slug=self.slug, dataset_name=name
        )

    def upload_model(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        name: str,
        *,
        format: str = "onnx",
        signature: dict[str, Any] | None = None,
        reference: DatasetVersion | tuple[str, int] | None = None,
        progress: bool | None = None,
    ) -> ModelVersion:
        """Upload a model file made elsewhere (an ONNX graph) as the next version of model
        `name` (created if there is none), ready to deploy.

        `signature` ({"inputs": [{"name", "dtype", "shape"}...], "outputs": [...]}) must match
        the graph; left out, it is read from the graph. `reference` names a dataset version
        of the project (a `DatasetVersion`, or its dataset's name and number) whose data drift
        checks compare requests with. `InvalidInputError` says what is wrong with the file."""
        path = f"/v1/projects/{quote(self.slug, safe='')}/models/{quote(name, safe='')}/versions"
        params = {"format": format}
        if signature is not None:
            params["signature"] = json.dumps(signature)
        if reference is not None:
            if isinstance(reference, DatasetVersion) and reference.project_slug not in {
                "",
                self.slug,
            }:
                raise InvalidInputError(
                    f"the reference data is of project {reference.project_slug!r}, not "
                    f"{self.slug!r}",
                    "BAD_USER_INPUT",
                    {"reference": "of another project"},
                )
            dataset, number = (
                (reference.dataset_name, reference.number)
                if isinstance(reference, DatasetVersion)
                else reference
            )
            params |= {"dataset": dataset, "datasetVersion": str(number)}
        with opened_model(source, format) as body:
            answer = _send(self.client, path, body, params, progress)
        return ModelVersion.get(self.client, answer["version"]["id"])

    def train(
        self,
        version: DatasetVersion | str,
        *,
        trainer: str,
        target: str,
        features: list[str] | None = None,
        validation_fraction: float | None = None,
        seed: int | None = None,
        model_name: str | None = None,
        **hyperparameters: Any,
    ) -> TrainingJob:
        """Queue a training job on `version` (a `DatasetVersion` or its global id) with
        `trainer`'s `hyperparameters` (left-out ones take their defaults); `.wait()` on the
        answer follows it. `InvalidInputError` names what is wrong with the request."""
        job_input: SubmitTrainingJobInput = {
            "datasetVersion": version if isinstance(version, str) else version.id,
            "trainer": trainer,
            "target": target,
            "hyperparameters": hyperparameters,
        }
        if features is not None:
            job_input["features"] = features
        if validation_fraction is not None:
            job_input["validationFraction"] = validation_fraction
        if seed is not None:
            job_input["seed"] = seed
        if model_name is not None:
            job_input["modelName"] = model_name
        answer = self.client.api.submit_training_job(input=job_input).submit_training_job
        return TrainingJob.of(self.client, raise_for(answer).job)

    def create_sweep(self, version: DatasetVersion | str, **options: Unpack[SweepOptions]) -> Sweep:
        """Search `trainer`'s hyperparameters on `version` (a `DatasetVersion` or its global
        id): `n_trials` training jobs, `parallelism` at once, each with one point of
        `search_space` ({"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "hidden_size": [32, 64, 128]}: a list means choices, a mapping a range) and the fixed
        `hyperparameters`, judged by `objective` ("accuracy", or ("rmse", "minimize")); see
        `SweepOptions` for the rest. `.wait()` on the answer follows it. `InvalidInputError`
        names every field refused, and no sweep is made then."""
        version_id = version if isinstance(version, str) else version.id
        return submit_sweep(self.client, version_id, options)

    def sweeps(self) -> list[Sweep]:
        """Its sweeps, newest first."""
        sweeps: list[Sweep] = []
        after: str | None = None
        while True:
            found = self.client.api.project_sweeps(slug=self.slug, after=after).project
            if found is None:
                raise NotFoundError(f"no project {self.slug!r} (or none you may see)", "NOT_FOUND")
            sweeps.extend(Sweep.of(self.client, node) for node in found.sweeps.nodes)
            if not found.sweeps.page_info.has_next_page:
                return sweeps
            after = found.sweeps.page_info.end_cursor

    def model(self, name: str) -> Model:
        """Its registered model `name`: `.versions`, `.version(n)`."""
        return Model(self.client, self.slug, name)

    def deployment(self, name: str) -> Deployment:
        """Its live deployment `name`; `NotFoundError` if there is none."""
        found = self.client.api.project_deployment(slug=self.slug, name=name).project
        if found is None or found.deployment is None:
            raise NotFoundError(f"no deployment {name!r} in project {self.slug!r}", "NOT_FOUND")
        return Deployment.of(self.client, found.deployment)

    def latest_version(self, dataset: str) -> DatasetVersion:
        """The latest version of its dataset `dataset`; `NotFoundError` if it has none."""
        found = self.client.api.latest_dataset_version(slug=self.slug, name=dataset).project
        if found is None:
            raise NotFoundError(f"no project {self.slug!r} (or none you may see)", "NOT_FOUND")
        if found.dataset is None or found.dataset.latest_version is None:
            raise NotFoundError(f"no dataset {dataset!r} in project {self.slug!r}", "NOT_FOUND")
        return DatasetVersion.of(self.client, found.dataset.latest_version)

    def dataset_version(self, dataset: str, number: int) -> DatasetVersion:
        """Version `number` of its dataset `dataset`; `NotFoundError` if there is none."""
        after: str | None = None
        while True:
            found = self.client.api.dataset_versions(slug=self.slug, name=dataset, after=after)
            if found.project is None or found.project.dataset is None:
                raise NotFoundError(f"no dataset {dataset!r} in project {self.slug!r}", "NOT_FOUND")
            page = found.project.dataset.versions
            for node in page.nodes:
                if node.number == number:
                    return DatasetVersion.of(self.client, node)
            if not page.page_info.has_next_page:
                raise NotFoundError(f"dataset {dataset!r} has no version {number}", "NOT_FOUND")
            after = page.page_info.end_cursor

    def training_jobs(self) -> list[TrainingJob]:
        """Its training jobs, newest first."""
        jobs: list[TrainingJob] = []
        after: str | None = None
        while True:
            found = self.client.api.project_training_jobs(slug=self.slug, after=after).project
            if found is None:
                raise NotFoundError(f"no project {self.slug!r} (or none you may see)", "NOT_FOUND")
            page = found.training_jobs
            jobs.extend(TrainingJob.of(self.client, node) for node in page.nodes)
            if not page.page_info.has_next_page:
                return jobs
            after = page.page_info.end_cursor

    def models(self) -> list[ProjectModel]:
        """Its registered models, each with its versions (the latest 100) and aliases."""
        models: list[ProjectModel] = []
        after: str | None = None
        while True:
            found = self.client.api.project_models(slug=self.slug, after=after).project
            if found is None:
                raise NotFoundError(f"no project {self.slug!r} (or none you may see)", "NOT_FOUND")
            models.extend(found.models.nodes)
            if not found.models.page_info.has_next_page:
                return models
            after = found.models.page_info.end_cursor


@dataclass
class DatasetVersion:
    """An immutable version of a dataset, as the upload or a query answered it."""

    client: Client = field(repr=False)
    id: str
    dataset_id: str
    number: int
    row_count: int
    size_bytes: int
    source_format: str
    content_sha256: str
    columns: list[dict[str, str]]
    created_at: datetime
    created: bool = True
    """False when the same content was uploaded before and this is that version."""
    uuid: str = ""
    """The raw UUID beside the global id, for matching rows of one's own; no argument takes it."""
    project_slug: str = ""
    """Its project's slug, where it was read through its project: what `download` needs."""
    dataset_name: str = ""
    """Its dataset's name, likewise."""

    @classmethod
    def from_rest(
        cls, client: Client, body: dict[str, Any], *, project_slug: str = "", dataset_name: str = ""
    ) -> DatasetVersion:
        version = body["version"]
        return cls(
            client,
            id=version["id"],
            dataset_id=version["datasetId"],
            number=version["number"],
            row_count=version["rowCount"],
            size_bytes=version["sizeBytes"],
            source_format=version["sourceFormat"],
            content_sha256=version["contentSha256"],
            columns=list(version["columns"]),
            created_at=datetime.fromisoformat(version["createdAt"]),
            created=bool(body.get("created", True)),
            uuid=str(version.get("uuid", "")),
            project_slug=project_slug,
            dataset_name=dataset_name,
        )

    @classmethod
    def of(cls, client: Client, fields: Any) -> DatasetVersion:
        """From the `DatasetVersionFields` of a query."""
        return cls(
            client,
            id=fields.id,
            dataset_id=fields.dataset.id,
            number=fields.number,
            row_count=fields.row_count,
            size_bytes=fields.size_bytes,
            source_format=fields.source_format,
            content_sha256=fields.content_sha256,
            columns=[{"name": column.name, "type": column.type} for column in fields.columns],
            created_at=fields.created_at,
            created=False,
            project_slug=fields.dataset.project_slug,
            dataset_name=fields.dataset.name,
        )

    def validate(self) -> Job:
        """Queue a check against the dataset's expectations; `.wait()` on the answer, then
        read `quality_report`."""
        answer = self.client.api.validate_dataset_version(id=self.id).validate_dataset_version
        queued = raise_for(answer)
        return Job.of(self.client, queued.job)

    @property
    def quality_report(self) -> QualityReport | None:
        """Its latest quality report, asked of the server now; None before any validation."""
        node = self.client.api.quality_report(version=self.id).node
        if not isinstance(node, QualityReportQueryNodeDatasetVersion):
            raise NotFoundError(f"dataset version {self.id} is gone", "NOT_FOUND")
        return node.quality_report

    def _located(self) -> tuple[str, str]:
        if not (self.project_slug and self.dataset_name):
            raise AiaasClientError(
                f"dataset version {self.id} does not know its project: read it through its "
                "project (`project.upload`, `project.latest_version`) to download it"
            )
        return self.project_slug, self.dataset_name

    def download(self, path: str | os.PathLike[str]) -> Path:
        """Its rows as a Parquet file at `path` (replaced whole if it exists), streamed to a
        temporary file beside it and renamed once complete: interrupted (Ctrl-C) or refused,
        it leaves `path` as it was. Answers the path."""
        return downloads.download_version(self.client, *self._located(), self.number, path)

    def to_arrow(self) -> pyarrow.Table:
        """Its rows as a pyarrow Table (downloaded to a temporary file first)."""
        return downloads.read_version(self.client, *self._located(), self.number)

    def to_pandas(self) -> pandas.DataFrame:
        """Its rows as a pandas DataFrame."""
        return self.to_arrow().to_pandas()


@dataclass
class Job:
    """A background job (a validation, a training...) as last read."""

    client: Client = field(repr=False)
    id: str
    kind: str
    state: JobState
    reason: str | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, client: Client, fields: Any) -> Job:
        return cls(client, fields.id, fields.kind, fields.state, fields.reason, fields.finished_at)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def refresh(self) -> Job:
        """Read its state again; answers itself."""
        node = self.client.api.job(id=self.id).node
        if not isinstance(node, JobQueryNodeJob):
            raise NotFoundError(f"job {self.id} is gone", "NOT_FOUND")
        self.state, self.reason, self.finished_at = node.state, node.reason, node.finished_at
        return self

    def wait(self, timeout: float | None = None, poll_interval: float = 0.25) -> Job:
        """Return once it has finished, SUCCEEDED; `JobFailedError` if it FAILED or was
        CANCELLED, `TimeoutError` if it is still going after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.state.value} after {timeout} s")
            time.sleep(poll_interval)
        if self.state is not JobState.SUCCEEDED:
            why = f": {self.reason}" if self.reason else ""
            raise JobFailedError(f"{self.kind} job {self.id} {self.state.value}{why}", self)
        return self
