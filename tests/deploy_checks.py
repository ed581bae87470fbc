"""What tests/test_deploy_manifests.py reads deploy/ with: the series the platform exports and
the metric names a PromQL expression selects, the `aiaas` commands an artefact runs (parsed by
the real CLI), and a `kustomize build` of the few fields the kustomizations use."""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import yaml
from prometheus_client.metrics_core import Metric

from aiaas.cli import cli
from aiaas.core.api_metrics import ApiMetrics
from aiaas.core.job_metrics import JobSnapshot, job_families
from aiaas.core.serving.metrics import ServingMetrics

CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding"}
WORKLOADS = {"Deployment", "Job"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def series_of(families: Iterable[Metric]) -> set[str]:
    """Every series name the families can expose, labelled children or not yet."""
    return {
        family.name + suffix for family in families for suffix in _SUFFIXES.get(family.type, ("",))
    }


def exported_series() -> set[str]:
    # What every process that answers /metrics (`aiaas serve`, any role) exposes: its serving
    # and API series, and the job series it reads from PostgreSQL. Workers serve no HTTP.
    return (
        series_of(ServingMetrics().registry.collect())
        | series_of(ApiMetrics(operation_names_max=1).registry.collect())
        | series_of(job_families(JobSnapshot()))
    )


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+|ms|[smhdwy])?(?![\w:])")
_NAMES = re.compile(r"[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: the names that are not calls, keywords,
    label names or values."""
    text = _STRINGS.sub('""', expr)
    text = _RANGES.sub("", _MATCHERS.sub("", text))
    text = _NUMBERS.sub(" ", _LABEL_LISTS.sub(" ", text))
    return {
        match.group()
        for match in _NAMES.finditer(text)
        if match.group().lower() not in _KEYWORDS
        and not text[match.end() :].lstrip().startswith("(")
    }


def cli_command(arguments: list[str]) -> tuple[str, ...]:
    """The path of the `aiaas` command `arguments` run (its options parsed by the real CLI)."""
    command: click.Command = cli
    context = click.Context(cli, info_name="aiaas")
    rest, path = list(arguments), []
    while isinstance(command, click.Group):
        assert rest, f"aiaas {' '.join(path)} needs a subcommand"
        name, *rest = rest
        found = command.get_command(context, name)
        assert found is not None, f"aiaas {' '.join([*path, name])}: no such command"
        command, path = found, [*path, name]
        context = click.Context(command, info_name=name, parent=context)
    try:
        command.parse_args(context, rest)
    except click.UsageError as exc:
        raise AssertionError(f"aiaas {' '.join(arguments)}: {exc.format_message()}") from None
    return tuple(path)


def shell_invocations(script: str) -> Iterator[list[str]]:
    """The argument lists of every `aiaas` a shell script runs, up to its operators."""
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if set(token) <= set(";|&<>()"):
                if words[:1] == ["aiaas"]:
                    yield words[1:]
                # What follows a redirection is a file name, not a command.
                words = ["(file)"] if token.startswith(">") else []
            else:
                words.append(token)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _image_name(image: str) -> str:
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] not in WORKLOADS:
        return []
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _apply_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """JSON patch (RFC 6902) replace, add and remove: what the overlays use, strictly."""
    for operation in operations:
        *parents, last = operation["path"].lstrip("/").split("/")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if operation["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        elif operation["op"] in {"add", "replace"}:
            key = int(last) if isinstance(node, list) else last
            if operation["op"] == "replace":
                # Like kustomize, refuse to replace what is not there: a mistyped path fails.
                assert key in node if isinstance(node, dict) else key < len(node), operation
            node[key] = operation["value"]
        else:
            assert operation["op"] == "remove", operation
            del node[int(last) if isinstance(node, list) else last]


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build` for the fields these kustomizations use, refusing any other."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    fields = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
    assert set(kustomization) <= fields, set(kustomization) - fields
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = directory / entry
        docs += render(path) if path.is_dir() else copy.deepcopy(load_documents(path))
    for image in kustomization.get("images", []):
        containers = [c for d in docs for c in containers_of(d)]
        matched = [c for c in containers if _image_name(c["image"]) == image["name"]]
        assert matched, image
        for container in matched:
            tag = container["image"][len(image["name"]) :]  # kept unless newTag replaces it
            tag = f":{image['newTag']}" if "newTag" in image else tag
            container["image"] = image.get("newName", image["name"]) + tag
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for replicas in kustomization.get("replicas", []):
        by_name[("Deployment", replicas["name"])]["spec"]["replicas"] = replicas["count"]
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        _apply_patch(by_name[(target["kind"], target["name"])], yaml.safe_load(patch["patch"]))
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs
