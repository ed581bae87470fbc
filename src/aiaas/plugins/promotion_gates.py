"""The built-in promotion gate: a model version's evaluation metric must clear a threshold.

    {"kind": "metric_threshold", "metric": "accuracy", "min": 0.8}
    {"kind": "metric_threshold", "metric": "rmse", "max": 12.5, "aliases": ["staging"]}

A gate guards moves of the aliases it lists in `aliases` (`aiaas.core.training.promotion` says
which when it lists none, and vets that argument, which every gate takes). Gates are validators of
`model-version` subjects: each checks the one-row table of the version's numeric metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa

from aiaas.core.arguments import (
    Argument,
    ArgumentProblem,
    ArgumentType,
    KindShape,
    shape_problems,
)
from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ValidatorSpec
from aiaas.core.validation import CheckResult, Expectation, Validator

METRIC_THRESHOLD = "metric_threshold"
SHAPES = (
    KindShape(
        METRIC_THRESHOLD,
        "An evaluation metric of the version clears a minimum, a maximum or both. A version "
        "without that metric (or with a value that is not finite) fails.",
        (
            Argument(
                "metric",
                ArgumentType.TEXT,
                "The metric, as the version's `metrics` name it, e.g. `accuracy`.",
                required=True,
            ),
            Argument(
                "min", ArgumentType.NUMBER, "The lowest value that passes.", default="no minimum"
            ),
            Argument(
                "max", ArgumentType.NUMBER, "The highest value that passes.", default="no maximum"
            ),
        ),
        {"kind": METRIC_THRESHOLD, "metric": "accuracy", "min": 0.8},
        at_least_one_of=("min", "max"),
    ),
)


class MetricThresholdGate(Validator):
    def __init__(self, config: Config) -> None:
        del config

    def subjects(self) -> frozenset[str]:
        return frozenset({"model-version"})

    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({METRIC_THRESHOLD})

    def kind_shapes(self) -> Sequence[KindShape]:
        return SHAPES

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        # Gates name metrics, which differ between trainers: any metric name may be gated.
        found: list[str] = list(shape_problems(SHAPES[0], expectation))
        low, high = expectation.get("min"), expectation.get("max")
        if not found and low is not None and high is not None and low > high:
            found.append(ArgumentProblem("min", f"min ({low:g}) is more than max ({high:g})"))
        return found

    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        return [self._check(table, gate) for gate in expectations]

    @staticmethod
    def _check(table: pa.Table, gate: Expectation) -> CheckResult:
        metric = str(gate["metric"])
        low, high = gate.get("min"), gate.get("max")
        name = f"{METRIC_THRESHOLD}({metric})"
        value = table.column(metric)[0].as_py() if metric in table.column_names else None
        if value is None or not math.isfinite(value):
            passed, message = False, f"the version has no finite {metric!r} metric"
        elif low is not None and value < low:
            passed, message = False, f"{metric} = {value:.4g} is below the minimum {low:g}"
        elif high is not None and value > high:
            passed, message = False, f"{metric} = {value:.4g} is above the maximum {high:g}"
        else:
            passed, message = True, f"{metric} = {value:.4g}"
        return CheckResult(
            name=name,
            kind=METRIC_THRESHOLD,
            dimension="accuracy",
            passed=passed,
            failing_rows=0 if passed else 1,
            blocking=True,
            message=message,
            examples=[] if value is None else [value],
        )


@hookimpl
def aiaas_validators() -> Iterable[ValidatorSpec]:
    return [
        ValidatorSpec(
            name="metric-threshold",
            factory=MetricThresholdGate,
            description="Promotion gate: an evaluation metric must clear a minimum or maximum.",
        )
    ]
