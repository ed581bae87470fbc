"""The data domain: datasets and their immutable versions, the tables they hold, and their quality.

An upload (streamed to disk by `uploads`) is read into normalized Parquet with a profile of each
column (`tabular`) and stored as a version of a dataset (`datasets`), sealed in the vault. A
version can be cleaned into a new one by transformation steps, and checked against its dataset's
expectations (`expectations`), each vetted and checked by the validator plugin that claims its
kind; a validation job stores a quality report (`quality`), which decides whether the version may
be trained on.

What other domains, the interfaces and plugins use is exported here; a plugin imports it from
this package and nothing beneath it, as a third-party plugin would.
"""

from aiaas.core.data.datasets import (
    Dataset,
    DatasetVersion,
    ModelsUsingVersion,
    NewVersion,
    dataset_by_name,
    datasets_by_ids,
    delete_version,
    get_version,
    latest_versions,
    list_datasets,
    list_versions,
    lock_live_version,
    read_version_table,
    scratch,
    set_expectations,
    transform_version,
    upload_version,
    versions_by_ids,
)
from aiaas.core.data.expectations import validators_by_kind, vet_checks
from aiaas.core.data.quality import (
    VALIDATE_JOB,
    QualityReport,
    latest_reports,
    require_usable_for_training,
    run_validation,
    submit_validation,
)
from aiaas.core.data.tabular.expressions import (
    CompiledExpression,
    compile_expression,
    evaluate_mask,
)
from aiaas.core.data.tabular.profile import json_value
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.data.tabular.transforms import STEP_SHAPES
from aiaas.core.data.tabular.types import LOGICAL_TYPES, is_numeric, logical_type
from aiaas.core.data.uploads import ReceivedFile, copy_upload, save_stream, too_large

__all__ = [
    "LOGICAL_TYPES",
    "STEP_SHAPES",
    "VALIDATE_JOB",
    "CompiledExpression",
    "Dataset",
    "DatasetVersion",
    "ModelsUsingVersion",
    "NewVersion",
    "QualityReport",
    "ReadOptions",
    "ReceivedFile",
    "compile_expression",
    "copy_upload",
    "dataset_by_name",
    "datasets_by_ids",
    "delete_version",
    "evaluate_mask",
    "get_version",
    "is_numeric",
    "json_value",
    "latest_reports",
    "latest_versions",
    "list_datasets",
    "list_versions",
    "lock_live_version",
    "logical_type",
    "read_version_table",
    "require_usable_for_training",
    "run_validation",
    "save_stream",
    "scratch",
    "set_expectations",
    "submit_validation",
    "too_large",
    "transform_version",
    "upload_version",
    "validators_by_kind",
    "versions_by_ids",
    "vet_checks",
]
