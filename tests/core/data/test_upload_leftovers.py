"""An upload or a transformation that fails at any step, or whose caller goes away, leaves
nothing: no artifact, no version, no dataset, no scratch file. A failure (or a cancellation) is
injected right after each step, the real step having run; and a cancelled upload stops its
ingest process there and then."""

from __future__ import annotations

import asyncio
import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from aiaas.core.audit import AuditedChange
from aiaas.core.auth import Principal
from aiaas.core.data import transform_version, upload_version
from aiaas.core.data.datasets import changes
from aiaas.core.data.ingest_processes import INGEST_PROCESSES, IngestProcesses
from aiaas.core.governance import PendingArtifacts
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from support import bootstrap_admin_principal, footprint, poll_until


class InjectedFailureError(RuntimeError):
    """Raised right after a step ran, standing for whatever may fail there."""


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin: Principal) -> uuid.UUID:
    slug = f"leftovers-{uuid.uuid4().hex[:10]}"
    return (await create_project(platform, admin, slug=slug, name=slug)).id


def fresh_csv(directory: Path, rows: int = 5) -> Path:
    marker = uuid.uuid4().hex
    path = directory / f"{marker}.csv"
    path.write_text("id,label\n" + "".join(f"{n},{marker}-{n % 3}\n" for n in range(rows)))
    return path


def failing_after(step: Callable[..., Any], failure: type[BaseException]) -> Callable[..., Any]:
    """`step`, run for real, then `failure` raised as if the step had failed at its end."""
    if inspect.iscoroutinefunction(step):

        @functools.wraps(step)
        async def async_step(*args: Any, **kwargs: Any) -> Any:
            await step(*args, **kwargs)
            raise failure

        return async_step

    @functools.wraps(step)
    def sync_step(*args: Any, **kwargs: Any) -> Any:
        step(*args, **kwargs)
        raise failure

    return sync_step


UPLOAD_STEPS = {
    "hash": (changes, "sha256_of"),
    "lookup": (changes, "version_by_content"),
    "read": (IngestProcesses, "normalize"),
    "seal": (PendingArtifacts, "store_file"),
    "begin": (AuditedChange, "begin"),
    "dataset": (changes, "_dataset_for_update"),
    "record": (changes, "_record_version"),
}
FAILURES = {"failure": InjectedFailureError, "cancellation": asyncio.CancelledError}


async def assert_leaves_nothing(
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    step: tuple[object, str],
    failure: type[BaseException],
    operation: Callable[[], Awaitable[object]],
) -> None:
    """Run `operation` with `failure` raised right after `step` (an owner and the name of the
    step on it), and check it raised that and left the footprint as it was."""
    owner, name = step
    monkeypatch.setattr(owner, name, failing_after(getattr(owner, name), failure))
    before = await footprint(platform)

    with pytest.raises(failure):
        await operation()

    assert await footprint(platform) == before


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("step", UPLOAD_STEPS)
async def test_an_upload_that_fails_after_any_step_leaves_nothing(
    platform: Platform,
    admin: Principal,
    project_id: uuid.UUID,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    failure: str,
) -> None:
    source = fresh_csv(tmp_path)
    name = f"new-{uuid.uuid4().hex[:8]}"

    await assert_leaves_nothing(
        platform,
        monkeypatch,
        UPLOAD_STEPS[step],
        FAILURES[failure],
        lambda: upload_version(platform, admin, project_id, dataset_name=name, source=source),
    )


TRANSFORM_STEPS = {
    "read": (changes, "read_version_table"),
    "transform": (changes, "_transform_to_file"),
    "seal": (PendingArtifacts, "store_file"),
    "begin": (AuditedChange, "begin"),
    "lock": (changes, "lock_live_version"),
    "record": (changes, "_record_version"),
}
STEPS = [{"kind": "filter_rows", "expression": "id >= 1"}]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("step", TRANSFORM_STEPS)
async def test_a_transformation_that_fails_after_any_step_leaves_nothing(
    platform: Platform,
    admin: Principal,
    project_id: uuid.UUID,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    failure: str,
) -> None:
    added = await upload_version(
        platform, admin, project_id, dataset_name="to-clean", source=fresh_csv(tmp_path)
    )
    await assert_leaves_nothing(
        platform,
        monkeypatch,
        TRANSFORM_STEPS[step],
        FAILURES[failure],
        lambda: transform_version(platform, admin, added.version.id, STEPS),
    )


def ingest_children() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children()
        if "aiaas.core.data.tabular.ingest_child" in " ".join(child.cmdline())
    ]


async def test_a_cancelled_upload_stops_its_ingest_process_and_leaves_nothing(
    platform: Platform, admin: Principal, project_id: uuid.UUID, tmp_path: Path
) -> None:
    # Wide and long enough that reading it takes a few seconds: the cancellation comes while
    # the ingest process is at work on it.
    source = tmp_path / "slow.csv"
    with source.open("w") as handle:
        handle.write(",".join(f"c{column}" for column in range(40)) + "\n")
        for row in range(60_000):
            handle.write(",".join(f"v{row * 40 + column}" for column in range(40)) + "\n")
    await platform.service(INGEST_PROCESSES).close()  # no idle child: the upload starts its own
    before = await footprint(platform)
    upload = asyncio.create_task(
        upload_version(platform, admin, project_id, dataset_name="slow", source=source)
    )

    async def reading() -> bool:
        children = ingest_children()
        return bool(children) and any(child.cpu_percent(0.05) > 0 for child in children)

    assert await poll_until(reading, timeout_s=30), "the ingest process never started reading"
    [child] = ingest_children()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert await footprint(platform) == before
