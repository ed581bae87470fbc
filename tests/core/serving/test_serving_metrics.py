"""The serving metrics as Prometheus sees them: every assertion reads a rendered scrape back through
prometheus_client's own parser, so it checks the exposition and not the objects behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from aiaas.core.serving.metrics import DriftReport, ServedVersion, ServingMetrics

STABLE = ServedVersion("shop", "churn", "3", "stable")
CANARY = ServedVersion("shop", "churn", "4", "canary")
SHADOW = ServedVersion("shop", "churn", "5", "shadow")
OTHER_DEPLOYMENT = ServedVersion("shop", "fraud", "1", "stable")
BLUE = ServedVersion("shop", "churn", "3", "blue")  # type: ignore[arg-type]  # no such role

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: ServingMetrics) -> Scrape:
    text = metrics.render()[0].decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels_of(served: ServedVersion, **extra: str) -> dict[str, str]:
    return {
        "project": served.project,
        "deployment": served.deployment,
        "version": served.version,
        "role": served.role,
        **extra,
    }


def value(scraped: Scrape, name: str, labels: dict[str, str]) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


def series(scraped: Scrape, name: str) -> list[dict[str, str]]:
    return sorted((dict(labels) for sample, labels in scraped if sample == name), key=str)


def test_requests_are_counted_and_timed_per_label_set() -> None:
    metrics = ServingMetrics()
    for duration_s in (0.25, 0.5, 20.0):
        metrics.observe_request(STABLE, protocol="graphql", outcome="ok", duration_s=duration_s)
    metrics.observe_request(STABLE, protocol="v2", outcome="rejected", duration_s=0.0001)
    metrics.observe_request(CANARY, protocol="graphql", outcome="error", duration_s=1.0)
    scraped = scrape(metrics)

    ok = labels_of(STABLE, protocol="graphql", outcome="ok")
    assert value(scraped, "aiaas_inference_requests_total", ok) == 3
    rejected = labels_of(STABLE, protocol="v2", outcome="rejected")
    assert value(scraped, "aiaas_inference_requests_total", rejected) == 1
    failed = labels_of(CANARY, protocol="graphql", outcome="error")
    assert value(scraped, "aiaas_inference_requests_total", failed) == 1
    assert len(series(scraped, "aiaas_inference_requests_total")) == 3

    duration = "aiaas_inference_request_duration_seconds"
    cumulative = {"0.1": 0, "0.25": 1, "0.5": 2, "10.0": 2, "+Inf": 3}
    for le, count in cumulative.items():
        assert value(scraped, f"{duration}_bucket", {**ok, "le": le}) == count, le
    assert value(scraped, f"{duration}_count", ok) == 3
    assert value(scraped, f"{duration}_sum", ok) == 20.75
    assert value(scraped, f"{duration}_bucket", {**rejected, "le": "0.0005"}) == 1


def test_batches_record_rows_run_time_and_failures() -> None:
    metrics = ServingMetrics()
    for rows in (1, 3, 64, 1024, 2000):
        metrics.observe_batch(STABLE, rows=rows, execution_s=0.5, failed=rows == 64)
    metrics.observe_batch(CANARY, rows=2, execution_s=0.002, failed=False)
    scraped = scrape(metrics)

    stable = labels_of(STABLE)
    cumulative = {"1.0": 1, "2.0": 1, "4.0": 2, "64.0": 3, "512.0": 3, "1024.0": 4, "+Inf": 5}
    for le, count in cumulative.items():
        bucket = {**stable, "le": le}
        assert value(scraped, "aiaas_inference_batch_size_rows_bucket", bucket) == count, le
    assert value(scraped, "aiaas_inference_batch_size_rows_sum", stable) == 3092
    assert value(scraped, "aiaas_inference_batch_duration_seconds_sum", stable) == 2.5
    assert value(scraped, "aiaas_inference_batch_duration_seconds_count", stable) == 5
    assert value(scraped, "aiaas_inference_batch_failures_total", stable) == 1
    # A version that never failed shows a failure count of zero rather than no series.
    assert value(scraped, "aiaas_inference_batch_failures_total", labels_of(CANARY)) == 0


def test_shadow_calls_and_disagreements_are_counted_against_the_answered_version() -> None:
    metrics = ServingMetrics()
    metrics.observe_shadow(SHADOW, answered_version="3", outcome="ok", agreed=True)
    metrics.observe_shadow(SHADOW, answered_version="3", outcome="ok", agreed=False)
    metrics.observe_shadow(SHADOW, answered_version="3", outcome="error", agreed=None)
    metrics.observe_shadow(SHADOW, answered_version="4", outcome="ok", agreed=True)
    scraped = scrape(metrics)

    def pair(answered: str, **extra: str) -> dict[str, str]:
        return {"project": "shop", "deployment": "churn", "version": "5"} | {
            "answered_version": answered,
            **extra,
        }

    shadow_requests = "aiaas_inference_shadow_requests_total"
    assert value(scraped, shadow_requests, pair("3", outcome="ok")) == 2
    assert value(scraped, shadow_requests, pair("3", outcome="error")) == 1
    assert value(scraped, shadow_requests, pair("4", outcome="ok")) == 1
    disagreements = "aiaas_inference_shadow_disagreements_total"
    assert value(scraped, disagreements, pair("3")) == 1
    assert value(scraped, disagreements, pair("4")) == 0


def test_queue_depth_and_compilations_are_read_at_every_scrape() -> None:
    metrics = ServingMetrics()
    depth, compiled = [0], [4]
    metrics.track_model(STABLE, queue_depth=lambda: depth[0], compilations=lambda: compiled[0])
    metrics.observe_request(STABLE, protocol="v2", outcome="ok", duration_s=0.01)
    labels = labels_of(STABLE)
    assert value(scrape(metrics), "aiaas_inference_queue_depth_rows", labels) == 0
    assert value(scrape(metrics), "aiaas_inference_compilations_total", labels) == 4

    depth[0], compiled[0] = 37, 5
    assert value(scrape(metrics), "aiaas_inference_queue_depth_rows", labels) == 37
    assert value(scrape(metrics), "aiaas_inference_compilations_total", labels) == 5

    metrics.untrack_model(STABLE)
    scraped = scrape(metrics)
    assert series(scraped, "aiaas_inference_queue_depth_rows") == []
    assert series(scraped, "aiaas_inference_compilations_total") == []
    # Unloading ends the live state only; what the version served is still counted.
    ok = labels_of(STABLE, protocol="v2", outcome="ok")
    assert value(scraped, "aiaas_inference_requests_total", ok) == 1


def test_tracking_a_version_again_replaces_its_role() -> None:
    metrics = ServingMetrics()
    promoted = ServedVersion("shop", "churn", "4", "stable")
    metrics.track_model(CANARY, queue_depth=lambda: 1, compilations=lambda: 0)
    metrics.track_model(promoted, queue_depth=lambda: 2, compilations=lambda: 0)
    assert series(scrape(metrics), "aiaas_inference_queue_depth_rows") == [labels_of(promoted)]


def test_a_failing_live_read_drops_only_its_own_series(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServingMetrics()

    def broken() -> int:
        raise RuntimeError("batcher gone")

    metrics.track_model(STABLE, queue_depth=broken, compilations=lambda: 3)
    metrics.track_model(CANARY, queue_depth=lambda: 9, compilations=lambda: 3)
    with caplog.at_level(logging.ERROR, logger="aiaas.core.serving.metrics"):
        scraped = scrape(metrics)
    assert series(scraped, "aiaas_inference_queue_depth_rows") == [labels_of(CANARY)]
    assert value(scraped, "aiaas_inference_compilations_total", labels_of(STABLE)) == 3
    assert "batcher gone" in caplog.text


def test_replace_drift_exposes_only_the_latest_snapshot() -> None:
    metrics = ServingMetrics()
    features = {"age": 0.05, "income": 0.31}
    metrics.replace_drift(
        [
            DriftReport("shop", "churn", "3", alert=True, feature_psi=features),
            DriftReport("shop", "churn", "4", alert=False, feature_psi={"age": 0.01}),
        ]
    )
    features["age"] = 99.0  # the caller's mapping changing later must not reach the scrape
    v3 = {"project": "shop", "deployment": "churn", "version": "3"}
    v4 = {**v3, "version": "4"}
    scraped = scrape(metrics)
    assert value(scraped, "aiaas_inference_feature_drift_psi", {**v3, "feature": "age"}) == 0.05
    assert value(scraped, "aiaas_inference_feature_drift_psi", {**v3, "feature": "income"}) == 0.31
    assert value(scraped, "aiaas_inference_drift_alert", v3) == 1
    assert value(scraped, "aiaas_inference_drift_alert", v4) == 0

    metrics.replace_drift(
        [DriftReport("shop", "churn", "3", alert=False, feature_psi={"zip": 0.2})]
    )
    scraped = scrape(metrics)
    assert series(scraped, "aiaas_inference_feature_drift_psi") == [{**v3, "feature": "zip"}]
    assert series(scraped, "aiaas_inference_drift_alert") == [v3]
    assert value(scraped, "aiaas_inference_drift_alert", v3) == 0


def test_replace_drift_refuses_two_reports_for_one_version_and_keeps_the_old_snapshot() -> None:
    metrics = ServingMetrics()
    metrics.replace_drift([DriftReport("shop", "churn", "3", alert=False, feature_psi={"a": 0.1})])
    twice = [
        DriftReport("shop", "churn", "3", alert=flag, feature_psi={}) for flag in (True, False)
    ]
    with pytest.raises(ValueError, match="more than one drift report"):
        metrics.replace_drift(twice)
    assert len(series(scrape(metrics), "aiaas_inference_feature_drift_psi")) == 1


def fill(metrics: ServingMetrics, *served_versions: ServedVersion) -> None:
    """Give every one of `served_versions` one series of every kind."""
    for served in served_versions:
        metrics.observe_request(served, protocol="graphql", outcome="ok", duration_s=0.01)
        metrics.observe_batch(served, rows=4, execution_s=0.01, failed=False)
        metrics.observe_shadow(served, answered_version="1", outcome="ok", agreed=True)
        metrics.track_model(served, queue_depth=lambda: 1, compilations=lambda: 1)
    metrics.replace_drift(
        DriftReport(served.project, served.deployment, served.version, True, {"x": 0.3})
        for served in served_versions
    )


def deployments_in(scraped: Scrape) -> set[tuple[str, str]]:
    """The (deployment, version) of every series in a scrape."""
    return {(dict(labels)["deployment"], dict(labels)["version"]) for _, labels in scraped}


def test_forget_removes_every_series_of_a_deployment_and_nothing_else() -> None:
    metrics = ServingMetrics()
    fill(metrics, STABLE, CANARY, OTHER_DEPLOYMENT)
    every_name = {name for name, _ in scrape(metrics)}

    metrics.forget("shop", "churn", version="4")
    assert deployments_in(scrape(metrics)) == {("churn", "3"), ("fraud", "1")}
    metrics.forget("shop", "churn")
    scraped = scrape(metrics)
    assert deployments_in(scraped) == {("fraud", "1")}
    # Every kind of series survives for the other deployment, so forget removed no more.
    assert {name for name, _ in scraped} == every_name

    # A forgotten deployment that serves again starts from zero, and is scraped again.
    metrics.observe_request(STABLE, protocol="graphql", outcome="ok", duration_s=0.01)
    ok = labels_of(STABLE, protocol="graphql", outcome="ok")
    assert value(scrape(metrics), "aiaas_inference_requests_total", ok) == 1


def test_two_instances_share_no_series() -> None:
    first, second = ServingMetrics(), ServingMetrics()
    fill(first, STABLE)
    assert deployments_in(scrape(first)) == {("churn", "3")}
    assert deployments_in(scrape(second)) == set()


def test_label_values_from_user_data_cannot_break_the_exposition() -> None:
    metrics = ServingMetrics()
    hostile = 'a"b\n} evil_metric 1\n'
    metrics.replace_drift(
        [DriftReport("shop", "churn", "3", False, {hostile: 0.5, "back\\slash": 0.25})]
    )
    body, _ = metrics.render()
    text = body.decode()
    assert 'feature="a\\"b\\n} evil_metric 1\\n"' in text
    assert 'feature="back\\\\slash"' in text
    assert not any(line.startswith("evil_metric") for line in text.splitlines())

    openmetrics, _ = metrics.render("application/openmetrics-text; version=1.0.0")
    for parse, exposition in (
        (text_string_to_metric_families, text),
        (parse_openmetrics, openmetrics.decode()),
    ):
        families = {family.name: family for family in parse(exposition)}
        assert "evil_metric" not in families
        psi = {
            s.labels["feature"]: s.value
            for s in families["aiaas_inference_feature_drift_psi"].samples
        }
        assert psi == {hostile: 0.5, "back\\slash": 0.25}


def test_render_speaks_the_format_the_scraper_asks_for() -> None:
    metrics = ServingMetrics()
    _, plain = metrics.render()
    assert plain.startswith("text/plain; version=0.0.4")
    body, openmetrics = metrics.render("application/openmetrics-text; version=1.0.0")
    assert openmetrics.startswith("application/openmetrics-text; version=1.0.0")
    assert body.decode().endswith("# EOF\n")


@pytest.mark.parametrize(
    "observe",
    [
        lambda m: m.observe_request(STABLE, protocol="grpc", outcome="ok", duration_s=0.1),
        lambda m: m.observe_request(STABLE, protocol="v2", outcome="timeout", duration_s=0.1),
        lambda m: m.observe_batch(BLUE, rows=1, execution_s=0.1, failed=False),
        lambda m: m.track_model(BLUE, queue_depth=lambda: 0, compilations=lambda: 0),
    ],
    ids=["protocol", "outcome", "role", "tracked-role"],
)
def test_unknown_label_values_are_refused_before_they_become_series(
    observe: Callable[[ServingMetrics], object],
) -> None:
    metrics = ServingMetrics()
    with pytest.raises(ValueError, match="must be one of"):
        observe(metrics)
    assert deployments_in(scrape(metrics)) == set()
