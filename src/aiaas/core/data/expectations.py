"""Expectations: what a dataset's versions should satisfy, and the validators that check them.

Each expectation is a JSON object with a `kind`; the registered validator that claims the kind
(`aiaas_validators`) vets its arguments when the expectations are set, and checks it against a
version's table when the version is validated. Both the datasets (vetting) and the quality
reports (checking) use this module, which uses neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aiaas.core.errors import InputError
from aiaas.core.validation import CheckResult, Validator

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

MAX_EXPECTATIONS = 200


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


def vet_expectations(platform: Platform, expectations: Any, columns: Mapping[str, str]) -> None:
    """`InputError` listing every problem of every expectation, or nothing."""
    if not isinstance(expectations, list) or len(expectations) > MAX_EXPECTATIONS:
        raise InputError(
            f"expectations must be a list of at most {MAX_EXPECTATIONS} objects",
            field_errors={"expectations": "not a list"},
        )
    kinds = validators_by_kind(platform)
    problems: dict[str, str] = {}
    for index, expectation in enumerate(expectations):
        if not isinstance(expectation, dict):
            problems[f"expectations.{index}"] = "must be an object"
            continue
        kind = expectation.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            problems[f"expectations.{index}"] = (
                f"unknown kind {kind!r}; known: {', '.join(sorted(kinds))}"
            )
            continue
        if not isinstance(expectation.get("blocking", True), bool):
            problems[f"expectations.{index}"] = "blocking must be true or false"
            continue
        found = kinds[kind][1].problems(expectation, columns)
        if found:
            problems[f"expectations.{index}"] = "; ".join(found)
    if problems:
        raise InputError("invalid expectations", field_errors=problems)


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
