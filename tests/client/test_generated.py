"""The typed layer is generated, and the committed copy is what the generator makes now: edit
schema.graphql or an operation document without `python -m aiaas.client.regenerate`, and this
fails. The generator refuses documents it cannot type rather than guessing."""

from __future__ import annotations

import pytest

from aiaas.client import regenerate
from aiaas.client.codegen import GenerationError
from aiaas.client.generated.async_operations import AsyncOperations
from aiaas.client.generated.jobs import JobQuery, JobQueryNodeJob, JobQueryNodeOther
from aiaas.client.generated.projects import CreateProjectMutation
from aiaas.client.generated.schema_types import JobState
from aiaas.client.generated.sync_operations import SyncOperations

SCHEMA = regenerate.SCHEMA_PATH.read_text()


def committed() -> dict[str, str]:
    return {path.name: path.read_text() for path in regenerate.GENERATED_DIR.glob("*.py")}


def test_the_committed_generated_code_is_what_regenerate_makes_now() -> None:
    assert regenerate.generated_files() == committed(), (
        "src/aiaas/client/generated is stale: run `python -m aiaas.client.regenerate`"
    )


def test_a_changed_operation_document_changes_the_generated_code() -> None:
    documents = {
        path.stem: path.read_text() for path in sorted(regenerate.OPERATIONS_DIR.glob("*.graphql"))
    }
    documents["jobs"] = documents["jobs"].replace("  reason\n", "")
    changed = regenerate.generate(SCHEMA, documents)
    assert "reason" not in changed["jobs.py"]
    assert "reason: str | None" in committed()["jobs.py"]


def test_every_operation_document_has_its_typed_method_sync_and_async() -> None:
    for name in ("project", "create_project", "dataset_version", "validate_dataset_version"):
        assert callable(getattr(SyncOperations, name))
        assert callable(getattr(AsyncOperations, name))


def test_an_error_member_is_read_into_its_own_model_with_its_field_errors() -> None:
    answer = CreateProjectMutation.model_validate(
        {
            "createProject": {
                "__typename": "InvalidInputError",
                "message": "invalid input",
                "code": "INVALID_INPUT",
                "fieldErrors": [{"field": "slug", "message": "too long"}],
            }
        }
    )
    error = answer.create_project
    assert error.typename__ == "InvalidInputError"
    assert [(e.field, e.message) for e in error.field_errors] == [("slug", "too long")]  # type: ignore[union-attr]


def test_an_abstract_field_without_typename_is_refused() -> None:
    document = "query Q($id: ID!) { node(id: $id) { id } }"
    with pytest.raises(GenerationError, match="__typename"):
        regenerate.generate(SCHEMA, {"q": document})


def test_a_document_the_schema_does_not_validate_is_refused() -> None:
    with pytest.raises(GenerationError, match="noSuchField"):
        regenerate.generate(SCHEMA, {"q": "query Q { noSuchField }"})


def test_a_type_no_fragment_names_is_read_into_the_other_model() -> None:
    job = JobQuery.model_validate({"node": {"__typename": "Job", **JOB_FIELDS}}).node
    assert isinstance(job, JobQueryNodeJob)
    assert job.state is JobState.RUNNING
    # Any other type, including one the schema adds after this code was generated.
    for typename in ("Project", "SomethingAddedLater"):
        other = JobQuery.model_validate({"node": {"__typename": typename}}).node
        assert isinstance(other, JobQueryNodeOther)
        assert other.typename__ == typename


JOB_FIELDS = {
    "id": "Sm9iOjE=",
    "kind": "validation",
    "state": "RUNNING",
    "attempt": 1,
    "createdAt": "2026-01-01T00:00:00+00:00",
    "startedAt": None,
    "finishedAt": None,
    "reason": None,
}
