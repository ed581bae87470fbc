"""Datasets and their immutable versions: upload, clean, look up, delete.

A version is identified by its content: the sha256 of the uploaded bytes, or of the normalized
Parquet a transformation made. Uploading the same content again answers the existing version.
The normalized Parquet is sealed in the vault with the project's data key; the row in
`dataset_versions` holds its schema, profile, preview and lineage, the preview and the row values
of the profile sealed with the same key (`sealed_profile`). Versions never change; a deleted one
is only marked, and its artifact goes when garbage collection finds nothing refers to it.

The table work (parsing, profiling, transforming) runs in a worker thread.

`records` holds what is stored and the queries that read it, `changes` every audited change,
`files` the scratch space and the reading of a version's table, and `sealed_profile` the sealing
and opening of previews and statistics.
"""

from aiaas.core.data.datasets.changes import (
    DATASET_NAME,
    DETECT_EVERYTHING,
    ModelsUsingVersion,
    NewVersion,
    check_dataset_name,
    delete_version,
    record_derived_version,
    set_expectations,
    transform_version,
    upload_version,
)
from aiaas.core.data.datasets.files import read_version_table, scratch
from aiaas.core.data.datasets.records import (
    Dataset,
    DatasetVersion,
    dataset_by_name,
    datasets_by_ids,
    get_version,
    latest_version,
    latest_versions,
    list_datasets,
    list_versions,
    lock_live_version,
    version_by_number,
    version_users,
    version_with_step,
    versions_by_ids,
)
from aiaas.core.data.datasets.sealed_profile import version_column_stats, version_preview

__all__ = [
    "DATASET_NAME",
    "DETECT_EVERYTHING",
    "Dataset",
    "DatasetVersion",
    "ModelsUsingVersion",
    "NewVersion",
    "check_dataset_name",
    "dataset_by_name",
    "datasets_by_ids",
    "delete_version",
    "get_version",
    "latest_version",
    "latest_versions",
    "list_datasets",
    "list_versions",
    "lock_live_version",
    "read_version_table",
    "record_derived_version",
    "scratch",
    "set_expectations",
    "transform_version",
    "upload_version",
    "version_by_number",
    "version_column_stats",
    "version_preview",
    "version_users",
    "version_with_step",
    "versions_by_ids",
]
