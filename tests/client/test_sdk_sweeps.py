"""Sweeps through the SDK against a real `aiaas serve` and a real `aiaas worker`: a sweep of tiny
wine trainings created from a project and waited for (with and without its progress bar of
trials), read back with its trials, best trial, history and importances, found by id and in its
project's list, its events replayed from a cursor without a gap or a duplicate; a trial's version
promoted (the best by default, another by number); a sweep cancelled and its wait failing; and
refused requests raising the SDK's typed error that names each field, nothing created then."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from aiaas.client import Client, DatasetVersion, Sweep, SweepTrial
from aiaas.client.errors import ConflictError, InvalidInputError, JobFailedError, NotFoundError
from aiaas.client.generated.schema_types import ObjectiveDirection, SweepState, SweepTrialState
from serving_support import wine_table

pytestmark = pytest.mark.slow

FIXED = {"epochs": 2, "batch_size": 32, "patience": 0}
SPACE = {"learning_rate": {"low": 1e-4, "high": 3e-2, "log": True}, "hidden_size": [8, 32]}


@pytest.fixture(scope="module")
def project_slug(client: Client) -> str:
    slug = f"sdk-sweeps-{uuid.uuid4().hex[:8]}"
    client.create_project(slug, name="SDK sweeps")
    return slug


@pytest.fixture(scope="module")
def wine(client: Client, project_slug: str) -> DatasetVersion:
    return client.project(project_slug).upload(wine_table(), name="wine", progress=False)


def tiny_sweep(client: Client, project_slug: str, wine: DatasetVersion, **changes: object) -> Sweep:
    options: dict[str, object] = {
        "trainer": "tabular-classifier",
        "target": "cultivar",
        "search_space": SPACE,
        "objective": "accuracy",
        "hyperparameters": FIXED,
        "n_trials": 3,
        "parallelism": 2,
        "model_name": f"wine-{uuid.uuid4().hex[:8]}",
        **changes,
    }
    return client.project(project_slug).create_sweep(wine, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finished(client: Client, project_slug: str, wine: DatasetVersion) -> Sweep:
    """A sweep of three trials, two at a time, that moves `tuned` to its best trial's version,
    waited for without a progress bar."""
    sweep = tiny_sweep(client, project_slug, wine, promote_to="tuned", sampler="random", seed=7)
    assert sweep.state is SweepState.RUNNING
    assert (sweep.n_trials, sweep.parallelism, sweep.promote_to) == (3, 2, "tuned")
    assert sweep.wait(progress=False, timeout=300) is sweep
    return sweep


def test_a_waited_sweep_succeeds_with_its_trials_and_its_best_one(
    client: Client, finished: Sweep
) -> None:
    assert finished.state is SweepState.SUCCEEDED, finished.reason
    assert (finished.metric, finished.direction) == ("accuracy", ObjectiveDirection.MAXIMIZE)
    assert [trial.number for trial in finished.trials] == [0, 1, 2]
    for trial in finished.trials:
        assert isinstance(trial, SweepTrial)
        assert trial.state is SweepTrialState.COMPLETE
        assert trial.value is not None and 0.0 <= trial.value <= 1.0
        assert set(trial.params) == {"learning_rate", "hidden_size"}
        assert trial.params["hidden_size"] in (8, 32)
        assert 1e-4 <= trial.params["learning_rate"] <= 3e-2
        assert trial.job_id is not None and trial.model_version_id is not None
        assert client.training_job(trial.job_id).state.value == "SUCCEEDED"
    best = finished.best_trial
    assert best is not None
    assert best.value == max(trial.value or 0.0 for trial in finished.trials)
    assert finished.best_trial_number == best.number
    # The sweep moved `tuned` to the best trial's version when it succeeded.
    assert finished.promoted_version_id == best.model_version_id


def test_its_history_and_importances_are_read_from_the_server(finished: Sweep) -> None:
    history = finished.history
    assert [point.number for point in history] == [0, 1, 2]
    values = [trial.value for trial in finished.trials]
    assert [point.value for point in history] == pytest.approx(values)
    running_best = [max(values[: index + 1]) for index in range(3)]  # type: ignore[type-var]
    assert [point.best_value for point in history] == pytest.approx(running_best)
    importances = finished.importances
    assert set(importances) <= {"learning_rate", "hidden_size"}
    assert all(value >= 0 for value in importances.values())
    assert list(importances.values()) == sorted(importances.values(), reverse=True)
    curves = finished.curves
    assert sorted(curves) == [0, 1, 2]
    assert all(sorted(curve) == [1, 2] for curve in curves.values())  # one value per epoch


def test_a_sweep_is_found_by_id_and_in_its_project(
    client: Client, project_slug: str, finished: Sweep
) -> None:
    found = client.sweep(finished.id)
    assert (found.id, found.state, found.trials) == (finished.id, finished.state, finished.trials)
    assert finished.id in [sweep.id for sweep in client.project(project_slug).sweeps()]
    with pytest.raises(NotFoundError):
        client.sweep(finished.trials[0].job_id or "")  # a training job's id is no sweep's


def test_its_events_replay_from_a_cursor_without_a_gap_or_a_duplicate(
    client: Client, finished: Sweep
) -> None:
    events = list(client.sweep(finished.id).events())
    cursors = [event.cursor for event in events]
    assert len(set(cursors)) == len(cursors)
    assert events[-1].type == "state" and events[-1].state is SweepState.SUCCEEDED
    finishes = [event for event in events if event.type == "trial_finished"]
    assert sorted(event.trial_number or 0 for event in finishes) == [0, 1, 2]
    assert {event.trial_state for event in finishes} == {SweepTrialState.COMPLETE}
    resumed = client.sweep(finished.id)
    resumed.cursor = cursors[2]  # as after a connection dropped past the third event
    assert [event.cursor for event in resumed.events()] == cursors[3:]


def test_the_best_trial_is_promoted_by_default_and_another_by_number(finished: Sweep) -> None:
    best = finished.best_trial
    assert best is not None
    version = finished.promote("staging")
    assert version.id == best.model_version_id
    assert "staging" in version.aliases and "tuned" in version.aliases
    other = next(trial for trial in finished.trials if trial.number != best.number)
    chosen = finished.promote("candidate", trial_number=other.number)
    assert chosen.id == other.model_version_id
    assert chosen.aliases == ["candidate"]
    with pytest.raises(ConflictError):
        finished.promote("candidate", trial_number=99)


def test_waiting_shows_a_progress_bar_of_trials_when_asked(
    client: Client, project_slug: str, wine: DatasetVersion, capfd: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep(
        client, project_slug, wine, objective=("loss", "minimize"), time_budget=timedelta(hours=1)
    )
    assert sweep.wait(progress=True, timeout=300) is sweep
    assert sweep.state is SweepState.SUCCEEDED, sweep.reason
    assert sweep.direction is ObjectiveDirection.MINIMIZE
    best = sweep.best_trial
    assert best is not None
    assert best.value == min(trial.value or 0.0 for trial in sweep.trials)
    err = capfd.readouterr().err
    assert "sweep tabular-classifier" in err
    assert "3/3 trials" in err
    assert f"best loss {best.value:.4g}" in err


def test_a_cancelled_sweep_ends_cancelled_and_waiting_for_it_fails(
    client: Client, project_slug: str, wine: DatasetVersion
) -> None:
    # No early stopping and many epochs: its trials are still running when it is cancelled.
    long = {**FIXED, "epochs": 500, "batch_size": 8}
    sweep = tiny_sweep(client, project_slug, wine, hyperparameters=long, n_trials=4)
    assert sweep.cancel() is sweep
    with pytest.raises(JobFailedError) as failed:
        sweep.wait(progress=False, timeout=120)
    assert "CANCELLED" in str(failed.value)
    assert failed.value.job is sweep
    assert sweep.state is SweepState.CANCELLED
    assert all(trial.state is not SweepTrialState.COMPLETE for trial in sweep.trials)
    with pytest.raises(ConflictError):
        sweep.cancel()


def test_refused_requests_raise_typed_errors_naming_each_field(
    client: Client, project_slug: str, wine: DatasetVersion
) -> None:
    project = client.project(project_slug)
    before = len(project.sweeps())
    with pytest.raises(InvalidInputError) as refused:
        tiny_sweep(client, project_slug, wine, n_trials=3, parallelism=5)
    assert "parallelism" in refused.value.field_errors
    # Every problem at once: a hyperparameter the trainer lacks, and a metric it reports not.
    unknown = {"nope": {"low": 1, "high": 2}}
    with pytest.raises(InvalidInputError) as refused:
        tiny_sweep(client, project_slug, wine, search_space=unknown, objective="r2")
    assert {"searchSpace.0.name", "objective.metric"} <= set(refused.value.field_errors)
    assert "searchSpace.0.name" in str(refused.value)
    # Refused before anything is sent: a sampler there is none of, a space of neither shape.
    with pytest.raises(InvalidInputError) as refused:
        tiny_sweep(client, project_slug, wine, sampler="annealing")
    assert "sampler" in refused.value.field_errors
    with pytest.raises(InvalidInputError) as refused:
        tiny_sweep(client, project_slug, wine, search_space={"hidden_size": 32})
    assert "searchSpace.hidden_size" in refused.value.field_errors
    assert len(project.sweeps()) == before
