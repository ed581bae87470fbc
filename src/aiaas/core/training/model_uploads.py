"""Uploaded model versions: a model file made elsewhere, vetted by the serving runtime that will
serve it, sealed and registered like a trained version.

The platform does not read model files itself: a serving runtime that lists the format among
its `uploadable_formats` vets the file (what it may hold, its signature) and wraps it into the
bundle it loads (`ServingRuntime.bundle_upload`). The ONNX runtime of the `trees` extra is the
one that does today. A format no installed runtime takes is refused, naming the extra.

An uploaded version has no training job. Its uploader may name a dataset version as its
reference data: the version's lineage then points at it, drift checks compare live requests
with it, and it cannot be deleted while the model version uses it. Its columns must then hold
every one-value input of the signature, since those are what drift is measured on.

Every upload, refused or not, is audited as `model.upload`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.data.datasets import dataset_by_name, lock_live_version, version_by_number
from aiaas.core.errors import InputError, NotFoundError
from aiaas.core.governance import artifacts_kept_on_success
from aiaas.core.identity.projects import ChangeInProject
from aiaas.core.runtimes import ServingRuntime, SignatureMismatchError, UploadedModel
from aiaas.core.signatures import STRING_DTYPES, ModelSignature, TensorSpec
from aiaas.core.storable_text import text_problem
from aiaas.core.training.registry import (
    ModelVersion,
    NewModelVersion,
    check_model_name,
    register_model_version,
)

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

UPLOAD_TRAINER = "upload"
"""The `trainer` of an uploaded version: no trainer of the platform made it."""
UPLOAD_EXTRAS = {"onnx": "trees"}
"""Formats the extras of this project can take uploads of → the extra that does."""


@dataclass(frozen=True, kw_only=True)
class ReferenceData:
    """The dataset version an upload names as its reference data."""

    dataset: str
    number: int


def uploading_runtime(platform: Platform, model_format: str) -> ServingRuntime:
    """The installed runtime that vets uploads of `model_format` (the first by name where
    several do), or an `InputError` naming what to install."""
    for name in sorted(platform.registries.serving_runtimes.names()):
        runtime = platform.serving_runtime(name)
        if model_format in runtime.uploadable_formats():
            return runtime
    problem = f"no installed serving runtime takes uploaded {model_format!r} models"
    extra = UPLOAD_EXTRAS.get(model_format)
    if extra is not None:
        problem += (
            f"; the {extra!r} extra does: install the aiaas-{extra} package "
            f"(plugins-extra/aiaas-{extra} in aiaas's repository) on the API and the workers"
        )
    raise InputError(problem, field_errors={"format": "not uploadable here"})


async def upload_model_version(
    platform: Platform,
    actor: Principal,
    project_id: UUID,
    *,
    model_name: str,
    model_format: str,
    source: Path,
    declared: ModelSignature | None = None,
    reference: ReferenceData | None = None,
    request_id: str | None = None,
) -> ModelVersion:
    """Register the model file at `source` as the next version of `model_name` (made if need
    be). Refusals are `InputError`s (the file, its signature, the format) or `NotFoundError`s
    (the reference data), and change nothing."""
    async with (
        artifacts_kept_on_success(platform) as pending,
        ChangeInProject(
            platform, actor, "model.upload", request_id, project_id=project_id, deferred=True
        ) as change,
    ):
        check_model_name(model_name)
        runtime = uploading_runtime(platform, model_format)
        # Vetted and sealed before the transaction opens: the slow part holds no lock.
        uploaded = await asyncio.to_thread(_vetted, runtime, model_format, source, declared)
        reference_id = await _reference_id(platform, project_id, reference, uploaded.signature)
        stored = await pending.store(project_id, _one_chunk(uploaded.bundle))
        connection = await change.begin()
        if reference_id is not None:
            # Held until the version is recorded: a deletion meanwhile would leave it pointing
            # at data on its way out, and drift checks with nothing to compare against.
            await lock_live_version(connection, reference_id)
        return await register_model_version(
            change,
            NewModelVersion(
                project_id=project_id,
                model_name=model_name,
                job_id=None,
                dataset_version_id=reference_id,
                trainer=UPLOAD_TRAINER,
                format=model_format,
                artifact_key=stored.key,
                size_bytes=stored.size_bytes,
                signature=uploaded.signature.as_json(),
                metrics={},
                hyperparameters={},
                created_by=actor.user_id,
            ),
        )


def _vetted(
    runtime: ServingRuntime, model_format: str, source: Path, declared: ModelSignature | None
) -> UploadedModel:
    try:
        return runtime.bundle_upload(model_format, source, declared)
    except ValueError as exc:
        field = "signature" if isinstance(exc, SignatureMismatchError) else "file"
        message = f"the model file is refused: {exc}"
        raise InputError(message, field_errors={field: str(exc)}) from exc


async def _reference_id(
    platform: Platform,
    project_id: UUID,
    reference: ReferenceData | None,
    signature: ModelSignature,
) -> UUID | None:
    if reference is None:
        return None
    async with platform.metadata.acquire() as connection:
        dataset = await dataset_by_name(connection, project_id, reference.dataset)
        version = (
            await version_by_number(connection, dataset.id, reference.number)
            if dataset is not None
            else None
        )
    if version is None or version.deleted_at is not None:
        raise NotFoundError(
            f"no version {reference.number} of a dataset {reference.dataset!r} in this project"
        )
    column_types = {column["name"]: column["type"] for column in version.columns}
    problems = [
        _column_problem(spec, column_types.get(spec.name))
        for spec in signature.inputs
        if len(spec.shape) == 1
    ]
    if any(problems):
        raise InputError(
            f"the reference data does not hold the inputs: {'; '.join(filter(None, problems))}",
            field_errors={"dataset": "lacks inputs of the signature"},
        )
    return version.id


_NUMERIC_COLUMN_TYPES = frozenset({"integer", "float", "boolean"})


def _column_problem(spec: TensorSpec, column_type: str | None) -> str | None:
    """What keeps a reference column from standing for a one-value input: drift bins the
    column's values as the input's, so text stands for text and numbers for numbers."""
    if column_type is None:
        return f"no column {spec.name!r}"
    text_input = spec.dtype in STRING_DTYPES
    if text_input != (column_type == "string") or (
        not text_input and column_type not in _NUMERIC_COLUMN_TYPES
    ):
        return f"column {spec.name!r} is {column_type}, input {spec.name!r} is {spec.dtype}"
    return None


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


_SIGNATURE_DTYPES = frozenset(
    {"float16", "float32", "float64", "bool", "str"}
    | {f"{kind}{bits}" for kind in ("int", "uint") for bits in (8, 16, 32, 64)}
)


def declared_signature(text: str) -> ModelSignature:
    """The signature an uploader declares, as JSON: {"inputs": [{"name", "dtype", "shape"}...],
    "outputs": [...]}, shapes with -1 for a free dimension; `InputError` saying what is wrong."""
    try:
        encoded = json.loads(text)
    except ValueError as exc:
        raise _bad_signature(f"it is not JSON: {exc}") from exc
    if not isinstance(encoded, dict) or set(encoded) != {"inputs", "outputs"}:
        raise _bad_signature('it is an object of "inputs" and "outputs"')
    specs: dict[str, tuple[TensorSpec, ...]] = {}
    for role in ("inputs", "outputs"):
        listed = encoded[role]
        if not isinstance(listed, list) or not listed:
            raise _bad_signature(f"{role} is a non-empty list")
        specs[role] = tuple(_tensor_spec(role, spec) for spec in listed)
        names = [spec.name for spec in specs[role]]
        if len(set(names)) != len(names):
            raise _bad_signature(f"{role} names a tensor twice")
    return ModelSignature(inputs=specs["inputs"], outputs=specs["outputs"])


def _tensor_spec(role: str, spec: Any) -> TensorSpec:
    if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
        raise _bad_signature(f'each of {role} is an object of "name", "dtype" and "shape"')
    name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
    if not isinstance(name, str) or not name or text_problem(name) is not None:
        raise _bad_signature(f"a tensor of {role} has no usable name")
    if dtype not in _SIGNATURE_DTYPES:
        raise _bad_signature(
            f"{name!r} has dtype {dtype!r}; one of {', '.join(sorted(_SIGNATURE_DTYPES))}"
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(size) is int and (size == -1 or size > 0) for size in shape)
    ):
        raise _bad_signature(f"{name!r} has a shape that is not a list of sizes, -1 for free")
    return TensorSpec(name=name, dtype=dtype, shape=tuple(shape))


def _bad_signature(problem: str) -> InputError:
    return InputError(
        f"the declared signature is invalid: {problem}", field_errors={"signature": problem}
    )
