"""`aiaas sweep create` and `aiaas sweeps list|show|follow|cancel|promote`: hyperparameter
sweeps through the SDK (`aiaas.client.sweeps`).

    aiaas sweep create wine -p fraud -t tabular-classifier --target label \\
        --search 'learning_rate=1e-4..1e-1:log' --search 'hidden_size=32,64,128' \\
        --objective accuracy --trials 20 --parallelism 4 --set epochs=5 --follow

A `--search` is `NAME=LOW..HIGH` (a range, `:log` for a log scale, `:step=S` for steps),
`NAME=A,B,C` (choices, each JSON where it parses, else text), or `NAME` alone (every value of a
flag, or of a word with declared choices).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import click

from aiaas.cli.common import fail
from aiaas.cli.user_common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    connect,
    emit,
    emit_record,
    json_option,
    plain,
    project_option,
    user_command,
)
from aiaas.cli.user_training import parse_params
from aiaas.client.errors import JobFailedError
from aiaas.client.generated.schema_types import SweepTrialState
from aiaas.client.sweeps import Sweep, SweepTrial

_SWEEP_COLUMNS = ("id", "state", "trainer", "objective", "trials", "best", "reason")
_DURATION = re.compile(r"^(\d+(?:\.\d*)?)\s*(s|m|h)?$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _range(spec: str, text: str) -> dict[str, Any]:
    bounds, *modifiers = text.split(":")
    low, _, high = bounds.partition("..")
    try:
        dimension: dict[str, Any] = {"low": float(low), "high": float(high)}
    except ValueError:
        fail(f"--search {spec!r}: LOW and HIGH of LOW..HIGH must be numbers", EXIT_USAGE)
    for modifier in modifiers:
        name, equals, value = modifier.partition("=")
        if modifier == "log":
            dimension["log"] = True
        elif name == "step" and equals:
            try:
                dimension["step"] = float(value)
            except ValueError:
                fail(f"--search {spec!r}: step={value} is not a number", EXIT_USAGE)
        else:
            fail(f"--search {spec!r}: {modifier!r} is neither log nor step=S", EXIT_USAGE)
    return dimension


def parse_search(specs: Sequence[str]) -> dict[str, Any]:
    """`--search`es as the SDK's search space: name -> a range (a dict) or choices (a list).
    A malformed one exits 2 in one line, before anything is sent."""
    space: dict[str, Any] = {}
    for spec in specs:
        name, equals, text = (part.strip() for part in spec.partition("="))
        if not name or (equals and not text):
            fail(f"--search {spec!r} is not NAME=LOW..HIGH, NAME=A,B,C or NAME", EXIT_USAGE)
        dimension: dict[str, Any] | list[Any] = {}
        if ".." in text:
            dimension = _range(spec, text)
        elif equals:
            choices = [choice.strip() for choice in text.split(",")]
            if not all(choices):
                fail(f"--search {spec!r}: an empty choice", EXIT_USAGE)
            dimension = [_json_or_text(choice) for choice in choices]
        if name in space:
            fail(f"--search {spec!r}: {name} is searched twice", EXIT_USAGE)
        space[name] = dimension
    return space


def parse_objective(text: str) -> str | tuple[str, str]:
    """`METRIC` (judged in its usual direction) or `METRIC:maximize|minimize`."""
    metric, colon, direction = text.partition(":")
    if not metric or (colon and direction not in ("maximize", "minimize")):
        fail(f"--objective {text!r} is not METRIC or METRIC:maximize|minimize", EXIT_USAGE)
    return (metric, direction) if colon else metric


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m` or `1.5h`, as seconds."""
    found = _DURATION.match(text.strip())
    if found is None:
        fail(f"--time-budget {text!r} is not a duration like 90s, 10m or 1h", EXIT_USAGE)
    return float(found[1]) * _SECONDS[found[2] or "s"]


def parse_dataset(reference: str) -> tuple[str, int | None]:
    """`DATASET` (its latest version) or `DATASET:VERSION`."""
    name, colon, number = reference.rpartition(":")
    if not colon:
        return reference, None
    if not name or not number.isdigit():
        fail(f"{reference!r} is not DATASET or DATASET:VERSION (a number)", EXIT_USAGE)
    return name, int(number)


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _trial_text(trial: SweepTrial | None, sweep: Sweep) -> str:
    if trial is None:
        return ""
    value = "" if trial.value is None else f" {sweep.metric}={_value(trial.value)}"
    return f"#{trial.number}{value} {json.dumps(trial.params, separators=(',', ':'))}"


def _finished_count(sweep: Sweep) -> str:
    finished = [trial for trial in sweep.trials if trial.state is not SweepTrialState.RUNNING]
    return f"{len(finished)}/{sweep.n_trials}"


def _objective(sweep: Sweep) -> str:
    return f"{sweep.metric} ({sweep.direction.value.lower()})"


def _sweep_row(sweep: Sweep) -> tuple[Any, ...]:
    best = sweep.best_trial
    best_value = _value(best.value) if best is not None else ""
    finished = _finished_count(sweep)
    return (
        sweep.id,
        sweep.state,
        sweep.trainer,
        _objective(sweep),
        finished,
        best_value,
        sweep.reason,
    )


def _data(sweep: Sweep, **more: Any) -> dict[str, Any]:
    """`sweep` as JSON holds it, with its best trial."""
    return {**plain(sweep), "best_trial": plain(sweep.best_trial), **plain(more)}


def _show_sweep(sweep: Sweep, as_json: bool) -> None:
    fields = [
        ("id", sweep.id),
        ("state", sweep.state),
        ("trainer", sweep.trainer),
        ("target", sweep.target),
        ("objective", _objective(sweep)),
        ("trials", _finished_count(sweep)),
        ("parallelism", sweep.parallelism),
        ("best trial", _trial_text(sweep.best_trial, sweep)),
        ("model", sweep.model_name),
        ("promoted version", sweep.promoted_version_id),
        ("reason", sweep.reason),
    ]
    emit_record(_data(sweep), as_json, fields, "sweep")


def _follow(sweep: Sweep, as_json: bool) -> None:
    """Follow `sweep` to its end with a progress bar of trials on stderr, then show it (its
    best trial among); exit 1 unless it SUCCEEDED."""
    try:
        sweep.wait(progress=True)
    except JobFailedError as exc:
        _show_sweep(sweep, as_json)
        fail(str(exc), EXIT_REFUSED)
    _show_sweep(sweep, as_json)


@click.group()
def sweep() -> None:
    """Start a hyperparameter sweep (`aiaas sweeps` lists and manages them)."""


@sweep.command("create")
@click.argument("dataset", metavar="DATASET[:VERSION]")
@project_option
@click.option("--trainer", "-t", required=True, help="The trainer, e.g. tabular-classifier.")
@click.option("--target", required=True, help="The column to predict.")
@click.option("--feature", "features", multiple=True, help="A feature column (default: all).")
@click.option(
    "--search",
    "searches",
    multiple=True,
    required=True,
    metavar="NAME=LOW..HIGH[:log]|NAME=A,B,C",
    help="A hyperparameter to search: a range (:log for a log scale, :step=S for steps), "
    "choices, or NAME alone for every value of a flag.",
)
@click.option(
    "--objective",
    required=True,
    metavar="METRIC[:maximize|minimize]",
    help="A figure of the validation split, e.g. accuracy or rmse:minimize.",
)
@click.option("--trials", "n_trials", type=int, default=20, show_default=True, help="Trials.")
@click.option("--parallelism", type=int, default=1, show_default=True, help="Trials at once.")
@click.option("--time-budget", metavar="DURATION", help="No trial starts after it: 90s, 10m, 1h.")
@click.option("--sampler", type=click.Choice(["tpe", "random", "cma-es"]), default="tpe")
@click.option(
    "--pruner",
    type=click.Choice(["none", "median", "successive-halving", "hyperband"]),
    default="none",
)
@click.option(
    "--param",
    "--set",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A fixed hyperparameter, every trial's; VALUE is JSON where it parses, else text.",
)
@click.option("--promote-to", metavar="ALIAS", help="Move ALIAS to the best trial's version.")
@click.option("--model-name", help="The model to register into (default: the dataset's name).")
@click.option("--seed", type=int, help="The seed of the sampler and of every trial.")
@click.option("--validation-fraction", type=float, help="The rows held out to judge trials.")
@click.option("--follow", "-f", is_flag=True, help="Follow it to its end with a progress bar.")
@json_option
@user_command
def create_sweep(
    dataset: str,
    project: str,
    searches: tuple[str, ...],
    objective: str,
    time_budget: str | None,
    params: tuple[str, ...],
    features: tuple[str, ...],
    follow: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Search a trainer's hyperparameters on a dataset's latest version (or DATASET:VERSION);
    with --follow, exit non-zero unless the sweep succeeds."""
    name, number = parse_dataset(dataset)
    space, goal = parse_search(searches), parse_objective(objective)
    budget = parse_duration(time_budget) if time_budget is not None else None
    options.update(
        hyperparameters=parse_params(params), features=list(features) or None, time_budget=budget
    )
    given = {key: value for key, value in options.items() if value is not None}
    with connect() as client:
        handle = client.project_handle(project)
        found = (
            handle.latest_version(name) if number is None else handle.dataset_version(name, number)
        )
        created = handle.create_sweep(found, search_space=space, objective=goal, **given)
        if follow:
            _follow(created, as_json)
        else:
            _show_sweep(created, as_json)


@click.group()
def sweeps() -> None:
    """Hyperparameter sweeps: list a project's, show, follow, cancel one by its id, or promote
    one's trial."""


@sweeps.command("list")
@project_option
@json_option
@user_command
def list_sweeps(project: str, as_json: bool) -> None:
    """A project's sweeps, newest first."""
    with connect() as client:
        found = client.project_handle(project).sweeps()
    emit([_data(s) for s in found], as_json, _SWEEP_COLUMNS, [_sweep_row(s) for s in found])


@sweeps.command("show")
@click.argument("sweep_id")
@json_option
@user_command
def show_sweep(sweep_id: str, as_json: bool) -> None:
    """Sweep SWEEP_ID as it is now: its trials, best trial and hyperparameter importances."""
    with connect() as client:
        found = client.sweep(sweep_id)
        importances = found.importances
    if as_json:
        click.echo(json.dumps(_data(found, importances=importances), indent=2))
        return
    _show_sweep(found, as_json)
    rows = [
        (
            t.number,
            t.state,
            _value(t.value),
            t.params,
            t.pruned_at_epoch,
            t.job_id,
            t.model_version_id,
        )
        for t in found.trials
    ]
    columns = ("trial", "state", found.metric, "params", "pruned at epoch", "job", "version")
    emit(found.trials, as_json, columns, rows, title="trials")
    ranked = [(name, f"{value:.3f}") for name, value in importances.items()]
    emit(importances, as_json, ("hyperparameter", "importance"), ranked, title="importances")


@sweeps.command("follow")
@click.argument("sweep_id")
@json_option
@user_command
def follow_sweep(sweep_id: str, as_json: bool) -> None:
    """Follow sweep SWEEP_ID to its end; exit non-zero unless it succeeds."""
    with connect() as client:
        _follow(client.sweep(sweep_id), as_json)


@sweeps.command("cancel")
@click.argument("sweep_id")
@json_option
@user_command
def cancel_sweep(sweep_id: str, as_json: bool) -> None:
    """Cancel sweep SWEEP_ID: no more trials start, and the running ones are cancelled."""
    with connect() as client:
        _show_sweep(client.sweep(sweep_id).cancel(), as_json)


@sweeps.command("promote")
@click.argument("sweep_id")
@click.argument("alias")
@click.option("--trial", "trial_number", type=int, help="This trial's version, not the best's.")
@json_option
@user_command
def promote_sweep(sweep_id: str, alias: str, trial_number: int | None, as_json: bool) -> None:
    """Point ALIAS of sweep SWEEP_ID's model at its best trial's version (or --trial N's)."""
    with connect() as client:
        found = client.sweep(sweep_id)
        version = found.promote(alias, trial_number)
    best = found.best_trial
    chosen = trial_number if trial_number is not None else best.number if best else None
    fields = [
        ("model", version.model_name),
        ("version", version.number),
        ("aliases", ", ".join(version.aliases)),
        ("trial", chosen),
        ("id", version.id),
    ]
    emit_record(version, as_json, fields, f"{alias} of model {version.model_name}")
