"""The trees extra as a plugin: registered through its installed entry point as a third-party
package is, cheap to load, with typed hyperparameters, a history per round, a bundle of ONNX and
JSON (no pickle), and a runtime that refuses a graph it must not run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pyarrow as pa
import pytest
from aiaas_trees.bundle import (
    FORMAT,
    GRAPH_MEMBER,
    MANIFEST_MEMBER,
    BundleError,
    decode_bundle,
    encode_bundle,
)
from aiaas_trees.serving import OnnxServingRuntime
from aiaas_trees.trainers import TRAINERS
from onnx import TensorProto, helper
from sklearn.datasets import load_wine

from aiaas.core.config import build_config
from aiaas.core.errors import TrainingCancelled
from aiaas.core.model_inputs import check_inputs
from aiaas.core.plugins import create_plugin_manager
from aiaas.core.registry import load_registries
from aiaas.core.trainers import TASK_OBJECTIVES, Progress, SilentReporter, TrainingRun
from aiaas.core.training.trainer_extras import TRAINER_EXTRAS
from support import clean_environment

WAIT_S = 120


class Recording(SilentReporter):
    def __init__(self) -> None:
        self.points: list[Progress] = []

    def progress(self, progress: Progress) -> None:
        self.points.append(progress)


def wine_run(tmp: Path, hyperparameters: dict[str, Any]) -> TrainingRun:
    wine = load_wine()
    features = tuple(f"f{index}" for index in range(wine.data.shape[1]))
    columns = {name: wine.data[:, index] for index, name in enumerate(features)}
    labels = [f"c{label}" for label in wine.target]
    return TrainingRun(
        table=pa.table({**columns, "cultivar": labels}),
        target="cultivar",
        features=features,
        hyperparameters=hyperparameters,
        validation_fraction=0.25,
        seed=0,
        checkpoint_dir=tmp,
        checkpoint_every_steps=1_000_000,
    )


def test_the_entry_point_registers_every_trainer_and_the_onnx_runtime() -> None:
    config = build_config({"disable_plugin_autoload": False, "plugins": ["trees"]})
    manager = create_plugin_manager(config)
    [status] = [status for status in manager.report() if status.name == "trees"]
    assert (status.source, status.status) == ("entry-point", "loaded")
    assert set(status.hooks) == {"aiaas_trainers", "aiaas_serving_runtimes"}
    registries = load_registries(manager)
    names = {spec.name for spec in registries.trainers if spec.plugin == "trees"}
    assert names == {trainer.name for trainer in TRAINERS}
    runtime = registries.serving_runtimes.get("onnx").factory(config)
    assert runtime.supported_model_formats() == {FORMAT}

    # Without the entry point allowed, none of it is there.
    bare = load_registries(create_plugin_manager(build_config({"plugins": []})))
    assert not names & set(bare.trainers.names())
    assert "onnx" not in bare.serving_runtimes.names()


def test_the_core_knows_which_extra_brings_each_trainer() -> None:
    assert {name for name, extra in TRAINER_EXTRAS.items() if extra == "trees"} == {
        trainer.name for trainer in TRAINERS
    }


def test_loading_the_plugin_and_vetting_imports_no_estimator_library() -> None:
    script = (
        "import sys\n"
        "from aiaas.core.config import build_config\n"
        "from aiaas.core.plugins import create_plugin_manager\n"
        "from aiaas.core.registry import load_registries\n"
        "config = build_config({'disable_plugin_autoload': False, 'plugins': ['trees']})\n"
        "registries = load_registries(create_plugin_manager(config))\n"
        "for spec in registries.trainers:\n"
        "    spec.factory(config).hyperparameter_schema()\n"
        "registries.serving_runtimes.get('onnx').factory(config).supported_model_formats()\n"
        "heavy = ('sklearn', 'xgboost', 'lightgbm', 'onnx', 'onnxruntime', 'skl2onnx', 'jax')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT_S,
        env=clean_environment(),
    )
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize(
    ("trainer", "given", "problem"),
    [
        ("xgboost-classifier", {"n_estimators": 0}, "must be at least 1"),
        ("lightgbm-regressor", {"learning_rate": 11.0}, "must be at most 10"),
        ("random-forest-classifier", {"max_features": "half"}, "must be one of sqrt, log2, all"),
        ("hist-gradient-boosting-classifier", {"max_iter": 2.5}, "must be an integer"),
        ("logistic-regression", {"penalty": "l1"}, "unknown hyperparameter"),
    ],
)
def test_hyperparameters_out_of_bounds_are_refused_before_any_fit(
    trainer: str, given: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    [trainer_class] = [candidate for candidate in TRAINERS if candidate.name == trainer]
    reporter = Recording()
    with pytest.raises(ValueError, match=problem):
        trainer_class().fit(wine_run(tmp_path, given), reporter)
    assert reporter.points == []


def test_a_boosted_model_reports_every_round_with_the_objective_figures(tmp_path: Path) -> None:
    [trainer_class] = [t for t in TRAINERS if t.name == "hist-gradient-boosting-classifier"]
    reporter = Recording()
    trained = trainer_class().fit(wine_run(tmp_path, {"max_iter": 12}), reporter)
    assert [point.step for point in reporter.points] == list(range(1, 13))
    assert trained.steps == 12
    objectives = TASK_OBJECTIVES["classification"]
    multiclass = {name for name in objectives if not name.endswith(("f1", "precision", "recall"))}
    multiclass -= {"roc_auc"}
    for point in reporter.points:
        assert point.total_steps == 12
        assert {"loss", "train_loss"} <= set(point.metrics)
        assert {f"val_{name}" for name in multiclass} <= set(point.metrics)
    # Boosting lowers the training loss round after round.
    losses = [point.metrics["train_loss"] for point in reporter.points]
    assert losses == sorted(losses, reverse=True)
    # The model's figures are its last round's, with what the built-in trainers report besides.
    last = reporter.points[-1].metrics
    assert trained.metrics["accuracy"] == last["val_accuracy"]
    assert trained.metrics["labels"] == ["c0", "c1", "c2"]
    assert (
        np.asarray(trained.metrics["confusion_matrix"]).sum()
        == trained.metrics["validation_examples"]
    )


def test_the_bundle_is_an_onnx_graph_and_a_json_manifest(tmp_path: Path) -> None:
    [trainer_class] = [t for t in TRAINERS if t.name == "xgboost-classifier"]
    trained = trainer_class().fit(wine_run(tmp_path, {"n_estimators": 5}), SilentReporter())
    assert trained.format == FORMAT
    with zipfile.ZipFile(io.BytesIO(trained.bundle)) as archive:
        assert sorted(archive.namelist()) == sorted([GRAPH_MEMBER, MANIFEST_MEMBER])
        manifest = json.loads(archive.read(MANIFEST_MEMBER))
        graph = onnx.load_model_from_string(archive.read(GRAPH_MEMBER))
    assert manifest["features"] == [f"f{index}" for index in range(13)]
    assert manifest["classes"] == ["c0", "c1", "c2"]
    assert manifest["signature"] == trained.signature.as_json()
    assert [spec.name for spec in trained.signature.outputs] == ["label", "probabilities"]
    onnx.checker.check_model(graph)
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx.ml"}

    # Served through the platform's input checks, as the batcher serves it.
    model = OnnxServingRuntime().load(trained.bundle, max_batch_size=4)
    model.warm_up()
    assert model.compilations == 1
    wine = load_wine()
    columns = check_inputs(
        trained.signature,
        {f"f{index}": wine.data[:3, index].tolist() for index in range(13)},
        max_batch=4,
    )
    answered = model.predict_batch(columns)
    assert answered["label"].tolist() == ["c0", "c0", "c0"]
    assert model.compilations == 1


def one_node_graph(domain: str, *, external: bool = False) -> bytes:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    if external:
        weights.data_location = TensorProto.EXTERNAL
        weights.external_data.add(key="location", value="/etc/passwd")
        del weights.float_data[:]
    node = helper.make_node("Mul", ["inputs", "w"], ["probabilities"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])],
        initializer=[weights],
    )
    return bytes(helper.make_model(graph).SerializeToString())


def branching_graph(then_domain: str, *, external_in_else: bool = False) -> bytes:
    """A graph whose one `If` node hides its work in two subgraphs, where the checks must look
    too: one branch multiplies by a tensor (stored externally when asked), the other runs an
    operator of `then_domain`."""

    def branch(name: str, domain: str, external: bool) -> onnx.GraphProto:
        weights = helper.make_tensor(f"{name}_w", TensorProto.FLOAT, [1], [1.0])
        if external:
            weights.data_location = TensorProto.EXTERNAL
            weights.external_data.add(key="location", value="../../etc/passwd")
            del weights.float_data[:]
        node = helper.make_node("Mul", ["inputs", f"{name}_w"], [f"{name}_out"], domain=domain)
        return helper.make_graph(
            [node],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [None, 1])],
            initializer=[weights],
        )

    condition = helper.make_tensor("condition", TensorProto.BOOL, [], [True])
    node = helper.make_node(
        "If",
        ["condition"],
        ["probabilities"],
        then_branch=branch("then", then_domain, False),
        else_branch=branch("else", "", external_in_else),
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])],
        initializer=[condition],
    )
    return bytes(helper.make_model(graph).SerializeToString())


@pytest.mark.parametrize(
    ("graph", "problem"),
    [
        (one_node_graph("com.example.custom"), "domains that are not allowed"),
        (one_node_graph("", external=True), "external data"),
        (branching_graph("com.example.custom"), "domains that are not allowed"),
        (branching_graph("", external_in_else=True), "external data"),
    ],
    ids=[
        "custom-operator",
        "external-data",
        "custom-operator-in-a-subgraph",
        "external-data-in-a-subgraph",
    ],
)
def test_the_runtime_refuses_a_graph_it_must_not_run(
    graph: bytes, problem: str, tmp_path: Path
) -> None:
    [trainer_class] = [t for t in TRAINERS if t.name == "logistic-regression"]
    trained = trainer_class().fit(wine_run(tmp_path, {}), SilentReporter())
    manifest, _ = decode_bundle(trained.bundle)
    with pytest.raises(BundleError, match=problem):
        OnnxServingRuntime().load(encode_bundle(manifest, graph), max_batch_size=4)


@pytest.mark.parametrize(
    "bundle",
    [b"", b"\x80\x04pickle", encode_bundle.__name__.encode()],
    ids=["empty", "pickle", "text"],
)
def test_bytes_that_are_not_a_bundle_are_refused(bundle: bytes) -> None:
    with pytest.raises(BundleError):
        OnnxServingRuntime().load(bundle, max_batch_size=4)


class StopsAfter(Recording):
    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds

    def should_stop(self) -> bool:
        return len(self.points) >= self.rounds


def test_a_cancelled_job_stops_between_rounds(tmp_path: Path) -> None:
    [trainer_class] = [t for t in TRAINERS if t.name == "lightgbm-classifier"]
    reporter = StopsAfter(3)
    with pytest.raises(TrainingCancelled):
        trainer_class().fit(wine_run(tmp_path, {"n_estimators": 20}), reporter)
    assert [point.step for point in reporter.points] == [1, 2, 3]
