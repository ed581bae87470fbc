"""A real `aiaas serve` with a wine classifier deployed on it, called over V2 REST by tritonclient,
a standard client not written here, with its defaults (binary tensors both ways).

tritonclient.http runs on gevent: its blocking calls are made in a thread (`asyncio.to_thread`),
which keeps gevent's hub off the test's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import registry as models
from deployment_calls import deploy
from serving_support import wine_table, wine_versions
from support import RunningServer, Team, running_server, server_environment, wait_until_ready

T = TypeVar("T")


@contextlib.asynccontextmanager
async def v2_server(
    config: Config, tmp_path_factory: pytest.TempPathFactory, **variables: str
) -> AsyncIterator[RunningServer]:
    """`aiaas serve` on the module's database, loading the models trained in the test process
    (the artifact store is in the data dir), with the settings `variables` add."""
    environment = server_environment(config, AIAAS_DATA_DIR=str(config.data_dir), **variables)
    with running_server(environment, tmp_path_factory.mktemp("v2") / "serve.log") as server:
        await wait_until_ready(server, timeout_s=60)
        yield server


async def deployed(
    server: RunningServer, team: Team, version: models.ModelVersion, name: str, **fields: Any
) -> dict[str, Any]:
    """`version` deployed as `name` through the server's GraphQL, once READY."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        return await deploy(client, team, name, version, **fields)


async def served_wine_version(
    platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory
) -> models.ModelVersion:
    """A wine classifier version of `team`'s project, trained by its developer, to serve."""
    versions = await wine_versions(
        platform,
        team.members[ProjectRole.DEVELOPER].principal,
        team.project_id,
        tmp_path_factory.mktemp("wine"),
    )
    return versions[1]


def wine_columns(start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows `start:stop` of the wine features, one FP32 column each, as the model takes them."""
    table = wine_table().drop_columns(["cultivar"]).slice(start, stop - start)
    return {
        name: np.asarray(values, dtype=np.float32) for name, values in table.to_pydict().items()
    }


def wine_records(start: int, stop: int) -> list[dict[str, float]]:
    """The same rows as JSON records, as GraphQL's `predict` takes them."""
    rows: list[dict[str, float]] = (
        wine_table().drop_columns(["cultivar"]).slice(start, stop - start).to_pylist()
    )
    return rows


def tensors(columns: dict[str, np.ndarray]) -> list[triton.InferInput]:
    inputs = []
    for name, values in columns.items():
        tensor = triton.InferInput(name, list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def with_triton(
    server: RunningServer, call: Callable[[triton.InferenceServerClient], T]
) -> T:
    """`call` on a tritonclient connected to `server`, in a thread."""

    def blocking() -> T:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        try:
            return call(client)
        finally:
            client.close()

    return await asyncio.to_thread(blocking)


async def triton_refusal(
    server: RunningServer, call: Callable[[triton.InferenceServerClient], Any]
) -> InferenceServerException:
    """The exception tritonclient raises for `call`, which must fail."""

    def failing(client: triton.InferenceServerClient) -> InferenceServerException:
        try:
            call(client)
        except InferenceServerException as error:
            return error
        raise AssertionError("the call succeeded")

    return await with_triton(server, failing)
