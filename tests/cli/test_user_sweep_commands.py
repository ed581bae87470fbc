"""`aiaas sweep create` and `aiaas sweeps list|show|follow|cancel|promote` as real `aiaas`
processes against a real `aiaas serve` and `aiaas worker`, on tiny wine trainings: a sweep
created on a dataset's latest version and followed with its progress bar of trials to a zero exit
and its best trial, listed, shown with its trials and importances, as tables and as `--json`, a
trial's version promoted; a sweep of a numbered version cancelled and followed to a non-zero
exit; and each refusal one line and its exit code (a malformed `--search`, `--objective`,
`--time-budget` or `DATASET:VERSION` before anything is sent; what the server refuses after)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiaas.core.config import Config
from server_watch import Server, served_with_worker
from user_cli import Cli, assert_one_line_error, cli_of

pytestmark = pytest.mark.slow

TINY = ("--set", "epochs=2", "--set", "batch_size=32", "--param", "patience=0")


@pytest.fixture(scope="module")
async def server(config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    async with served_with_worker(config, tmp_path_factory, "sweep-cli") as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: Server, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return cli_of(server.running.base_url, admin_token, tmp_path_factory.mktemp("sweep-cli-config"))


@pytest.fixture(scope="module")
def project(cli: Cli) -> str:
    slug = f"sweep-{uuid.uuid4().hex[:8]}"
    assert cli("projects", "create", slug).returncode == 0
    return slug


def create(cli: Cli, project: str, dataset: str, *more: str) -> Any:
    return cli(
        *("sweep", "create", dataset, "--project", project),
        *("--trainer", "tabular-classifier", "--target", "label"),
        *("--search", "learning_rate=1e-4..3e-2:log", "--search", "hidden_size=8,32"),
        *("--trials", "3", "--parallelism", "2"),
        *more,
        timeout=600,
    )


@pytest.fixture(scope="module")
def followed(cli: Cli, project: str, uploaded: dict[str, Any]) -> dict[str, Any]:
    """A sweep of three trials on the latest version of `wine`, followed to its end."""
    result = create(
        cli, project, "wine", "--objective", "accuracy:maximize", *TINY, "--follow", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert "sweep tabular-classifier" in result.stderr  # the progress bar of trials
    assert "3/3 trials" in result.stderr
    sweep: dict[str, Any] = json.loads(result.stdout)
    return sweep


def test_a_followed_sweep_exits_0_with_its_best_trial(followed: dict[str, Any]) -> None:
    assert followed["state"] == "SUCCEEDED"
    assert (followed["metric"], followed["direction"]) == ("accuracy", "MAXIMIZE")
    assert [trial["state"] for trial in followed["trials"]] == ["COMPLETE"] * 3
    best = followed["best_trial"]
    assert best["value"] == max(trial["value"] for trial in followed["trials"])
    assert best["number"] == followed["best_trial_number"]
    fixed = {"epochs": 2, "batch_size": 32, "patience": 0}  # --set and --param alike
    assert followed["hyperparameters"].items() >= fixed.items()


def test_sweeps_are_listed_and_shown_as_tables_and_as_json(
    cli: Cli, project: str, followed: dict[str, Any]
) -> None:
    sweep_id = followed["id"]
    listed = cli.json("sweeps", "list", "--project", project)
    assert sweep_id in [sweep["id"] for sweep in listed]
    table = cli("sweeps", "list", "-p", project)
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if sweep_id in line]
    assert "SUCCEEDED" in row and "3/3" in row and "accuracy (maximize)" in row

    shown = cli.json("sweeps", "show", sweep_id)
    assert shown["best_trial"] == followed["best_trial"]
    assert set(shown["importances"]) <= {"learning_rate", "hidden_size"}
    assert [trial["number"] for trial in shown["trials"]] == [0, 1, 2]
    page = cli("sweeps", "show", sweep_id)
    assert page.returncode == 0, page.stderr
    for title in ("sweep", "trials", "importances", "best trial"):
        assert title in page.stdout
    best = followed["best_trial"]
    assert f"#{best['number']} accuracy={best['value']:.4g}" in page.stdout
    for trial in followed["trials"]:
        assert trial["job_id"] in page.stdout
    assert_one_line_error(cli("sweeps", "show", followed["trials"][0]["job_id"]), 1)


def test_a_trial_is_promoted_the_best_by_default(cli: Cli, followed: dict[str, Any]) -> None:
    best = followed["best_trial"]
    promoted = cli.json("sweeps", "promote", followed["id"], "staging")
    assert promoted["id"] == best["model_version_id"]
    assert "staging" in promoted["aliases"]
    other = next(t for t in followed["trials"] if t["number"] != best["number"])
    chosen = cli("sweeps", "promote", followed["id"], "candidate", "--trial", str(other["number"]))
    assert chosen.returncode == 0, chosen.stderr
    assert other["model_version_id"] in chosen.stdout and "candidate" in chosen.stdout
    missing = cli("sweeps", "promote", followed["id"], "candidate", "--trial", "99")
    assert "trial 99" in assert_one_line_error(missing, 1)


def test_a_cancelled_sweep_is_followed_to_a_non_zero_exit(
    cli: Cli, project: str, uploaded: dict[str, Any]
) -> None:
    # Version 1 by number; no early stopping and many epochs: still running when cancelled.
    long = ("--set", "epochs=500", "--set", "batch_size=8", "--set", "patience=0")
    queued = create(cli, project, "wine:1", "--objective", "accuracy", *long, "--json")
    assert queued.returncode == 0, queued.stderr
    sweep = json.loads(queued.stdout)
    assert sweep["state"] == "RUNNING"
    cancelled = cli("sweeps", "cancel", sweep["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    followed = cli("sweeps", "follow", sweep["id"], "--json", timeout=300)
    assert followed.returncode == 1, followed.stderr
    assert "Traceback" not in followed.stderr
    last = followed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sweep") and "CANCELLED" in last
    assert json.loads(followed.stdout)["state"] == "CANCELLED"
    again = cli("sweeps", "cancel", sweep["id"])
    assert_one_line_error(again, 1)


@pytest.mark.parametrize(
    ("dataset", "change", "named"),
    [
        ("wine", ("--search", "learning_rate=1e-4..oops:log"), "must be numbers"),
        ("wine", ("--search", "learning_rate=1e-4..1e-1:cubic"), "neither log nor step"),
        ("wine", ("--search", "hidden_size=8,,32"), "an empty choice"),
        ("wine", ("--search", "=8,32"), "NAME=LOW..HIGH"),
        ("wine", ("--search", "hidden_size=8,32"), "searched twice"),
        ("wine", ("--objective", "accuracy:upwards"), "METRIC:maximize|minimize"),
        ("wine", ("--time-budget", "soon"), "90s, 10m or 1h"),
        ("wine:latest", (), "DATASET:VERSION"),
    ],
)
def test_malformed_input_is_one_line_and_exits_2_before_anything_is_sent(
    cli: Cli, project: str, dataset: str, change: tuple[str, ...], named: str
) -> None:
    # The last --objective given wins: a malformed one replaces the good one.
    result = create(cli, project, dataset, "--objective", "accuracy", *change)
    assert named in assert_one_line_error(result, 2)


def test_what_the_server_refuses_is_one_line_and_exits_1(
    cli: Cli, project: str, uploaded: dict[str, Any]
) -> None:
    before = len(cli.json("sweeps", "list", "-p", project))
    too_parallel = create(cli, project, "wine", "--objective", "accuracy", "--parallelism", "5")
    assert "parallelism" in assert_one_line_error(too_parallel, 1)
    unknown = create(cli, project, "wine", "--objective", "accuracy", "--search", "nope=1..2")
    assert "searchSpace.2.name" in assert_one_line_error(unknown, 1)
    assert_one_line_error(create(cli, project, "wine:99", "--objective", "accuracy"), 1)
    assert_one_line_error(create(cli, project, "none", "--objective", "accuracy"), 1)
    assert len(cli.json("sweeps", "list", "-p", project)) == before  # nothing was created
