"""Models, their versions and deployments: `model_version.deploy(name)`, `deployment.wait_ready()`,
traffic changes, promotion and rollback, and `deployment.predict(frame)` over V2 with binary
tensors, split into requests of at most the deployment's `maxBatchSize` sent concurrently."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import quote

import httpx
import numpy as np

from aiaas.client import v2
from aiaas.client.batch import BatchPredictionJob, Identified, submit_batch_prediction
from aiaas.client.connection import Client
from aiaas.client.errors import (
    AiaasClientError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    raise_for,
)
from aiaas.client.generated.deployments import (
    DeploymentQueryNodeDeployment,
    ModelVersionQueryNodeModelVersion,
)
from aiaas.client.generated.schema_types import (
    CreateDeploymentInput,
    DeploymentState,
    UpdateDeploymentTrafficInput,
)
from aiaas.client.monitoring import DriftReport, drift_reports
from aiaas.client.transport import answered, check_response

if TYPE_CHECKING:
    import pandas
    import pyarrow

Frame = Union["pandas.DataFrame", "pyarrow.Table", Mapping[str, Any]]
"""What `predict` takes: a DataFrame, a pyarrow Table, or a mapping of column name -> values."""

__all__ = [
    "Deployment",
    "DeploymentFailedError",
    "DeploymentNotReadyError",
    "MissingColumnsError",
    "ModelVersion",
]

DEFAULT_CONCURRENCY = 8
"""Requests of one `predict` in flight at once."""
PREDICT_TIMEOUT_S = 120.0
_SERVING = frozenset({DeploymentState.READY, DeploymentState.UPDATING})


class MissingColumnsError(InvalidInputError):
    """The frame lacks input columns of the model's signature; `missing` names them. Nothing
    was sent."""

    def __init__(self, missing: list[str]) -> None:
        message = f"the frame has no column {', '.join(map(repr, missing))} of the model's inputs"
        super().__init__(message, "MISSING_COLUMNS", dict.fromkeys(missing, "missing"))
        self.missing = missing


class DeploymentNotReadyError(UnavailableError):
    """The deployment does not serve (still starting, FAILED or STOPPED); `state` says which."""

    def __init__(self, message: str, state: DeploymentState) -> None:
        super().__init__(message, "NOT_READY")
        self.state = state


class DeploymentFailedError(AiaasClientError):
    """A deployment waited for ended FAILED (or STOPPED); `deployment` is its last state."""

    def __init__(self, message: str, deployment: Deployment) -> None:
        super().__init__(message)
        self.deployment = deployment


@dataclass
class ModelVersion:
    """An immutable trained model: `signature` holds its inputs and outputs."""

    client: Client = field(repr=False)
    id: str
    number: int
    model_name: str
    trainer: str
    format: str
    signature: dict[str, Any]
    metrics: dict[str, Any]
    aliases: list[str]
    created_at: datetime

    @classmethod
    def of(cls, client: Client, fields: Any) -> ModelVersion:
        return cls(
            client,
            fields.id,
            fields.number,
            fields.model.name,
            fields.trainer,
            fields.format,
            dict(fields.signature),
            dict(fields.metrics),
            list(fields.aliases),
            fields.created_at,
        )

    @classmethod
    def get(cls, client: Client, id: str) -> ModelVersion:
        """The version of global id `id`."""
        node = client.api.model_version(id=id).node
        if not isinstance(node, ModelVersionQueryNodeModelVersion):
            raise NotFoundError(f"model version {id} is gone", "NOT_FOUND")
        return cls.of(client, node)

    def deploy(
        self,
        name: str,
        *,
        runtime: str | None = None,
        max_batch_size: int | None = None,
        max_wait_ms: float | None = None,
        max_queue_rows: int | None = None,
        drift_threshold: float | None = None,
    ) -> Deployment:
        """Serve it as `name` (CREATING at first: `.wait_ready()` on the answer). Left-out
        settings take the server's defaults; `InvalidInputError` names a bad one."""
        settings: CreateDeploymentInput = {"name": name, "modelVersion": self.id}
        if runtime is not None:
            settings["runtime"] = runtime
        if max_batch_size is not None:
            settings["maxBatchSize"] = max_batch_size
        if max_wait_ms is not None:
            settings["maxWaitMs"] = max_wait_ms
        if max_queue_rows is not None:
            settings["maxQueueRows"] = max_queue_rows
        if drift_threshold is not None:
            settings["driftThreshold"] = drift_threshold
        answer = self.client.api.create_deployment(input=settings).create_deployment
        return Deployment.of(self.client, raise_for(answer).deployment)

    def batch_predict(
        self, dataset_version: Identified | str, *, output_dataset: str | None = None
    ) -> BatchPredictionJob:
        """Score every row of `dataset_version` (a `DatasetVersion` or its global id) in a
        background job, into a new version of `output_dataset` (`<dataset>-predictions` by
        default): `.wait()` on the answer, then `.output`. `InvalidInputError` names what is
        refused (feature columns the version lacks...); no job is made then."""
        return submit_batch_prediction(
            self.client, dataset_version, output_dataset, model_version=self.id
        )


def _version_id(version: ModelVersion | str | None) -> str | None:
    return version.id if isinstance(version, ModelVersion) else version


@dataclass
class Deployment:
    """Model versions served under a name, as last read."""

    client: Client = field(repr=False)
    id: str
    name: str
    state: DeploymentState
    v2_model_name: str
    max_batch_size: int
    max_wait_ms: float
    runtime: str
    generation: int
    reason: str | None = None
    stable_version_id: str = ""
    stable_percent: int = 100
    canary_version_id: str | None = None
    canary_percent: int = 0
    shadow_version_id: str | None = None
    previous_stable_version_id: str | None = None
    signature: dict[str, Any] = field(default_factory=dict, repr=False)
    """The stable version's signature: what `predict` sends and reads."""

    @classmethod
    def of(cls, client: Client, fields: Any) -> Deployment:
        deployment = cls(
            client,
            fields.id,
            fields.name,
            fields.state,
            fields.v2_model_name,
            fields.max_batch_size,
            fields.max_wait_ms,
            fields.runtime,
            fields.generation,
        )
        deployment._read(fields)
        return deployment

    def _read(self, fields: Any) -> None:
        self.state, self.reason, self.generation = fields.state, fields.reason, fields.generation
        self.v2_model_name, self.max_batch_size = fields.v2_model_name, fields.max_batch_size
        traffic = fields.traffic
        self.stable_version_id = traffic.stable_version.id
        self.signature = dict(traffic.stable_version.signature)
        self.stable_percent, self.canary_percent = traffic.stable_percent, traffic.canary_percent
        self.canary_version_id = traffic.canary_version.id if traffic.canary_version else None
        self.shadow_version_id = traffic.shadow_version.id if traffic.shadow_version else None
        previous = fields.previous_stable_version
        self.previous_stable_version_id = previous.id if previous else None

    @classmethod
    def get(cls, client: Client, id: str) -> Deployment:
        """The deployment of global id `id`."""
        node = client.api.deployment(id=id).node
        if not isinstance(node, DeploymentQueryNodeDeployment):
            raise NotFoundError(f"deployment {id} is gone", "NOT_FOUND")
        return cls.of(client, node)

    def refresh(self) -> Deployment:
        """Read its state again; answers itself."""
        node = self.client.api.deployment(id=self.id).node
        if not isinstance(node, DeploymentQueryNodeDeployment):
            raise NotFoundError(f"deployment {self.id} is gone", "NOT_FOUND")
        self._read(node)
        return self

    def wait_ready(self, timeout: float | None = 300.0, poll_interval: float = 0.25) -> Deployment:
        """Return once it is READY; `DeploymentFailedError` if it FAILED or was stopped,
        `TimeoutError` if it is still starting (or updating) after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().state is not DeploymentState.READY:
            if self.state in (DeploymentState.FAILED, DeploymentState.STOPPED):
                why = f": {self.reason}" if self.reason else ""
                raise DeploymentFailedError(
                    f"deployment {self.name!r} is {self.state.value}{why}", self
                )
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"deployment {self.name!r} is still {self.state.value} after {timeout} s"
                )
            time.sleep(poll_interval)
        return self

    def update_traffic(
        self,
        *,
        canary: ModelVersion | str | None = None,
        canary_percent: int = 0,
        shadow: ModelVersion | str | None = None,
        stable_percent: int | None = None,
    ) -> Deployment:
        """Send `canary_percent` of the requests to `canary` (a `ModelVersion` or its id) and
        a copy of each to `shadow`; the stable version keeps the rest. It is UPDATING while the
        new split warms: `.wait_ready()` for it to serve."""
        change: UpdateDeploymentTrafficInput = {
            "deployment": self.id,
            "stablePercent": 100 - canary_percent if stable_percent is None else stable_percent,
            "canaryPercent": canary_percent,
            "canary": _version_id(canary),
            "shadow": _version_id(shadow),
        }
        answer = self.client.api.update_deployment_traffic(input=change)
        self._read(raise_for(answer.update_deployment_traffic).deployment)
        return self

    def promote(self) -> Deployment:
        """Make the canary the stable version, taking all the traffic."""
        answer = self.client.api.promote_deployment(deployment=self.id).promote_deployment
        self._read(raise_for(answer).deployment)
        return self

    def rollback(self) -> Deployment:
        """Return to the stable version before the last promotion."""
        answer = self.client.api.rollback_deployment(deployment=self.id).rollback_deployment
        self._read(raise_for(answer).deployment)
        return self

    def delete(self) -> Deployment:
        """Stop it: it answers what it has queued, then nothing more."""
        answer = self.client.api.delete_deployment(deployment=self.id).delete_deployment
        self._read(raise_for(answer).deployment)
        return self

    def drift(self) -> list[DriftReport]:
        """The newest drift report of each version it serves; empty before the first check."""
        return drift_reports(self.client, self.id)

    def batch_predict(
        self, dataset_version: Identified | str, *, output_dataset: str | None = None
    ) -> BatchPredictionJob:
        """As `ModelVersion.batch_predict`, with its stable version and runtime."""
        return submit_batch_prediction(
            self.client, dataset_version, output_dataset, deployment=self.id
        )

    def predict(self, frame: Frame, *, concurrency: int = DEFAULT_CONCURRENCY) -> pandas.DataFrame:
        """The model's outputs for the rows of `frame`, one row each, in its order.

        The rows go in requests of at most `max_batch_size`, `concurrency` of them at once,
        over V2 with binary tensors. An image input (`[-1, height, width, channels]`) takes a
        uint8 array of that shape, or PNG or JPEG files (a list of `bytes`, one per row), which
        the server decodes and fits to the model's size. `MissingColumnsError` names input
        columns `frame` lacks and `DeploymentNotReadyError` refuses a deployment that does not
        serve, both before any inference request; a refusal of the server is its typed
        exception.
        """
        import pandas

        columns = _columns_of(frame)
        _check_columns(columns, self.signature)
        self.refresh()
        if self.state not in _SERVING:
            raise DeploymentNotReadyError(
                f"deployment {self.name!r} is {self.state.value}, not READY", self.state
            )
        inputs = _check_columns(columns, self.signature)
        outputs = [spec["name"] for spec in self.signature["outputs"]]
        rows = len(next(iter(inputs.values()))[0]) if inputs else 0
        step = max(1, self.max_batch_size)
        starts = range(0, rows, step)
        path = f"/v2/models/{quote(self.v2_model_name, safe='')}/infer"

        def infer(start: int) -> dict[str, np.ndarray]:
            stop = start + step
            batch = {name: (values[start:stop], dt) for name, (values, dt) in inputs.items()}
            body, headers = v2.encode_request(batch, outputs)
            with answered(self.client.url):
                response = self.client.http.post(
                    path, content=body, headers=headers, timeout=PREDICT_TIMEOUT_S
                )
            return _decoded(self.client.url, response)

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            answers = list(pool.map(infer, starts))
        result: dict[str, Any] = {}
        for name in outputs:
            parts = [answer[name] for answer in answers]
            joined = np.concatenate(parts) if parts else np.empty((0,))
            result[name] = list(joined) if joined.ndim > 1 else joined
        return pandas.DataFrame(result, columns=outputs)


def _decoded(url: str, response: httpx.Response) -> dict[str, np.ndarray]:
    if response.is_success:
        header_length = response.headers.get(v2.INFERENCE_HEADER_CONTENT_LENGTH)
        return v2.decode_response(response.content, header_length)
    if response.status_code == 503:  # a full queue, or a deployment stopping: retry later
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body if isinstance(body, dict) else {}
        message = str(error.get("error") or "the deployment cannot take requests now")
        raise UnavailableError(message, str(error.get("code", "")))
    check_response(url, response)  # raises the typed exception of the V2 error
    raise AiaasClientError(f"the aiaas server at {url} answered HTTP {response.status_code}")


def _columns_of(frame: Frame) -> dict[str, Any]:
    """Column name -> values (a numpy array, a pyarrow array, a list...)."""
    if isinstance(frame, Mapping):
        return dict(frame)
    column_names = getattr(frame, "column_names", None)
    if column_names is not None:  # a pyarrow Table
        return {name: frame.column(name).to_numpy() for name in column_names}
    return {str(name): frame[name].to_numpy() for name in frame.columns}  # a DataFrame


def _check_columns(
    columns: dict[str, Any], signature: dict[str, Any]
) -> dict[str, tuple[np.ndarray, str]]:
    """The signature's inputs as arrays with their V2 datatypes; `MissingColumnsError` for
    those `columns` lack, and `InvalidInputError` for columns of unequal lengths."""
    specs = signature.get("inputs", [])
    missing = [spec["name"] for spec in specs if spec["name"] not in columns]
    if missing:
        raise MissingColumnsError(missing)
    inputs: dict[str, tuple[np.ndarray, str]] = {}
    for spec in specs:
        inputs[spec["name"]] = v2.tensor_of(columns[spec["name"]], spec)
    lengths = {len(array) for array, _ in inputs.values()}
    if len(lengths) > 1:
        raise InvalidInputError(f"the frame's columns have different lengths: {sorted(lengths)}")
    return inputs
