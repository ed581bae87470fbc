"""A registered model of a project, as the SDK reads it: its versions and its latest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiaas.client.connection import Client
from aiaas.client.deployments import ModelVersion
from aiaas.client.errors import NotFoundError


@dataclass
class Model:
    """A registered model of a project; `versions` are asked of the server when read."""

    client: Client = field(repr=False)
    project_slug: str
    name: str

    @property
    def versions(self) -> list[ModelVersion]:
        """Its versions, oldest first (the first 100)."""
        return [ModelVersion.of(self.client, node) for node in self._found().versions.nodes]

    @property
    def latest_version(self) -> ModelVersion:
        """Its newest version (the highest number); `NotFoundError` if it has none."""
        latest = self._found().latest_version
        if latest is None:
            raise NotFoundError(f"model {self.name!r} has no version", "NOT_FOUND")
        return ModelVersion.of(self.client, latest)

    def _found(self) -> Any:
        found = self.client.api.project_model(slug=self.project_slug, name=self.name).project
        if found is None or found.model is None:
            raise NotFoundError(
                f"no model {self.name!r} in project {self.project_slug!r}", "NOT_FOUND"
            )
        return found.model

    def version(self, number: int) -> ModelVersion:
        """Its version `number`; `NotFoundError` if there is none."""
        for version in self.versions:
            if version.number == number:
                return version
        raise NotFoundError(f"model {self.name!r} has no version {number}", "NOT_FOUND")
