"""Kinds of worker job: the payload each takes, checked where a job is submitted and again
where it runs.

Every kind comes from the `aiaas_job_kinds` hook as a `JobKindSpec`, the built-in ones too
(`aiaas.plugins.builtin_job_kinds`), so a plugin adds a kind exactly as aiaas adds its own.
`record_new_job` vets a payload with `vet_payload` before the job's row exists; a worker runs
a job with `run_job_of_kind`, which validates the stored payload again, since it may have
changed since (edited in the database, or written by another release), and fails the job with
the reason rather than handing its handler something it does not declare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from aiaas.core.errors import JobPayloadError, UnknownJobKindError
from aiaas.core.jobs import Job
from aiaas.core.specs import JobKindSpec, PayloadT

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

JobKindHandler = Callable[["Platform", Job, PayloadT], Awaitable[str | None]]
"""A `JobKindSpec`'s handler: the platform, the job, its payload as the kind's model."""

KindHandler = Callable[["Platform", Job], Awaitable[str | None]]
"""Runs one job whose kind is already chosen; returns an optional note stored as its reason."""


def job_kind(platform: Platform, kind: str) -> JobKindSpec[Any]:
    """The registered kind named `kind`; `UnknownJobKindError` naming the known ones if none."""
    kinds = platform.registries.job_kinds
    if kind not in kinds:
        available = ", ".join(sorted(kinds.names())) or "none"
        raise UnknownJobKindError(
            f"no job kind named {kind!r} is registered (available: {available})",
            field_errors={"kind": f"unknown job kind; known: {available}"},
        )
    return kinds.get(kind)


def payload_of(spec: JobKindSpec[Any], payload: Mapping[str, Any]) -> BaseModel:
    """`payload` as `spec`'s payload model; `JobPayloadError` with every problem by its path in
    the payload otherwise."""
    try:
        model: BaseModel = spec.payload_type.model_validate(payload)
    except ValidationError as exc:
        problems = {
            ".".join(str(part) for part in error["loc"]) or "payload": error["msg"]
            for error in exc.errors()
        }
        listed = "; ".join(f"{path}: {problem}" for path, problem in problems.items())
        raise JobPayloadError(
            f"the payload of a {spec.name} job does not match "
            f"{spec.payload_type.__name__}: {listed}",
            field_errors=problems,
        ) from None
    return model


def vet_payload(
    platform: Platform, kind: str, payload: Mapping[str, Any] | BaseModel
) -> dict[str, Any]:
    """The payload to store for a new job of `kind`, checked against the kind's payload model:
    `UnknownJobKindError` or `JobPayloadError` otherwise, before anything is recorded.

    What is stored is the model's JSON form (a UUID as its text, say), which the worker
    validates again: of a mapping, the keys it gives, so that a payload is stored as its
    submitter wrote it, defaults still the kind's to fill in; of a model instance, every field."""
    spec = job_kind(platform, kind)
    if isinstance(payload, BaseModel):
        if not isinstance(payload, spec.payload_type):
            raise JobPayloadError(
                f"a {kind} job takes a {spec.payload_type.__name__} payload, "
                f"not a {type(payload).__name__}",
                field_errors={"payload": f"expected {spec.payload_type.__name__}"},
            )
        # Validated again: an instance built with `model_construct` was never checked.
        model = payload_of(spec, payload.model_dump())
        stored: dict[str, Any] = model.model_dump(mode="json")
    else:
        stored = payload_of(spec, payload).model_dump(mode="json", exclude_unset=True)
    return stored


async def run_job_of_kind(spec: JobKindSpec[Any], platform: Platform, job: Job) -> str | None:
    """Validate the job's stored payload, then run its kind's handler with it. A payload that
    no longer matches raises `JobPayloadError`, which the worker records as the job's failure;
    the handler never sees it."""
    payload = payload_of(spec, job.payload)
    note: str | None = await spec.handler(platform, job, payload)
    return note


def handlers_by_kind(platform: Platform) -> dict[str, KindHandler]:
    """A handler for each registered kind, as the worker dispatches on a job's kind."""
    return {spec.name: partial(run_job_of_kind, spec) for spec in platform.registries.job_kinds}
