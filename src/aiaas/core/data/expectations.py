"""Expectations: what a dataset's versions should satisfy, and the validators that check them.

Each expectation is a JSON object with a `kind`; the registered validator that claims the kind
(`aiaas_validators`) vets its arguments when the expectations are set, and checks it against a
version's table when the version is validated. Both the datasets (vetting) and the quality
reports (checking) use this module, which uses neither. Promotion gates are checks of the same
make, on model versions, and are vetted here too (`vet_checks`).

Every expectation takes `blocking` besides the arguments of its kind; `docs/reference.md` lists
both (`aiaas.core.arguments` says how they are vetted and named in errors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aiaas.core.arguments import (
    Argument,
    ArgumentType,
    KindShape,
    add_problem,
    path_of,
    refusal,
    shape_problems,
    unknown_key_problems,
)
from aiaas.core.validation import CheckResult, Validator

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

MAX_EXPECTATIONS = 200
BLOCKING = Argument(
    "blocking",
    ArgumentType.BOOLEAN,
    "Whether a failure keeps the version from being trained on; a check that is not blocking "
    "only lowers the quality score.",
    default="`true`",
    example=False,
)
EXPECTATION_ARGUMENTS = (BLOCKING,)
"""What every expectation takes besides `kind` and the arguments of its kind."""


def dataset_validators(
    platform: Platform, subject: str = "dataset-version"
) -> dict[str, Validator]:
    """Every registered validator of `subject` (dataset versions by default), by name."""
    validators = {
        spec.name: platform.validator(spec.name) for spec in platform.registries.validators
    }
    return {
        name: validator for name, validator in validators.items() if subject in validator.subjects()
    }


def validators_by_kind(
    platform: Platform, subject: str = "dataset-version"
) -> dict[str, tuple[str, Validator]]:
    """Every expectation kind, with the (name of the) validator that checks it."""
    kinds: dict[str, tuple[str, Validator]] = {}
    for name, validator in dataset_validators(platform, subject).items():
        for kind in validator.expectation_kinds():
            kinds.setdefault(kind, (name, validator))
    return kinds


def shapes_by_kind(kinds: Mapping[str, Validator]) -> dict[str, KindShape]:
    """The shape of each kind whose validator declares one (`Validator.kind_shapes`)."""
    return {
        kind: shape
        for kind, validator in kinds.items()
        for shape in validator.kind_shapes()
        if shape.kind == kind
    }


def vet_checks(
    family: str,
    checks: Any,
    kinds: Mapping[str, Validator],
    common: Sequence[Argument],
    *,
    columns: Mapping[str, str],
    limit: int,
) -> dict[str, str]:
    """The problems of a list of checks by path (`family` is the list's: `expectations`,
    `gates`): each must be an object of a known kind, with only the keys that its kind and
    `common` take, each of the right type; then its validator vets what a shape cannot, given
    the `columns` (name → type) of the dataset, or none."""
    if not isinstance(checks, list) or len(checks) > limit:
        return {family: f"must be a list of at most {limit} objects"}
    shapes = shapes_by_kind(kinds)
    problems: dict[str, str] = {}
    for index, check in enumerate(checks):
        where = f"{family}.{index}"
        if not isinstance(check, dict):
            problems[where] = "must be an object"
            continue
        kind = check.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            said = "required" if kind is None else f"unknown kind {kind!r}"
            problems[f"{where}.kind"] = f"{said}; known kinds: {', '.join(sorted(kinds))}"
            continue
        # The arguments every check of the family takes, as a shape of their own.
        found: list[str] = list(shape_problems(KindShape(kind, "", tuple(common)), check))
        shape = shapes.get(kind)
        if shape is not None:
            known = ["kind", *(a.name for a in shape.arguments), *(a.name for a in common)]
            found += unknown_key_problems(kind, check, known)
        found += kinds[kind].problems(check, columns)
        for problem in found:
            add_problem(problems, path_of(where, problem), problem)
    return problems


def vet_expectations(platform: Platform, expectations: Any, columns: Mapping[str, str]) -> None:
    """`InputError` listing every problem of every expectation, or nothing."""
    kinds = {kind: validator for kind, (_, validator) in validators_by_kind(platform).items()}
    problems = vet_checks(
        "expectations",
        expectations,
        kinds,
        EXPECTATION_ARGUMENTS,
        columns=columns,
        limit=MAX_EXPECTATIONS,
    )
    if problems:
        raise refusal("invalid expectations", problems)


def check_table(
    platform: Platform, table: pa.Table, expectations: list[dict[str, Any]]
) -> list[CheckResult]:
    """Run every validator over the table: its baseline checks, and the expectations of the
    kinds it claims. Runs in a worker thread."""
    kinds = validators_by_kind(platform)
    results: list[CheckResult] = []
    for name, validator in dataset_validators(platform).items():
        results += validator.baseline_checks(table)
        mine = [e for e in expectations if kinds.get(str(e.get("kind")), ("",))[0] == name]
        if mine:
            results += validator.validate(table, mine)
    # A kind nobody here can check (its plugin is missing on this worker) fails rather than
    # passing unseen: the dataset's owners declared it, so it must hold.
    for expectation in expectations:
        kind = str(expectation.get("kind"))
        if kind not in kinds:
            results.append(
                CheckResult(
                    name=kind,
                    kind=kind,
                    dimension="consistency",
                    passed=False,
                    failing_rows=max(table.num_rows, 1),
                    blocking=bool(expectation.get("blocking", True)),
                    message=f"no validator here checks expectations of kind {kind!r}",
                    examples=[],
                )
            )
    return results
