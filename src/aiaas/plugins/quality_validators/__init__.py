"""The built-in data quality validators: schema, completeness, consistency and accuracy.

    schema        {"kind": "column_type", "column": "age", "dtype": "integer"}
    completeness  {"kind": "not_null", "column": "age"}
                  {"kind": "row_count", "min": 100, "max": 1000000}
                  and always: the rows with an empty cell (never blocking)
    consistency   {"kind": "unique", "columns": ["customer_id"]}
                  {"kind": "no_duplicate_rows"}
                  {"kind": "rule", "expression": "start <= end"}
                  and always: the share of repeated rows (never blocking)
    accuracy      {"kind": "range", "column": "age", "min": 0, "max": 130}
                  {"kind": "allowed_values", "column": "country", "values": ["FR", "DE"]}
                  {"kind": "regex", "column": "email", "pattern": "[^@]+@[^@]+"}

Every expectation may say `"blocking": false`; it is blocking otherwise. Schema checks count in
the consistency score.

One module per validator, named after what it checks; `results` holds what they share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ValidatorSpec
from aiaas.core.validation import Validator
from aiaas.plugins.quality_validators.accuracy import AccuracyValidator
from aiaas.plugins.quality_validators.completeness import CompletenessValidator
from aiaas.plugins.quality_validators.consistency import ConsistencyValidator
from aiaas.plugins.quality_validators.schema import SchemaValidator

__all__ = [
    "BUILT_IN",
    "AccuracyValidator",
    "CompletenessValidator",
    "ConsistencyValidator",
    "SchemaValidator",
    "aiaas_validators",
]

BUILT_IN: tuple[tuple[str, type[Validator], str], ...] = (
    ("schema", SchemaValidator, "Column types."),
    ("completeness", CompletenessValidator, "Missing values and row counts."),
    ("consistency", ConsistencyValidator, "Duplicates, unique keys and cross-column rules."),
    ("accuracy", AccuracyValidator, "Ranges, allowed values and patterns."),
)


def _factory(validator: type[Validator]) -> Any:
    def build(config: Config) -> Validator:
        del config  # nothing to configure
        return validator()

    return build


@hookimpl
def aiaas_validators() -> Iterable[ValidatorSpec]:
    return [
        ValidatorSpec(name=name, factory=_factory(validator), description=description)
        for name, validator, description in BUILT_IN
    ]
