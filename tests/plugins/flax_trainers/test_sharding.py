"""Data parallelism: the same run on four host devices matches the run on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aiaas.plugins.flax_trainers import TabularClassifier

SCRIPT = Path(__file__).with_name("sharded_fit.py")
HYPERPARAMETERS = {"epochs": 5, "hidden_size": 32, "batch_size": 32}


def test_four_devices_match_one(
    wine: tuple[np.ndarray, np.ndarray, pa.Table], make_run: Any, recording_reporter: Any
) -> None:
    environment = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), json.dumps(HYPERPARAMETERS)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    sharded = json.loads(result.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 4
    assert sharded["mesh_devices"] == 4

    single = TabularClassifier().fit(
        make_run(wine[2], "target", HYPERPARAMETERS), recording_reporter()
    )
    assert sharded["steps"] == single.steps
    # The same batches and updates; only the order of floating-point sums differs.
    for key in ("accuracy", "f1_macro", "roc_auc_macro"):
        assert sharded["metrics"][key] == pytest.approx(single.metrics[key], abs=0.03)
    assert sharded["metrics"]["loss"] == pytest.approx(single.metrics["loss"], rel=1e-3)
