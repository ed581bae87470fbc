"""Promotion gates: the checks a model version must pass before an alias moves to it.

A model's gates are expectations, each of a kind that a validator of `model-version` subjects
checks (the built-in `promotion_gates` plugin checks `metric_threshold`), run against a one-row
table of the version's numeric metrics. Each gate guards the aliases it names, `production` when
it names none. `registry.set_model_alias` refuses a move that a gate fails, with its reason.

The rules for alias names live here rather than in the registry, which imports this module:
gates name aliases too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aiaas.core.data import validators_by_kind
from aiaas.core.errors import InputError
from aiaas.core.validation import CheckResult, Validator

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

ALIAS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
PROTECTED_ALIAS = "production"
"""Moving this alias needs `model:promote` (maintainers), not only `model:alias`; a gate that
names no aliases guards this one."""
MAX_GATES = 50


def gate_validators(platform: Platform) -> dict[str, Validator]:
    """Every gate kind, with the validator of model versions that checks it."""
    return {
        kind: validator
        for kind, (_, validator) in validators_by_kind(platform, "model-version").items()
    }


def metrics_table(metrics: Mapping[str, Any]) -> pa.Table:
    """A version's numeric metrics as a one-row table: what a gate validator checks."""
    numbers = {
        key: [float(value)]
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return pa.table({key: pa.array(values, pa.float64()) for key, values in numbers.items()})


def _gate_aliases(gate: Mapping[str, Any]) -> list[str]:
    aliases = gate.get("aliases", [PROTECTED_ALIAS])
    return list(aliases) if isinstance(aliases, list) else []


def vet_promotion_gates(platform: Platform, gates: Any) -> list[dict[str, Any]]:
    if not isinstance(gates, list) or len(gates) > MAX_GATES:
        raise InputError(
            f"promotion gates must be a list of at most {MAX_GATES} objects",
            field_errors={"gates": "not a list"},
        )
    kinds = gate_validators(platform)
    problems: dict[str, str] = {}
    for index, gate in enumerate(gates):
        where = f"gates.{index}"
        if not isinstance(gate, dict):
            problems[where] = "must be an object"
            continue
        kind = gate.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            problems[where] = f"unknown kind {kind!r}; known: {', '.join(sorted(kinds))}"
            continue
        aliases = gate.get("aliases", [PROTECTED_ALIAS])
        if (
            not isinstance(aliases, list)
            or not aliases
            or not all(isinstance(a, str) and ALIAS_NAME.fullmatch(a) for a in aliases)
        ):
            problems[where] = "aliases must be a non-empty list of alias names"
            continue
        # Gates name metrics, which differ between trainers: any metric name may be gated.
        found = kinds[kind].problems(gate, {})
        if found:
            problems[where] = "; ".join(found)
    if problems:
        raise InputError("invalid promotion gates", field_errors=problems)
    return [dict(gate) for gate in gates]


def check_gates(
    platform: Platform,
    gates: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    alias: str,
) -> list[CheckResult]:
    """The results of every gate among `gates` (a model's) that applies to `alias`, checked
    against `metrics` (a version's)."""
    kinds = gate_validators(platform)
    applicable = [gate for gate in gates if alias in _gate_aliases(gate)]
    table = metrics_table(metrics)
    results: list[CheckResult] = []
    for gate in applicable:
        validator = kinds.get(str(gate.get("kind")))
        if validator is None:
            results.append(
                CheckResult(
                    name=str(gate.get("kind")),
                    kind=str(gate.get("kind")),
                    dimension="accuracy",
                    passed=False,
                    failing_rows=1,
                    blocking=True,
                    message=f"no validator here checks gates of kind {gate.get('kind')!r}",
                )
            )
            continue
        results += validator.validate(table, [gate])
    return results
