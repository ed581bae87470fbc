"""Fits the tabular classifier on wine and prints the device count and metrics as JSON.

Run by test_sharding.py in a subprocess whose XLA_FLAGS give the host several devices: the
device count is fixed when JAX starts, so it cannot change inside the test process.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import pyarrow as pa
from sklearn.datasets import load_wine

from aiaas.core.trainers import SilentReporter, TrainingRun
from aiaas.plugins.flax_trainers import TabularClassifier
from aiaas.plugins.flax_trainers.train import data_mesh


def main() -> None:
    hyperparameters = json.loads(sys.argv[1])
    features, target = load_wine(return_X_y=True)
    columns = {f"x{index:02d}": features[:, index] for index in range(features.shape[1])}
    table = pa.table({**columns, "target": target})
    with tempfile.TemporaryDirectory() as directory:
        run = TrainingRun(
            table=table,
            target="target",
            features=tuple(columns),
            hyperparameters=hyperparameters,
            validation_fraction=0.2,
            seed=0,
            checkpoint_dir=Path(directory),
            checkpoint_every_steps=1_000_000,
        )
        model = TabularClassifier().fit(run, SilentReporter())
    print(
        json.dumps(
            {
                "devices": jax.local_device_count(),
                "mesh_devices": data_mesh().size,
                "metrics": model.metrics,
                "steps": model.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
