"""The real server the SDK's live tests talk to: `aiaas serve` and one `aiaas worker` per test
module, and an admin's client of it; and, for the modules that deploy and score, a project
with two trained versions of a wine classifier and a deployment of the first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from aiaas.client import Client, Deployment, ModelVersion
from aiaas.core.config import Config
from server_watch import Server, served_with_worker
from serving_support import FAST, wine_table


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Server]:
    name = request.node.name.removesuffix(".py").removeprefix("test_")
    async with served_with_worker(config, tmp_path_factory, name) as served:
        yield served


@pytest.fixture(scope="module")
def client(server: Server, admin_token: str) -> Iterator[Client]:
    with Client(server.running.base_url, admin_token) as client:
        yield client


@pytest.fixture(scope="module")
def project_slug(client: Client) -> str:
    slug = f"sdk-deploy-{uuid.uuid4().hex[:8]}"
    client.create_project(slug, name="SDK deploy")
    return slug


@pytest.fixture(scope="module")
def versions(client: Client, project_slug: str) -> list[ModelVersion]:
    """Versions 1 and 2 of a wine classifier (seeds 0 and 1), trained by the worker."""
    project = client.project(project_slug)
    wine = project.upload(wine_table(), name="wine", progress=False)
    trained = []
    for seed in (0, 1):
        job = project.train(
            wine,
            trainer="tabular-classifier",
            target="cultivar",
            seed=seed,
            model_name="wine",
            **FAST,
        )
        version = job.wait(progress=False).model_version
        assert version is not None
        trained.append(version)
    return trained


@pytest.fixture(scope="module")
def deployment(versions: list[ModelVersion]) -> Deployment:
    return versions[0].deploy("wine", max_batch_size=32, max_wait_ms=2).wait_ready(timeout=120)
