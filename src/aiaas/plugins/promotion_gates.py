"""The built-in promotion gate: a model version's evaluation metric must clear a threshold.

    {"kind": "metric_threshold", "metric": "f1", "min": 0.8}
    {"kind": "metric_threshold", "metric": "rmse", "max": 12.5, "aliases": ["staging"]}

A gate applies to moves of the aliases it lists (`production` when it lists none). Gates are
validators of `model-version` subjects: each checks the one-row table of the version's numeric
metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ValidatorSpec
from aiaas.core.validation import CheckResult, Expectation, Validator

METRIC_THRESHOLD = "metric_threshold"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class MetricThresholdGate(Validator):
    def __init__(self, config: Config) -> None:
        del config

    def subjects(self) -> frozenset[str]:
        return frozenset({"model-version"})

    def expectation_kinds(self) -> frozenset[str]:
        return frozenset({METRIC_THRESHOLD})

    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        found = []
        metric = expectation.get("metric")
        if not isinstance(metric, str) or not metric:
            found.append("metric must name an evaluation metric, e.g. 'f1'")
        bounds = [expectation[bound] for bound in ("min", "max") if bound in expectation]
        if not bounds:
            found.append("give min, max or both")
        elif not all(_number(bound) for bound in bounds):
            found.append("min and max must be finite numbers")
        elif len(bounds) == 2 and float(bounds[0]) > float(bounds[1]):
            found.append("min must not exceed max")
        extra = set(expectation) - {"kind", "metric", "min", "max", "aliases", "blocking"}
        if extra:
            found.append(f"unknown fields: {', '.join(sorted(extra))}")
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
