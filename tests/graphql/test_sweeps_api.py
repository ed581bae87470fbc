"""Sweeps through GraphQL, with a real arq worker running their trials: `createSweep` and every
bad input it refuses whole, the `Sweep` node (trials, best trial, history, importances, curves,
promotion), `cancelSweep`, `promoteSweepTrial` and its grants, `sweepEvents`, and the audit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aiaas.core.config import Config
from aiaas.core.identity.access import ProjectRole
from aiaas.core.platform import Platform
from aiaas.core.training import SWEEP_STREAM
from aiaas.graphql.relay import from_global_id, to_global_id
from serving_support import upload, wine_table
from support import (
    Account,
    Team,
    audit_mark,
    data_of,
    error_codes,
    events_since,
    graphql,
    new_team,
    poll_until,
    subscription_results,
)
from sweep_support import running_worker

FIXED = {"epochs": 3, "batch_size": 32, "patience": 0}

CREATE = """
mutation($input: CreateSweepInput!) {
  createSweep(input: $input) {
    __typename
    ... on SweepSuccess { sweep { id state nTrials parallelism sampler pruner
                                  objective { metric direction } searchSpace { name kind } } }
    ... on InvalidInputError { message fieldErrors { field message } }
  }
}
"""

SWEEP = """
query($id: ID!) {
  node(id: $id) {
    ... on Sweep {
      state reason bestTrialNumber promoteTo
      trials { number state value params prunedAtEpoch job { id state } modelVersion { id } }
      bestTrial { number value modelVersion { id aliases } }
      history { number value bestValue }
      importances { name importance }
      curves { number values { epoch value } }
      promotedVersion { id aliases }
      datasetVersion { id }
    }
  }
}
"""

PROJECT_SWEEPS = """
query($slug: String!) { project(slug: $slug) { sweeps(first: 50) { nodes { id state } } } }
"""


@pytest.fixture(scope="module")
async def team(platform: Platform) -> Team:
    return await new_team(
        platform, "sweeping", (ProjectRole.VIEWER, ProjectRole.DEVELOPER, ProjectRole.MAINTAINER)
    )


@pytest.fixture(scope="module")
async def worker(config: Config) -> AsyncIterator[None]:
    async with running_worker(config):
        yield


@pytest.fixture(scope="module")
async def wine(platform: Platform, team: Team, tmp_path_factory: pytest.TempPathFactory) -> str:
    developer = team.members[ProjectRole.DEVELOPER].principal
    directory = tmp_path_factory.mktemp("wine")
    version = await upload(platform, developer, team.project_id, wine_table(), "wine", directory)
    return to_global_id("DatasetVersion", version.id)


def sweep_input(version: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "datasetVersion": version,
        "trainer": "tabular-classifier",
        "target": "cultivar",
        "hyperparameters": FIXED,
        "searchSpace": [
            {"name": "learning_rate", "low": 0.0001, "high": 0.03, "log": True},
            {"name": "hidden_size", "choices": [8, 32]},
        ],
        "objective": {"metric": "accuracy"},
        "nTrials": 3,
        "parallelism": 2,
        "modelName": f"wine-{uuid.uuid4().hex[:8]}",
    }
    values.update(changes)
    return values


async def create(
    client: httpx.AsyncClient, account: Account, input: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    return await graphql(client, CREATE, {"input": input}, token=account.token)


async def sweep_ids(client: httpx.AsyncClient, team: Team) -> set[str]:
    data = data_of(
        await graphql(
            client,
            PROJECT_SWEEPS,
            {"slug": team.slug},
            token=team.token(ProjectRole.DEVELOPER),
        )
    )
    return {node["id"] for node in data["project"]["sweeps"]["nodes"]}


async def wait_for_end(client: httpx.AsyncClient, team: Team, sweep_id: str) -> dict[str, Any]:
    token = team.token(ProjectRole.DEVELOPER)
    found: dict[str, Any] = {}

    async def ended() -> bool:
        found.update(data_of(await graphql(client, SWEEP, {"id": sweep_id}, token=token))["node"])
        # A trial is settled just before its job's outcome is recorded: wait for both.
        jobs_ended = all(t["job"]["state"] not in {"QUEUED", "RUNNING"} for t in found["trials"])
        return bool(found["state"] != "RUNNING" and jobs_ended)

    assert await poll_until(ended, 240, 0.25) is not None, "the sweep did not end"
    return found


BAD_INPUTS = {
    "searchSpace.0.name": {"searchSpace": [{"name": "no_such_knob", "low": 1, "high": 2}]},
    "searchSpace.0.high": {
        "searchSpace": [{"name": "learning_rate", "low": 0.001, "high": 1000.0, "log": True}]
    },
    "searchSpace.0.choices.1": {"searchSpace": [{"name": "hidden_size", "choices": [8, 99999]}]},
    "objective.metric": {"objective": {"metric": "r2"}},
    "parallelism": {"nTrials": 2, "parallelism": 3},
    "sampler": {"sampler": "CMA_ES"},
    "validationFraction": {"validationFraction": 0.0},
    "trainer": {"trainer": "no-such-trainer"},
}


@pytest.mark.parametrize("field", sorted(BAD_INPUTS))
async def test_a_bad_request_is_refused_whole_and_creates_nothing(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: str, field: str
) -> None:
    before = await sweep_ids(client, team)
    mark = await audit_mark(platform)
    body = data_of(
        await create(
            client, team.members[ProjectRole.DEVELOPER], sweep_input(wine, **BAD_INPUTS[field])
        )
    )
    result = body["createSweep"]
    assert result["__typename"] == "InvalidInputError", result
    assert field in {error["field"] for error in result["fieldErrors"]}, result
    assert await sweep_ids(client, team) == before
    assert ("sweep.create", "success") not in await events_since(platform, mark)


async def test_a_sweep_runs_promotes_its_best_trial_and_reports_on_itself(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: str, worker: None
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    mark = await audit_mark(platform)
    created = data_of(await create(client, developer, sweep_input(wine, promoteTo="candidate")))
    sweep = created["createSweep"]["sweep"]
    assert sweep["state"] == "RUNNING"
    assert sweep["objective"] == {"metric": "accuracy", "direction": "MAXIMIZE"}
    assert sweep["sampler"] == "TPE" and sweep["pruner"] == "NONE"
    assert [d["kind"] for d in sweep["searchSpace"]] == ["float", "categorical"]
    assert sweep["id"] in await sweep_ids(client, team)

    ended = await wait_for_end(client, team, sweep["id"])
    assert ended["state"] == "SUCCEEDED", ended["reason"]
    trials = ended["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert {t["state"] for t in trials} == {"COMPLETE"}
    assert {t["job"]["state"] for t in trials} == {"SUCCEEDED"}
    best = max(trials, key=lambda t: (t["value"], -t["number"]))
    assert ended["bestTrial"]["number"] == best["number"] == ended["bestTrialNumber"]
    assert ended["promotedVersion"]["id"] == best["modelVersion"]["id"]
    assert "candidate" in ended["promotedVersion"]["aliases"]
    values = [point["bestValue"] for point in ended["history"]]
    assert values == sorted(values) and len(values) == 3
    assert [curve["number"] for curve in ended["curves"]] == [0, 1, 2]
    assert [point["epoch"] for point in ended["curves"][0]["values"]] == [1, 2, 3]
    assert {i["name"] for i in ended["importances"]} <= {"learning_rate", "hidden_size"}
    actions = await events_since(platform, mark)
    assert ("sweep.create", "success") in actions
    assert actions.count(("training.submit", "success")) == 3
    assert ("model.set_alias", "success") in actions

    # Its events replay whole, in order, and end with its state.
    document = """
    subscription($id: ID!) {
      sweepEvents(sweepId: $id) { cursor type state trialNumber trialState value job alias }
    }"""
    events = await subscription_results(
        platform, developer.token, document, {"id": sweep["id"]}, "sweepEvents"
    )
    kinds = [event["type"] for event in events]
    assert kinds[0] == "state" and events[0]["state"] == "RUNNING"
    assert kinds.count("trial_started") == 3 and kinds.count("trial_finished") == 3
    assert kinds.count("intermediate") == 9  # each trial's objective, at each of 3 epochs
    assert kinds[-2:] == ["promoted", "state"] and events[-1]["state"] == "SUCCEEDED"
    # From a cursor, only what came after it.
    later = await subscription_results(
        platform,
        developer.token,
        document.replace("$id: ID!", "$id: ID!, $after: String").replace(
            "sweepId: $id", "sweepId: $id, after: $after"
        ),
        {"id": sweep["id"], "after": events[-3]["cursor"]},
        "sweepEvents",
    )
    assert [event["cursor"] for event in later] == [e["cursor"] for e in events[-2:]]
    # Once its stream is gone, it still ends, with the state PostgreSQL holds.
    _, sweep_uuid = from_global_id(sweep["id"])
    await platform.redis.delete(SWEEP_STREAM.key(sweep_uuid))
    gone = await subscription_results(
        platform, developer.token, document, {"id": sweep["id"]}, "sweepEvents"
    )
    assert [(e["type"], e["state"]) for e in gone] == [("state", "SUCCEEDED")]

    # Promoting another trial moves the alias; production needs maintainer.
    other = next(t for t in trials if t["number"] != best["number"])
    promote = """
    mutation($id: ID!, $alias: String!, $trial: Int) {
      promoteSweepTrial(id: $id, alias: $alias, trialNumber: $trial) {
        __typename
        ... on PromoteSweepTrialSuccess { modelVersion { id aliases } }
        ... on ConflictError { message }
      }
    }"""
    moved = data_of(
        await graphql(
            client,
            promote,
            {"id": sweep["id"], "alias": "candidate", "trial": other["number"]},
            token=developer.token,
        )
    )["promoteSweepTrial"]
    assert moved["modelVersion"]["id"] == other["modelVersion"]["id"]
    _, body = await graphql(
        client, promote, {"id": sweep["id"], "alias": "production"}, token=developer.token
    )
    assert error_codes(body) == ["FORBIDDEN"], body
    maintainer = team.members[ProjectRole.MAINTAINER]
    promoted = data_of(
        await graphql(
            client, promote, {"id": sweep["id"], "alias": "production"}, token=maintainer.token
        )
    )["promoteSweepTrial"]
    assert promoted["__typename"] == "PromoteSweepTrialSuccess", promoted
    assert "production" in promoted["modelVersion"]["aliases"]


async def test_a_developer_may_not_have_a_sweep_promote_to_production(
    client: httpx.AsyncClient, team: Team, wine: str
) -> None:
    before = await sweep_ids(client, team)
    _, body = await create(
        client, team.members[ProjectRole.DEVELOPER], sweep_input(wine, promoteTo="production")
    )
    assert error_codes(body) == ["FORBIDDEN"], body
    assert await sweep_ids(client, team) == before


async def test_cancelling_a_sweep_cancels_its_running_trials(
    platform: Platform, client: httpx.AsyncClient, team: Team, wine: str, worker: None
) -> None:
    developer = team.members[ProjectRole.DEVELOPER]
    long_trials = sweep_input(wine, hyperparameters={**FIXED, "epochs": 2000}, nTrials=5)
    sweep = data_of(await create(client, developer, long_trials))["createSweep"]["sweep"]
    cancel = """
    mutation($id: ID!) {
      cancelSweep(id: $id) { __typename ... on SweepSuccess { sweep { state cancelRequestedAt } } }
    }"""
    result = data_of(await graphql(client, cancel, {"id": sweep["id"]}, token=developer.token))
    assert result["cancelSweep"]["sweep"]["cancelRequestedAt"] is not None
    ended = await wait_for_end(client, team, sweep["id"])
    assert ended["state"] == "CANCELLED"
    assert len(ended["trials"]) == 2
    assert {t["job"]["state"] for t in ended["trials"]} == {"CANCELLED"}
    again = data_of(await graphql(client, cancel, {"id": sweep["id"]}, token=developer.token))
    assert again["cancelSweep"]["__typename"] == "ConflictError"
