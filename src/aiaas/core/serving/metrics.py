"""Prometheus metrics of model serving, for one server process.

Every `ServingMetrics` owns a private `CollectorRegistry`, never prometheus_client's global one:
two apps in one process (and every test) would otherwise share, and double-register, one set of
series.

Three kinds of series, each kept where it is cheapest:

- **Events** (requests, batches, shadow calls) are counters and histograms updated on the asyncio
  event loop for every request. `.labels(...)` validates and locks on every call, so each label
  set's children are looked up once and cached in a plain dict keyed by the label values.
- **Live state** (queue depth, compilations) already lives in each model's batcher. A custom
  collector reads it through callables at scrape time: nothing is written on the hot path, and the
  series of an untracked (unloaded) model vanishes at once instead of lingering at its last value.
- **Drift** is computed by a background job and stored in PostgreSQL. The route hands over the
  complete current set now and then (`replace_drift`); a custom collector exposes that snapshot,
  so a feature or version absent from the new snapshot is absent from the next scrape.

Errors are the `outcome` label of `aiaas_inference_requests_total`, not a separate counter: the
error ratio is then one query over one family, and two counters bumped separately could disagree.

Label values that users choose (feature names come from their datasets) need no sanitising here:
prometheus_client escapes backslashes, quotes and newlines in label values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal, TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

Role = Literal["stable", "canary", "shadow"]
InferenceProtocol = Literal["graphql", "v2"]
# "rejected": refused before running (queue full, model not ready); "error": failed while running.
Outcome = Literal["ok", "invalid_input", "rejected", "error"]

# Label values are checked only when a label set is first seen (off the hot path): a typo would
# otherwise create a new series forever.
_ALLOWED = {"role": Role, "protocol": InferenceProtocol, "outcome": Outcome}
_ALLOWED_VALUES = {name: get_args(literal) for name, literal in _ALLOWED.items()}

LATENCY_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS_ROWS = tuple(float(2**exponent) for exponent in range(11))  # 1 .. 1024

_VERSION_LABELS = ("project", "deployment", "version")
_SERVED_LABELS = (*_VERSION_LABELS, "role")
_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """The label set of one model version as one deployment serves it."""

    project: str  # project slug
    deployment: str  # deployment name
    version: str  # model version number, as a string
    role: Role

    def label_values(self) -> tuple[str, str, str, str]:
        return (self.project, self.deployment, self.version, self.role)


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The latest drift of one deployed version: PSI per input feature, and whether it alerts."""

    project: str
    deployment: str
    version: str
    alert: bool
    feature_psi: Mapping[str, float]

    def label_values(self) -> tuple[str, str, str]:
        return (self.project, self.deployment, self.version)


def _belongs(
    labelvalues: tuple[str, ...], project: str, deployment: str, version: str | None
) -> bool:
    """Whether labels that start (project, deployment, version, ...) are among those forgotten."""
    return labelvalues[:2] == (project, deployment) and version in (None, labelvalues[2])


@dataclass(frozen=True, slots=True)
class _TrackedModel:
    served: ServedVersion
    queue_depth: Callable[[], int]
    compilations: Callable[[], int]


class _ScrapeTimeCollector:
    """Reads live model state and the latest drift snapshot only when Prometheus scrapes.

    Both are replaced, never mutated: a scrape in another thread reads the state it started with.
    """

    def __init__(self) -> None:
        self.tracked: dict[tuple[str, str, str], _TrackedModel] = {}
        self.drift: tuple[DriftReport, ...] = ()

    def collect(self) -> Iterator[Metric]:
        queue_depth = GaugeMetricFamily(
            "aiaas_inference_queue_depth_rows",
            "Rows waiting in the batcher queue of a loaded model version, read at scrape time.",
            labels=_SERVED_LABELS,
        )
        compilations = CounterMetricFamily(
            "aiaas_inference_compilations_total",
            "Compilations of a loaded model version since it was loaded; flat in steady state.",
            labels=_SERVED_LABELS,
        )
        for model in self.tracked.values():
            readings = ((queue_depth, model.queue_depth), (compilations, model.compilations))
            for family, read in readings:
                try:
                    value = read()
                except Exception:  # one broken callable must not fail the whole scrape
                    logger.exception("reading %s of %s failed", family.name, model.served)
                    continue
                family.add_metric(model.served.label_values(), value)
        psi = GaugeMetricFamily(
            "aiaas_inference_feature_drift_psi",
            "Population stability index of one input feature against the training data.",
            labels=(*_VERSION_LABELS, "feature"),
        )
        alert = GaugeMetricFamily(
            "aiaas_inference_drift_alert",
            "1 when the drift of a deployed version crosses its alert threshold, else 0.",
            labels=_VERSION_LABELS,
        )
        for report in self.drift:
            alert.add_metric(report.label_values(), 1.0 if report.alert else 0.0)
            for feature, feature_psi in report.feature_psi.items():
                psi.add_metric((*report.label_values(), feature), feature_psi)
        yield from (queue_depth, compilations, psi, alert)


class ServingMetrics:
    """The serving metrics of one server process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        per_request = (*_SERVED_LABELS, "protocol", "outcome")
        shadow_pair = (*_VERSION_LABELS, "answered_version")
        self._requests = Counter(
            "aiaas_inference_requests_total", "Inference requests by how they ended.",
            per_request, registry=registry,
        )  # fmt: skip
        self._request_duration = Histogram(
            "aiaas_inference_request_duration_seconds", "From receiving a request to its answer.",
            per_request, buckets=LATENCY_BUCKETS_SECONDS, registry=registry,
        )  # fmt: skip
        self._batch_size = Histogram(
            "aiaas_inference_batch_size_rows", "Rows per model call made by the adaptive batcher.",
            _SERVED_LABELS, buckets=BATCH_SIZE_BUCKETS_ROWS, registry=registry,
        )  # fmt: skip
        self._batch_duration = Histogram(
            "aiaas_inference_batch_duration_seconds", "Time one batched model call took to run.",
            _SERVED_LABELS, buckets=LATENCY_BUCKETS_SECONDS, registry=registry,
        )  # fmt: skip
        self._batch_failures = Counter(
            "aiaas_inference_batch_failures_total", "Batched model calls that raised.",
            _SERVED_LABELS, registry=registry,
        )  # fmt: skip
        self._shadow_requests = Counter(
            "aiaas_inference_shadow_requests_total", "Requests mirrored to a shadow version.",
            (*shadow_pair, "outcome"), registry=registry,
        )  # fmt: skip
        self._shadow_disagreements = Counter(
            "aiaas_inference_shadow_disagreements_total",
            "Shadow answers that differed from the answer the caller was given.",
            shadow_pair, registry=registry,
        )  # fmt: skip
        self._scrape_time = _ScrapeTimeCollector()
        registry.register(self._scrape_time)
        # Every label tuple handed to `.labels()`, per metric, so that `forget` can remove them.
        self._label_sets: dict[MetricWrapperBase, set[tuple[str, ...]]] = {}
        self._request_children: dict[tuple[ServedVersion, str, str], tuple[Counter, Histogram]]
        self._request_children = {}
        self._batch_children: dict[ServedVersion, tuple[Histogram, Histogram, Counter]] = {}
        self._shadow_children: dict[tuple[ServedVersion, str, str], tuple[Counter, Counter]] = {}

    def observe_request(
        self,
        served: ServedVersion,
        *,
        protocol: InferenceProtocol,
        outcome: Outcome,
        duration_s: float,
    ) -> None:
        """Count one finished inference request and record how long it took."""
        children = self._request_children.get((served, protocol, outcome))
        if children is None:
            self._check(served, protocol=protocol, outcome=outcome)
            labelvalues = (*served.label_values(), protocol, outcome)
            children = (
                self._child(self._requests, labelvalues),
                self._child(self._request_duration, labelvalues),
            )
            self._request_children[(served, protocol, outcome)] = children
        count, duration = children
        count.inc()
        duration.observe(duration_s)

    def observe_batch(
        self, served: ServedVersion, *, rows: int, execution_s: float, failed: bool
    ) -> None:
        """Record one batched model call: its rows, its run time, and whether it raised."""
        children = self._batch_children.get(served)
        if children is None:
            self._check(served)
            labelvalues = served.label_values()
            children = (
                self._child(self._batch_size, labelvalues),
                self._child(self._batch_duration, labelvalues),
                # Created at zero, so that a failure ratio exists before the first failure.
                self._child(self._batch_failures, labelvalues),
            )
            self._batch_children[served] = children
        size, duration, failures = children
        size.observe(rows)
        duration.observe(execution_s)
        if failed:
            failures.inc()

    def observe_shadow(
        self, shadow: ServedVersion, *, answered_version: str, outcome: Outcome, agreed: bool | None
    ) -> None:
        """Count one call mirrored to `shadow`; `agreed` is None when nothing was compared."""
        key = (shadow, answered_version, outcome)
        children = self._shadow_children.get(key)
        if children is None:
            self._check(shadow, outcome=outcome)
            pair = (shadow.project, shadow.deployment, shadow.version, answered_version)
            children = (
                self._child(self._shadow_requests, (*pair, outcome)),
                self._child(self._shadow_disagreements, pair),  # at zero, as batch failures
            )
            self._shadow_children[key] = children
        requests, disagreements = children
        requests.inc()
        if agreed is False:
            disagreements.inc()

    def track_model(
        self,
        served: ServedVersion,
        *,
        queue_depth: Callable[[], int],
        compilations: Callable[[], int],
    ) -> None:
        """Expose a loaded version's live state; tracking it again (say, a new role) replaces it.

        The callables run at every scrape, possibly off the event loop: they must be cheap reads
        that never block, such as the length of a deque or a counter the model keeps.
        """
        self._check(served)
        tracked = _TrackedModel(served, queue_depth, compilations)
        state = self._scrape_time
        state.tracked = {**state.tracked, served.label_values()[:3]: tracked}

    def untrack_model(self, served: ServedVersion) -> None:
        """Stop exposing a version's live state, once it is unloaded. Its counters stay."""
        key = served.label_values()[:3]
        self._scrape_time.tracked = {k: m for k, m in self._scrape_time.tracked.items() if k != key}

    def replace_drift(self, reports: Iterable[DriftReport]) -> None:
        """Make `reports`, the complete current drift, the only drift exposed from now on."""
        # Copied, so that a caller mutating its mappings later cannot change what is exposed.
        snapshot = tuple(replace(r, feature_psi=dict(r.feature_psi)) for r in reports)
        if len({report.label_values() for report in snapshot}) != len(snapshot):
            raise ValueError("more than one drift report for a deployed version")
        self._scrape_time.drift = snapshot

    def forget(self, project: str, deployment: str, *, version: str | None = None) -> None:
        """Remove every series of a deployment, or of one of its versions, e.g. once deleted.

        A request still in flight when this runs may create its series again; the next `forget`
        or a restart removes it.
        """
        for metric, label_sets in self._label_sets.items():
            for labelvalues in [v for v in label_sets if _belongs(v, project, deployment, version)]:
                metric.remove(*labelvalues)
                label_sets.discard(labelvalues)

        def kept(labelvalues: tuple[str, ...]) -> bool:
            return not _belongs(labelvalues, project, deployment, version)

        self._request_children = {
            k: c for k, c in self._request_children.items() if kept(k[0].label_values())
        }
        self._batch_children = {
            k: c for k, c in self._batch_children.items() if kept(k.label_values())
        }
        self._shadow_children = {
            k: c for k, c in self._shadow_children.items() if kept(k[0].label_values())
        }
        state = self._scrape_time
        state.tracked = {k: m for k, m in state.tracked.items() if kept(k)}
        state.drift = tuple(r for r in state.drift if kept(r.label_values()))

    def render(self, accept_header: str | None = None) -> tuple[bytes, str]:
        """The exposition for a scrape, in the format its Accept header asks for, and its type."""
        encode, content_type = choose_encoder(accept_header or "")
        return encode(self.registry), content_type

    def _child(self, metric: _Metric, labelvalues: tuple[str, ...]) -> _Metric:
        self._label_sets.setdefault(metric, set()).add(labelvalues)
        return metric.labels(*labelvalues)

    @staticmethod
    def _check(served: ServedVersion, **chosen: str) -> None:
        for name, value in {"role": served.role, **chosen}.items():
            if value not in _ALLOWED_VALUES[name]:
                raise ValueError(f"{name} must be one of {_ALLOWED_VALUES[name]}, not {value!r}")
