from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, cast
from uuid import UUID

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.utils.str_converters import to_camel_case

from aiaas.core.data import LOGICAL_TYPES, STEP_SHAPES, datasets, quality
from aiaas.core.data.tabular.cells import SHOWN_TEXT_CHARS, TRUNCATION_MARK
from aiaas.core.data.tabular.normalized import PREVIEW_ROWS, PREVIEW_TRUNCATED_ROWS
from aiaas.core.pagination import DEFAULT_PAGE_SIZE
from aiaas.graphql.context import RequestContext
from aiaas.graphql.errors import ConflictResult, InvalidInputResult, NotFoundResult
from aiaas.graphql.relay import Connection, Node, connection_from_page, to_global_id


def as_json(value: Any) -> JSON:
    return cast(JSON, value)


@strawberry.type(description="A column of a dataset version and its type.")
class DatasetColumn:
    name: str
    type: str = strawberry.field(description="integer, float, boolean, string, timestamp or date.")


@strawberry.type(description="The outcome of one quality check.")
class QualityCheck:
    name: str
    kind: str
    dimension: str = strawberry.field(description="consistency, completeness or accuracy.")
    passed: bool
    blocking: bool
    failing_rows: int
    message: str
    examples: JSON


# Resolvers of the sealed fields: they open them only when a query asks for them. Given to
# `strawberry.field(resolver=...)` so that the fields keep their place in the schema.


async def resolve_checks(root: QualityReport, info: Info) -> list[QualityCheck]:
    context: RequestContext = info.context
    return [
        QualityCheck(
            name=check["name"],
            kind=check["kind"],
            dimension=check["dimension"],
            passed=check["passed"],
            blocking=check["blocking"],
            failing_rows=check["failing_rows"],
            message=check["message"],
            examples=as_json(check["examples"]),
        )
        for check in await quality.opened_checks(context.platform, root.report)
    ]


async def resolve_column_stats(root: DatasetVersion, info: Info) -> JSON:
    context: RequestContext = info.context
    stats = await datasets.version_column_stats(context.platform, root.record)
    # Stored with the profile's snake_case keys; answered in GraphQL's casing, as all JSON the
    # API builds is. Column names are the caller's and stay as they are.
    return as_json(
        {
            column: {to_camel_case(key): value for key, value in entry.items()}
            for column, entry in stats.items()
        }
    )


async def resolve_preview(root: DatasetVersion, info: Info) -> JSON:
    context: RequestContext = info.context
    return as_json(await datasets.version_preview(context.platform, root.record))


@strawberry.type(description="A dataset version checked against its dataset's expectations.")
class QualityReport:
    id: strawberry.ID
    created_at: datetime
    passed: bool = strawberry.field(description="No blocking check failed.")
    q_consistency: float
    q_completeness: float
    q_accuracy: float
    q: float = strawberry.field(description="Q = Qconsistency + Qcompleteness + Qaccuracy.")
    checks: list[QualityCheck] = strawberry.field(resolver=resolve_checks)
    blocking_failures: list[str]
    expectations: JSON = strawberry.field(description="The expectations it was checked against.")
    report: strawberry.Private[quality.QualityReport]

    @classmethod
    def from_domain(cls, report: quality.QualityReport) -> QualityReport:
        return cls(
            id=to_global_id("QualityReport", report.id),
            created_at=report.created_at,
            passed=report.passed,
            q_consistency=report.q_consistency,
            q_completeness=report.q_completeness,
            q_accuracy=report.q_accuracy,
            q=report.q,
            blocking_failures=report.blocking_failures,
            expectations=as_json(report.expectations),
            report=report,
        )


@strawberry.type(description="An immutable version of a dataset, normalized to Parquet.")
class DatasetVersion(Node):
    number: int
    content_sha256: str = strawberry.field(
        description="Identifies the content: re-uploading it answers this version."
    )
    source_format: str = strawberry.field(
        description="csv, parquet, images (an archive of images: docs/guides/images.md), or "
        "derived (a transform)."
    )
    row_count: int
    size_bytes: int
    columns: list[DatasetColumn]
    column_stats: JSON = strawberry.field(
        resolver=resolve_column_stats,
        description=(
            "Per column name: type, nullFraction, distinctCount and distinctExact, then "
            "min/max (ordered types), mean/std and histogram (numbers: `edges` and `counts` "
            "of equal-width bins from the finite minimum to the maximum) or topValues and "
            "topValuesExact. A top "
            f"value whose text is longer than {SHOWN_TEXT_CHARS} characters is cut as a "
            'preview cell is, and carries "truncated": true and "length" (its full length in '
            "characters). A column with cut preview cells lists their row indices (from 0) in "
            f'"{to_camel_case(PREVIEW_TRUNCATED_ROWS)}".'
        ),
    )
    preview: JSON = strawberry.field(
        resolver=resolve_preview,
        description=(
            f"The first {PREVIEW_ROWS} rows, as records. A text longer than {SHOWN_TEXT_CHARS} "
            f'characters is cut to its first {SHOWN_TEXT_CHARS}, followed by "{TRUNCATION_MARK} '
            "[N characters]\" where N is its full length; its column's columnStats entry lists "
            f'the cut rows in "{to_camel_case(PREVIEW_TRUNCATED_ROWS)}".'
        ),
    )
    transformation: JSON | None = strawberry.field(
        description="The steps that made it from its parent."
    )
    created_at: datetime
    deleted_at: datetime | None
    parent_uuid: strawberry.Private[UUID | None]
    dataset_uuid: strawberry.Private[UUID]
    version_uuid: strawberry.Private[UUID]
    project_uuid: strawberry.Private[UUID]
    record: strawberry.Private[datasets.DatasetVersion]

    @strawberry.field(description="The version it was made from, if a transformation made it.")
    async def parent(self, info: Info) -> DatasetVersion | None:
        if self.parent_uuid is None:
            return None
        found = await info.context.loader("dataset_version").load(self.parent_uuid)
        return DatasetVersion.from_domain(found) if found is not None else None

    @strawberry.field
    async def dataset(self, info: Info) -> Dataset:
        found = await info.context.loader("dataset").load(self.dataset_uuid)
        return Dataset.from_domain(found)

    @strawberry.field(description="Its latest quality report, if it was validated.")
    async def quality_report(self, info: Info) -> QualityReport | None:
        found = await info.context.loader("latest_quality_report").load(self.version_uuid)
        return QualityReport.from_domain(found) if found is not None else None

    @classmethod
    def from_domain(cls, version: datasets.DatasetVersion) -> DatasetVersion:
        return cls(
            id=to_global_id("DatasetVersion", version.id),
            number=version.number,
            content_sha256=version.content_sha256,
            source_format=version.source_format,
            row_count=version.row_count,
            size_bytes=version.size_bytes,
            columns=[DatasetColumn(name=c["name"], type=c["type"]) for c in version.columns],
            transformation=as_json(version.transformation) if version.transformation else None,
            created_at=version.created_at,
            deleted_at=version.deleted_at,
            parent_uuid=version.parent_version_id,
            dataset_uuid=version.dataset_id,
            version_uuid=version.id,
            project_uuid=version.project_id,
            record=version,
        )


@strawberry.type(description="A named dataset of a project: a sequence of versions.")
class Dataset(Node):
    name: str
    description: str
    created_at: datetime
    expectations: JSON = strawberry.field(description="What its versions are checked against.")
    dataset_uuid: strawberry.Private[UUID]
    project_uuid: strawberry.Private[UUID]

    @strawberry.field(
        description="The slug of its project, which its REST routes (upload, download) name."
    )
    async def project_slug(self, info: Info) -> str:
        found = await info.context.loader("project").load(self.project_uuid)
        slug: str = found.slug
        return slug

    @strawberry.field(description="Its versions, oldest first; deleted ones only if asked.")
    async def versions(
        self,
        info: Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        include_deleted: bool = False,
    ) -> Connection[DatasetVersion]:
        context: RequestContext = info.context
        async with context.platform.metadata.acquire() as connection:
            page = await datasets.list_versions(
                connection,
                self.dataset_uuid,
                first=first,
                after=after,
                include_deleted=include_deleted,
            )
        return connection_from_page(page, DatasetVersion.from_domain)

    @strawberry.field(description="Its newest version that is not deleted.")
    async def latest_version(self, info: Info) -> DatasetVersion | None:
        # Through a loader: a page of datasets costs one query, not one per dataset.
        found = await info.context.loader("latest_dataset_version").load(self.dataset_uuid)
        return DatasetVersion.from_domain(found) if found is not None else None

    @classmethod
    def from_domain(cls, dataset: datasets.Dataset) -> Dataset:
        return cls(
            id=to_global_id("Dataset", dataset.id),
            name=dataset.name,
            description=dataset.description,
            created_at=dataset.created_at,
            expectations=as_json(dataset.expectations),
            dataset_uuid=dataset.id,
            project_uuid=dataset.project_id,
        )


@strawberry.enum(description="How a file's content is read; detected from its bytes if unset.")
class DatasetFormat(Enum):
    CSV = "csv"
    PARQUET = "parquet"


@strawberry.input
class UploadDatasetInput:
    project: strawberry.ID
    name: str = strawberry.field(description="The dataset; made on its first upload.")
    file: Upload
    description: str = ""
    format: DatasetFormat | None = None
    encoding: str | None = strawberry.field(default=None, description="Default UTF-8.")
    delimiter: str | None = strawberry.field(default=None, description="Detected if unset.")
    header: bool | None = strawberry.field(default=None, description="Detected if unset.")


@strawberry.enum
class TransformKind(Enum):
    DROP_DUPLICATES = "drop_duplicates"
    DROP_NULLS = "drop_nulls"
    IMPUTE_NULLS = "impute_nulls"
    FILTER_ROWS = "filter_rows"
    CAST = "cast"


@strawberry.enum
class ImputeStrategy(Enum):
    MEAN = "mean"
    MEDIAN = "median"
    CONSTANT = "constant"


def _taken_by(argument: str) -> str:
    """Which step kinds take `argument`, for the description of its field."""
    kinds = [shape.kind.upper() for shape in STEP_SHAPES if shape.argument(argument) is not None]
    return ", ".join(kinds)


@strawberry.input(
    description="One cleaning step. Each kind takes its own fields (docs/reference.md lists them "
    "with their defaults); a field its kind does not take is refused, naming those it takes. "
    "`column` is always one column, `columns` always a list."
)
class TransformStepInput:
    kind: TransformKind
    columns: list[str] | None = strawberry.field(
        default=None, description=f"Several columns, for {_taken_by('columns')}; default: all."
    )
    column: str | None = strawberry.field(
        default=None, description=f"One column, for {_taken_by('column')}."
    )
    strategy: ImputeStrategy | None = strawberry.field(
        default=None, description=f"For {_taken_by('strategy')}: what to fill with."
    )
    value: JSON | None = strawberry.field(
        default=None, description=f"For {_taken_by('value')} with strategy CONSTANT: the fill."
    )
    expression: str | None = strawberry.field(
        default=None,
        description=f"For {_taken_by('expression')}: the rows to keep, e.g. `age >= 18`.",
    )
    dtype: str | None = strawberry.field(
        default=None,
        description=f"For {_taken_by('dtype')}: the type to convert to "
        f"({', '.join(LOGICAL_TYPES)}).",
    )

    def as_step(self) -> dict[str, Any]:
        step: dict[str, Any] = {"kind": self.kind.value}
        for key in ("columns", "column", "expression", "dtype"):
            value = getattr(self, key)
            if value is not None:
                step[key] = value
        if self.strategy is not None:
            step["strategy"] = self.strategy.value
        if self.value is not None:
            step["value"] = self.value
        return step


@strawberry.input
class TransformDatasetVersionInput:
    version: strawberry.ID
    steps: list[TransformStepInput]


@strawberry.type
class DatasetVersionSuccess:
    version: DatasetVersion
    created: bool = strawberry.field(description="False if the same content was there already.")


@strawberry.type
class SetDatasetExpectationsSuccess:
    dataset: Dataset


@strawberry.type
class DeleteDatasetVersionSuccess:
    version: DatasetVersion


DatasetVersionResult = Annotated[
    DatasetVersionSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("DatasetVersionResult"),
]
SetDatasetExpectationsResult = Annotated[
    SetDatasetExpectationsSuccess | InvalidInputResult | NotFoundResult | ConflictResult,
    strawberry.union("SetDatasetExpectationsResult"),
]
DeleteDatasetVersionResult = Annotated[
    DeleteDatasetVersionSuccess | NotFoundResult | ConflictResult | InvalidInputResult,
    strawberry.union("DeleteDatasetVersionResult"),
]
