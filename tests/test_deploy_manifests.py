"""deploy/, checked offline: CI has neither a Docker daemon nor a Kubernetes cluster.

- Every Kubernetes manifest, of the kustomize base and of the production overlay as rendered
  here, validates against the Kubernetes schemas that `kubernetes-validate` ships, and keeps the
  restricted securityContext, resources, probes and Secret references the platform needs.
- Every `aiaas` command the Dockerfile, docker-compose.yml and the manifests run parses with the
  real CLI, so a renamed command or role fails here; every AIAAS_* name is a real setting.
- Every PromQL expression of the Grafana dashboards and the alert rules names only series an
  `aiaas serve` process exports (read from its metrics registry) or that Prometheus makes (`up`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aiaas.core.config import CONFIG_FILE_ENV, Config, env_name
from deploy_checks import (
    WORKLOADS,
    cli_command,
    containers_of,
    exported_series,
    load_documents,
    metric_names,
    render,
    shell_invocations,
)

DEPLOY = Path(__file__).parents[1] / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
PRODUCTION = DEPLOY / "kubernetes" / "overlays" / "production"
# The oldest Kubernetes release the manifests claim, and the newest whose schemas are shipped.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PROMETHEUS_MADE = {"up"}
"""Series Prometheus writes for every target itself; nothing else may come from outside aiaas."""
SETTINGS = {env_name(field) for field in Config.model_fields} | {CONFIG_FILE_ENV}

# --- what the platform exports ------------------------------------------------------------


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, project) (rate(a_bucket{x="y", z=~"$v"}'
        "[$__rate_interval]))) / on (project) group_left b_total offset 5m > bool 1e3 and c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert metric_names("up == 0") == {"up"}


def test_the_exported_series_are_read_from_the_registry() -> None:
    series = exported_series()
    assert {
        "aiaas_inference_requests_total",
        "aiaas_inference_request_duration_seconds_bucket",
        "aiaas_inference_queue_depth_rows",
        "aiaas_inference_drift_alert",
    } <= series
    assert "aiaas_inference_requests" not in series  # a counter is exposed with `_total`


# --- the CLI the artefacts run -------------------------------------------------------------


def test_a_missing_command_or_role_fails_the_check() -> None:
    assert cli_command(["serve", "--role", "inference"]) == ("serve",)
    assert cli_command(["db", "upgrade"]) == ("db", "upgrade")
    with pytest.raises(AssertionError, match="no such command"):
        cli_command(["db", "migrate"])
    with pytest.raises(AssertionError, match="--role"):
        cli_command(["serve", "--role", "trainer"])


def test_every_aiaas_setting_named_in_deploy_exists() -> None:
    names = {
        (path.relative_to(DEPLOY).as_posix(), name)
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in re.findall(r"\bAIAAS_[A-Z0-9_]+", path.read_text(encoding="utf-8"))
    }
    assert len(names) > 20
    assert [(where, name) for where, name in sorted(names) if name not in SETTINGS] == []


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    lines = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    stages: list[list[str]] = []
    for line in (line.strip() for line in lines):
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def test_the_image_is_multi_stage_non_root_and_runs_real_commands() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert final[0].startswith("FROM ${PYTHON_IMAGE}")
    assert any("--constraint constraints.txt" in line for line in stages[0])
    # No build tools in the final image: nothing is installed there, only copied in.
    installs = re.compile(r"\b(pip|apt-get|apt|gcc|wheel)\b")
    assert not [line for line in final if line.startswith("RUN") and installs.search(line)]
    uid = re.search(r"ARG APP_UID=(\d+)", text)
    assert uid and int(uid.group(1)) > 0
    assert f"USER {'${APP_UID}'}:{'${APP_UID}'}" in final
    instructions = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in final}
    assert json.loads(instructions["ENTRYPOINT"]) == ["aiaas"]
    assert cli_command(json.loads(instructions["CMD"])) == ("serve",)
    usage = re.findall(r"^#\s+docker run aiaas (.+?)(?:\s{2,}.*)?$", text, flags=re.M)
    runs = {
        cli_command(shlex.split(line.replace("api|inference|all", role)))
        for line in usage
        for role in ("api", "inference", "all")
    }
    assert runs == {("serve",), ("worker",), ("db", "upgrade")}


# --- docker-compose.yml --------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def aiaas_runs(service: dict[str, Any]) -> list[list[str]]:
    if service.get("entrypoint") is None:
        return [service["command"]]
    assert service["entrypoint"][:2] == ["/bin/sh", "-ec"]
    return [run for script in service["command"] for run in shell_invocations(script)]


def test_compose_runs_every_role_once_migrated() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "seaweedfs", "migrate", "prometheus", "grafana"} <= set(services)
    platform = {name: s for name, s in services.items() if s.get("build", {}).get("dockerfile")}
    runs: dict[str, list[tuple[str, ...]]] = {}
    for name, service in platform.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        for arguments in aiaas_runs(service):
            path = cli_command(arguments)
            role = arguments[arguments.index("--role") + 1] if "--role" in arguments else None
            runs.setdefault(name, []).append((*path, role) if path == ("serve",) else path)
        env = service.get("environment", {})
        assert set(env) <= SETTINGS, name
        # Only the migrations get the owner's URL; everything else connects as the app role.
        assert ("AIAAS_DATABASE_OWNER_URL" in env) == (name == "migrate"), name
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    assert runs["migrate"] == [("db", "upgrade")]
    assert runs["api"] == [("serve", "api")] and runs["inference"] == [("serve", "inference")]
    assert [name for name, paths in runs.items() if paths == [("worker",)]] == [
        "worker-1",
        "worker-2",
    ]
    assert ("users", "grant-platform-role") in runs["prometheus-token"]


def test_compose_mounts_files_that_exist() -> None:
    services = compose()["services"]
    sources = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert [s for s in sources if not (DEPLOY / s).exists()] == []
    mounted = {volume.split(":")[1] for volume in services["prometheus"]["volumes"]}
    rule_files = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for pattern in rule_files["rule_files"]:
        assert str(Path(pattern).parent) in mounted
    grafana = {volume.split(":")[0] for volume in services["grafana"]["volumes"]}
    assert {"./grafana/provisioning", "./grafana/dashboards"} <= grafana


# --- Prometheus and Grafana ----------------------------------------------------------------


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert selector, query
            yield f"variable {variable['name']}", selector.group(1)


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules += group["rules"]
    return rules


def test_dashboards_parse_and_query_only_exported_series() -> None:
    exported = exported_series() | PROMETHEUS_MADE
    paths = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert [p.stem for p in paths] == ["aiaas-platform", "aiaas-serving", "aiaas-training"]
    uids = set()
    for path in paths:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        uids.add(dashboard["uid"])
        queries = list(dashboard_queries(dashboard))
        assert queries, path.name
        unknown = [(t, sorted(metric_names(q) - exported)) for t, q in queries]
        assert [(title, names) for title, names in unknown if names] == [], path.name
        assert all(metric_names(query) for _, query in queries), path.name
    assert len(uids) == len(paths)


def test_alert_rules_name_only_exported_series() -> None:
    exported = exported_series() | PROMETHEUS_MADE
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names) and "AiaasDriftAlert" in names
    for rule in rules:
        assert metric_names(rule["expr"]), rule["alert"]
        assert metric_names(rule["expr"]) <= exported, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]


def test_a_query_of_a_series_nobody_exports_is_caught() -> None:
    exported = exported_series() | PROMETHEUS_MADE
    expr = 'sum(rate(aiaas_training_jobs_total{state="failed"}[5m])) > 0'
    assert metric_names(expr) - exported == {"aiaas_training_jobs_total"}


# --- Kubernetes ----------------------------------------------------------------------------


# Every file of the base but kustomize's own, which is no Kubernetes resource.
MANIFEST_FILES = sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_base_lists_every_manifest_file() -> None:
    listed = load_documents(BASE / "kustomization.yaml")[0]["resources"]
    assert sorted(listed) == [p.name for p in MANIFEST_FILES]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_each_base_manifest_validates(path: Path, version: str) -> None:
    for doc in load_documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", [BASE, PRODUCTION], ids=["base", "production"])
def test_the_rendered_kustomization_validates(overlay: Path, version: str) -> None:
    for doc in render(overlay):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_wrong_manifest() -> None:
    deployment = next(d for d in render(BASE) if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsRoot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_the_production_overlay_patches_the_base() -> None:
    base = {(d["kind"], d["metadata"]["name"]): d for d in render(BASE)}
    prod = {(d["kind"], d["metadata"]["name"]): d for d in render(PRODUCTION)}
    assert set(prod) == {*base, ("Namespace", "aiaas")}
    assert {d["metadata"].get("namespace") for k, d in prod.items() if k[0] != "Namespace"} == {
        "aiaas"
    }
    worker = ("Deployment", "aiaas-worker")
    assert prod[worker]["spec"]["replicas"] > base[worker]["spec"]["replicas"]
    assert prod[worker] != base[worker] and containers_of(prod[worker])[0]["image"] != "aiaas"


@pytest.mark.parametrize("overlay", [BASE, PRODUCTION], ids=["base", "production"])
def test_workloads_are_restricted_probed_and_reference_their_secrets(overlay: Path) -> None:
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"]  # referenced, never contained
    uid = int(re.findall(r"ARG APP_UID=(\d+)", (DEPLOY / "Dockerfile").read_text())[0])
    runs: dict[tuple[str, ...], str] = {}
    for doc in [d for d in docs if d["kind"] in WORKLOADS]:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in containers_of(doc):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}
            assert {m["name"] for m in container["volumeMounts"]} >= scratch >= {"tmp"}
            env = {e["name"]: e for e in container.get("env", [])}
            assert set(env) <= SETTINGS
            for secret in ("AIAAS_DATABASE_URL", "AIAAS_MASTER_KEY", "AIAAS_DATABASE_OWNER_URL"):
                if secret in env:
                    assert "secretKeyRef" in env[secret]["valueFrom"], secret
            assert ("AIAAS_DATABASE_OWNER_URL" in env) == (doc["kind"] == "Job")
            if doc["kind"] == "Deployment":
                assert "AIAAS_MASTER_KEY" in env and "AIAAS_DATABASE_URL" in env
            arguments = container["args"]
            path = cli_command(arguments)
            role = arguments[arguments.index("--role") + 1] if "--role" in arguments else None
            runs[(*path, role) if role else path] = doc["kind"]
            if path == ("serve",):
                port = container["ports"][0]["name"]
                assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
                assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert runs == {
        ("db", "upgrade"): "Job",
        ("serve", "api"): "Deployment",
        ("serve", "inference"): "Deployment",
        ("worker",): "Deployment",
    }


@pytest.mark.parametrize("overlay", [BASE, PRODUCTION], ids=["base", "production"])
def test_services_budgets_policies_and_autoscalers_select_real_pods(overlay: Path) -> None:
    docs = render(overlay)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]

    def selected(selector: dict[str, str]) -> int:
        return sum(1 for labels in pod_labels if selector.items() <= labels.items())

    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "Service":
            assert selected(spec["selector"]) == 1, doc["metadata"]["name"]
        elif kind in {"PodDisruptionBudget", "NetworkPolicy"}:
            assert selected(
                spec["podSelector" if kind == "NetworkPolicy" else "selector"].get(
                    "matchLabels", {}
                )
            ), doc["metadata"]["name"]
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {"aiaas-api", "aiaas-inference"} and scaled <= set(deployments)
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert budgets == set(deployments)
