"""`Client` (sync) and `AsyncClient`: a server URL and an API token. `client.api` holds the
typed operations generated from `operations/*.graphql`; `Client`'s own methods answer objects
with methods of their own (`Project`, `DatasetVersion`, `Job`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

import httpx

from aiaas.client import credentials, downloads
from aiaas.client.api import AsyncApi, SyncApi
from aiaas.client.errors import AiaasClientError, NotFoundError, raise_for
from aiaas.client.generated.datasets import DatasetVersionQueryNodeDatasetVersion
from aiaas.client.generated.training import TrainingJobQueryNodeTrainingJob
from aiaas.client.resources import DatasetVersion, Project
from aiaas.client.sweeps import Sweep
from aiaas.client.training import TrainingJob
from aiaas.client.transport import (
    DEFAULT_TIMEOUT_S,
    base_url,
    bearer,
)
from aiaas.client.uploads import Source


def _from_environment() -> tuple[str, str]:
    """AIAAS_URL and AIAAS_TOKEN, else what `aiaas login` stored. Never one of each: a stored
    token is sent only to the URL it was stored with."""
    url, token = os.environ.get("AIAAS_URL"), os.environ.get("AIAAS_TOKEN")
    if url and token:
        return url, token
    if url or token:
        given, missing = ("AIAAS_URL", "AIAAS_TOKEN") if url else ("AIAAS_TOKEN", "AIAAS_URL")
        raise AiaasClientError(f"{given} is set but {missing} is not: set both, or neither")
    stored = credentials.load()
    if stored is None:
        raise AiaasClientError(
            "no credentials: set AIAAS_URL and AIAAS_TOKEN, or run `aiaas login`"
        )
    return stored.url, stored.token


class Client:
    """The API of the aiaas server at `url`, as the owner of `token`.

    >>> client = Client("http://localhost:8000", "aiaas_...")
    >>> version = client.project("fraud").upload("transactions.csv", name="transactions")
    >>> version.validate().wait()
    >>> version.quality_report.passed
    """

    def __init__(self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = base_url(url)
        self.timeout = timeout
        self.token = token
        self.http = httpx.Client(base_url=self.url, headers=bearer(token), timeout=timeout)
        self.api = SyncApi(self.http, self.url)

    @classmethod
    def from_env(cls, *, timeout: float = DEFAULT_TIMEOUT_S) -> Self:
        """A client of AIAAS_URL with AIAAS_TOKEN, else of the credentials `aiaas login`
        stored."""
        url, token = _from_environment()
        return cls(url, token, timeout=timeout)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def project(self, slug: str) -> Project:
        """The project `slug`; `NotFoundError` if there is none the caller may see."""
        found = self.api.project(slug=slug).project
        if found is None:
            raise NotFoundError(f"no project {slug!r} (or none you may see)", "NOT_FOUND")
        return Project.of(self, found)

    def projects(self) -> list[Project]:
        """The projects the caller is a member of (an admin: all), oldest first."""
        projects: list[Project] = []
        after: str | None = None
        while True:
            page = self.api.viewer_projects(after=after).projects
            projects.extend(Project.of(self, node) for node in page.nodes)
            if not page.page_info.has_next_page:
                return projects
            after = page.page_info.end_cursor

    def training_job(self, id: str) -> TrainingJob:
        """The training job `id` (a global id); `NotFoundError` if there is none the caller
        may see."""
        node = self.api.training_job(id=id).node
        if not isinstance(node, TrainingJobQueryNodeTrainingJob):
            raise NotFoundError(f"no training job {id!r} (or none you may see)", "NOT_FOUND")
        return TrainingJob.of(self, node)

    def sweep(self, id: str) -> Sweep:
        """The sweep `id` (a global id); `NotFoundError` if there is none the caller may see."""
        return Sweep.get(self, id)

    def dataset_version(self, id: str) -> DatasetVersion:
        """The dataset version `id` (a global id); `NotFoundError` if there is none the caller
        may see."""
        node = self.api.dataset_version(id=id).node
        if not isinstance(node, DatasetVersionQueryNodeDatasetVersion):
            raise NotFoundError(f"no dataset version {id!r} (or none you may see)", "NOT_FOUND")
        return DatasetVersion.of(self, node)

    def create_project(self, slug: str, name: str | None = None, description: str = "") -> Project:
        """A new project, owned by the caller; `InvalidInputError` for a bad slug,
        `ConflictError` for one taken."""
        answer = self.api.create_project(
            input={"slug": slug, "name": name or slug, "description": description}
        )
        return Project.of(self, raise_for(answer.create_project).project)

    def upload(
        self,
        project: str,
        dataset: str,
        source: Source,
        *,
        description: str = "",
        progress: bool | None = None,
    ) -> DatasetVersion:
        """Upload `source` as a version of `dataset` in project `project` (a slug); see
        `Project.upload`."""
        return self.project_handle(project).upload(
            source, dataset, description=description, progress=progress
        )

    def download_model_version(
        self,
        project: str,
        model: str,
        number: int,
        path: str | os.PathLike[str],
        *,
        format: str = "bundle",
    ) -> Path:
        """Export version `number` of model `model` in project `project` to the file `path`,
        written to a temporary file beside it and renamed once whole: `format="bundle"` (a ZIP
        archive of the native bundle and its `manifest.json`) or `"onnx"` (the ONNX graph, for
        formats that convert). Answers the path."""
        return downloads.download_model_version(self, project, model, number, path, format=format)

    def project_handle(self, slug: str) -> Project:
        """A project by slug, without asking the server whether there is one (its other
        fields are empty): what an upload into a known project needs."""
        return Project(self, id="", slug=slug, name="", description="", role=None)


class AsyncClient:
    """The asynchronous twin of `Client`'s typed operations: `await client.api.project(
    slug=...)` answers the generated model. The objects with methods of their own (`Project`,
    `DatasetVersion`, `Job`) are `Client`'s in this release."""

    def __init__(self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = base_url(url)
        self._http = httpx.AsyncClient(base_url=self.url, headers=bearer(token), timeout=timeout)
        self.api = AsyncApi(self._http, self.url)

    @classmethod
    def from_env(cls, *, timeout: float = DEFAULT_TIMEOUT_S) -> Self:
        url, token = _from_environment()
        return cls(url, token, timeout=timeout)

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
