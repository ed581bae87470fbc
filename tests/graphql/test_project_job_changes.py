"""`projectJobChanges` against a real `aiaas serve`: a project's training jobs as their states
change, announced by the processes that change them (here the test's, as a worker's would be),
to members who may read the project's jobs, and to no one else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection

from aiaas.core.config import Config
from aiaas.core.identity import members, projects
from aiaas.core.identity.access import ProjectRole
from aiaas.core.identity.projects import Project
from aiaas.core.job_announcements import project_jobs_channel
from aiaas.core.job_submission import hand_committed_job_to_queue
from aiaas.core.jobs import Job, JobState, claim_job, finish_job, insert_job
from aiaas.core.platform import Platform
from aiaas.core.training import TRAINING_JOB
from aiaas.graphql.relay import to_global_id
from support import (
    RunningServer,
    UserWithToken,
    acknowledged_socket,
    messages_until_closed,
    poll_until,
    ready_server,
    receive,
    send,
    unique,
    user_with_token,
)

pytestmark = pytest.mark.slow

CHANGES = """
subscription Changes($project: ID!) {
  projectJobChanges(project: $project) { id state attempt reason }
}
"""


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    async with ready_server(config, tmp_path_factory) as running:
        yield running


@pytest.fixture
async def owner(platform: Platform) -> UserWithToken:
    return await user_with_token(platform, unique("owner"))


@pytest.fixture
async def project(platform: Platform, owner: UserWithToken) -> Project:
    return await projects.create_project(
        platform, owner.principal, slug=unique("jobs"), name="Jobs"
    )


async def subscribed(
    server: RunningServer, platform: Platform, token: str, project: Project
) -> ClientConnection:
    """A socket subscribed to the project's job changes, once the server listens (the protocol
    has no "subscribed" message, and a change announced before would reach no one)."""
    websocket = await acknowledged_socket(server, token)
    await send(
        websocket,
        {
            "id": "changes",
            "type": "subscribe",
            "payload": {
                "query": CHANGES,
                "variables": {"project": to_global_id("Project", project.id)},
            },
        },
    )

    async def listening() -> bool:
        counts = await platform.redis.pubsub_numsub(project_jobs_channel(project.id))
        return bool(counts) and counts[0][1] >= 1

    assert await poll_until(listening, timeout_s=5) is not None, "the server never subscribed"
    return websocket


TRAINING_PAYLOAD = {
    "trainer": "tabular-classifier",
    "target": "label",
    "features": ["x"],
    "hyperparameters": {"epochs": 1},
    "validation_fraction": 0.2,
    "seed": 0,
    "model_name": "model",
    "dataset_version_id": str(uuid.uuid4()),
}
"""A training job's payload as submission stores it; nothing runs it here."""


async def submitted(platform: Platform, project: Project, kind: str = TRAINING_JOB) -> Job:
    """A job inserted and handed to the queue as a submission does (no worker takes it here)."""
    payload = TRAINING_PAYLOAD if kind == TRAINING_JOB else {}
    async with platform.metadata.transaction() as connection:
        job = await insert_job(
            connection, project_id=project.id, kind=kind, payload=payload, created_by=None
        )
    await hand_committed_job_to_queue(platform, job)
    return job


async def test_a_member_sees_a_training_job_submitted_start_and_end(
    server: RunningServer, platform: Platform, owner: UserWithToken, project: Project
) -> None:
    websocket = await subscribed(server, platform, owner.token.secret, project)
    # Another kind of job of the project is not a training job: not announced here.
    await submitted(platform, project, kind="validation")
    job = await submitted(platform, project)
    assert await claim_job(platform, job.id, "worker-a", stale_after_s=30) is not None
    assert await finish_job(platform, job.id, "worker-a", JobState.SUCCEEDED, "trained")

    changes = [await receive(websocket) for _ in range(3)]
    await websocket.close()

    seen = [change["payload"]["data"]["projectJobChanges"] for change in changes]
    assert {change["id"] for change in seen} == {to_global_id("TrainingJob", job.id)}
    assert [change["state"] for change in seen] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert seen[-1]["reason"] == "trained"


async def test_no_one_outside_the_project_hears_its_jobs(
    server: RunningServer, platform: Platform, owner: UserWithToken, project: Project
) -> None:
    outsider = await user_with_token(platform, unique("outsider"))
    spy = await acknowledged_socket(server, outsider.token.secret)
    await send(
        spy,
        {
            "id": "spy",
            "type": "subscribe",
            "payload": {
                "query": CHANGES,
                "variables": {"project": to_global_id("Project", project.id)},
            },
        },
    )
    refusal = await receive(spy)
    await submitted(platform, project)
    after, _ = await messages_until_closed(spy, timeout_s=1)
    await spy.close()

    assert refusal["type"] == "error", refusal
    assert [error["extensions"]["code"] for error in refusal["payload"]] == ["NOT_FOUND"]
    assert after == []


async def test_a_member_removed_from_the_project_hears_no_further_changes(
    server: RunningServer, platform: Platform, owner: UserWithToken, project: Project
) -> None:
    viewer = await user_with_token(platform, unique("viewer"))
    await members.add_member(
        platform,
        owner.principal,
        project.id,
        username=viewer.principal.username,
        role=ProjectRole.VIEWER,
    )
    websocket = await subscribed(server, platform, viewer.token.secret, project)
    await submitted(platform, project)
    heard = await receive(websocket)
    await members.remove_member(
        platform, owner.principal, project.id, username=viewer.principal.username
    )

    async def server_refuses_viewer() -> bool:
        # The server's policy reloads from the change's notification; a fresh subscription
        # refused is the sign that it has.
        probe = await acknowledged_socket(server, viewer.token.secret)
        await send(
            probe,
            {
                "id": "probe",
                "type": "subscribe",
                "payload": {
                    "query": CHANGES,
                    "variables": {"project": to_global_id("Project", project.id)},
                },
            },
        )
        answer = await receive(probe)
        await probe.close()
        return answer["type"] == "error"

    assert await poll_until(server_refuses_viewer, timeout_s=5) is not None
    later = await submitted(platform, project)
    messages, _ = await messages_until_closed(websocket, timeout_s=2)
    await websocket.close()

    assert heard["payload"]["data"]["projectJobChanges"]["state"] == "QUEUED"
    assert str(to_global_id("TrainingJob", later.id)) not in str(messages), messages
