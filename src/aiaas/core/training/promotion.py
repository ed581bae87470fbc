"""Promotion gates: the checks a model version must pass before an alias moves to it.

A model's gates are expectations, each of a kind that a validator of `model-version` subjects
checks (the built-in `promotion_gates` plugin checks `metric_threshold`), run against a one-row
table of the version's numeric metrics. Each gate guards the aliases it lists in `aliases`, and
`DEFAULT_GATE_ALIASES` when it lists none; moving any other alias does not check it.
`registry.set_model_alias` refuses a move that a gate fails, with its reason. The default is
written in the schema (the description of `setModelPromotionGates(gates:)`), the README and
`docs/reference.md`, all from the constant here.

The rules for alias names live here rather than in the registry, which imports this module:
gates name aliases too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aiaas.core.arguments import Argument, ArgumentType, refusal
from aiaas.core.data import validators_by_kind, vet_checks
from aiaas.core.validation import CheckResult, Validator

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

ALIAS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
PROTECTED_ALIAS = "production"
"""Moving this alias needs `model:promote` (maintainers), not only `model:alias`."""
DEFAULT_GATE_ALIASES = (PROTECTED_ALIAS,)
"""The aliases a gate that lists none guards."""
MAX_GATES = 50
ALIASES = Argument(
    "aliases",
    ArgumentType.NAMES,
    "The aliases whose moves the gate guards: `setModelAlias` checks the gate before it moves "
    "one of them, and never for another alias.",
    default=f"`{json.dumps(list(DEFAULT_GATE_ALIASES))}`",
    example=["staging", "production"],
)
GATE_ARGUMENTS = (ALIASES,)
"""What every gate takes besides `kind` and the arguments of its kind."""


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


def gate_aliases(gate: Mapping[str, Any]) -> list[str]:
    """The aliases that `gate` guards."""
    aliases = gate.get(ALIASES.name, list(DEFAULT_GATE_ALIASES))
    return list(aliases) if isinstance(aliases, list) else []


def vet_promotion_gates(platform: Platform, gates: Any) -> list[dict[str, Any]]:
    """The gates, if every one is valid; `InputError` naming each problem by its path
    (`gates.0.aliases`) otherwise."""
    problems = vet_checks(
        "gates", gates, gate_validators(platform), GATE_ARGUMENTS, columns={}, limit=MAX_GATES
    )
    for index, gate in enumerate(gates if isinstance(gates, list) else []):
        where = f"gates.{index}.{ALIASES.name}"
        if where in problems or not isinstance(gate, dict):
            continue
        bad = [
            alias
            for alias in gate_aliases(gate)
            if not (isinstance(alias, str) and ALIAS_NAME.fullmatch(alias))
        ]
        if bad:
            problems[where] = (
                f"{bad[0]!r} is not an alias name: 1 to 40 lowercase letters, digits or '-', "
                "starting with a letter"
            )
    if problems:
        raise refusal("invalid promotion gates", problems)
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
    applicable = [gate for gate in gates if alias in gate_aliases(gate)]
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
