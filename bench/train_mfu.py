"""Model FLOP utilization (MFU) of the platform's train step, and its overhead against a bare
step, on the same model in the same run.

The model is the tabular classifier's MLP at the width asked for (a GPU wants it wide:
`--hidden-size 4096 --hidden-layers 4 --batch-size 4096`), trained at `--precision`. The loops
are bench/train_overhead.py's, shared rather than copied:

- platform: `TabularClassifier.fit` as a worker runs it; steps/s from the times of its progress
  reports, in a second fit whose step the first (the warm-up) compiled.
- bare: a hand-written `jax.jit` step (forward, backward, AdamW) over batches already on the
  device, warmed up, blocking on its last result.

FLOPs per step: XLA's cost analysis of the compiled bare step, the same model, loss, optimizer
and batch as the platform's step (which adds only the indexing of its staged chunk and the
write of its loss). Where the compiled module reports no FLOPs (XLA:GPU has, for dots it hands
to cuBLAS), the analysis of the lowered module, before optimization, stands in;
`flops_source` says which. `analytic_matmul_flops_per_step` (6 x batch x weights: forward, and
the two products of the backward pass) is a cross-check.

Peak: the device's dense peak at the precision, from a table of known accelerators
(`jax.devices()[0].device_kind`; float32 counts TF32, which XLA's default precision uses for
float32 products on these GPUs); `--peak-tflops` overrides it. On a CPU, or
an accelerator the table does not know, the peak is measured in this run: the best of a few
large jitted matmuls in the compute dtype (`peak_source` says so). MFU = FLOPs per step x
steps/s / peak: the platform's over all local devices (it shards the batch over them), the bare
step's over the one it runs on.

`platform_vs_bare_step_ratio` is platform steps/s / bare steps/s (1.0: no overhead), the median
of the runs' ratios, as train_overhead.py's `platform_vs_bare_jit_ratio` is.

    python bench/train_mfu.py [--precision float32|bfloat16] [--hidden-size 1024]
        [--hidden-layers 2] [--features 64] [--batch-size 1024] [--steps 64] [--repeat 3]
        [--peak-tflops T]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
from train_overhead import (
    ModelSize,
    bare_jit_step,
    bare_jit_steps_per_s,
    device_batches,
    platform_steps_per_s,
    synthetic_data,
)

from aiaas.formats.flax_nnx_models import COMPUTE_DTYPES
from aiaas.plugins.flax_trainers.trainers import PRECISIONS

NO_CHECKPOINTS = 10**9
DENSE_PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    # (what device_kind contains, bfloat16, float32 as TF32), per device, dense (no sparsity).
    # The first match counts, so the more specific names come first.
    ("H200", 989.0, 494.5),
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.0, 494.5),  # SXM
    ("A100", 312.0, 156.0),
    ("L40S", 362.0, 183.0),
    ("L4", 121.0, 60.0),
    ("A10G", 70.0, 35.0),
    ("TPU v5p", 459.0, 459.0),  # TPUs run float32 products as bfloat16 passes
    ("TPU v5 lite", 197.0, 197.0),
    ("TPU v4", 275.0, 275.0),
)
PEAK_MATMUL = 1024
"""Side of the square matmul that measures a CPU's peak: large enough to run at its best rate,
small enough to measure again after every run."""


def table_peak_tflops(device_kind: str, precision: str) -> float | None:
    for name, bfloat16, float32 in DENSE_PEAK_TFLOPS:
        if name.lower() in device_kind.lower():
            return bfloat16 if precision == "bfloat16" else float32
    return None


def measured_peak_tflops(precision: str, repeat: int = 5) -> float:
    """The best rate of a large jitted matmul in the compute dtype, on the default device."""
    dtype = COMPUTE_DTYPES[precision] or jnp.float32
    side = PEAK_MATMUL
    matrices = jax.random.normal(jax.random.key(0), (2, side, side), jnp.float32).astype(dtype)
    product = jax.jit(lambda a, b: a @ b)
    product(matrices[0], matrices[1]).block_until_ready()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        product(matrices[0], matrices[1]).block_until_ready()
        best = min(best, time.perf_counter() - started)
    return 2 * side**3 / best / 1e12


def _flops(cost: Any) -> float:
    """The `flops` of a cost analysis: a dict, or (older jax) a list of one per module."""
    if isinstance(cost, list | tuple):
        return sum(_flops(item) for item in cost)
    return float((cost or {}).get("flops", -1.0))


def step_flops(
    features: int, size: ModelSize, batch: tuple[jax.Array, jax.Array]
) -> dict[str, Any]:
    jitted, params, optimizer_state = bare_jit_step(features, size)
    lowered = jitted.lower(params, optimizer_state, *batch)
    compiled = _flops(lowered.compile().cost_analysis())
    if compiled > 0:
        return {"flops_per_step": compiled, "flops_source": "compiled"}
    return {"flops_per_step": _flops(lowered.cost_analysis()), "flops_source": "lowered"}


def analytic_matmul_flops(features: int, size: ModelSize, batch_size: int) -> int:
    widths = [features] + [size.hidden_size] * size.hidden_layers + [2]
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    return 6 * batch_size * weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--hidden-size", type=int, default=1024)
    parser.add_argument("--hidden-layers", type=int, default=2)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=64, help="steps of each timed fit")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="overrides the table")
    arguments = parser.parse_args()
    size = ModelSize(arguments.hidden_size, arguments.hidden_layers, arguments.precision)
    batch_size, features = arguments.batch_size, arguments.features
    repeat = max(1, arguments.repeat)
    inputs, labels = synthetic_data(arguments.steps * batch_size, features)

    device = jax.devices()[0]
    devices = jax.local_device_count()
    if arguments.peak_tflops is not None:
        peak, peak_source = arguments.peak_tflops, "--peak-tflops, per device"
    elif (known := table_peak_tflops(device.device_kind, arguments.precision)) is not None:
        peak, peak_source = known, f"table: {device.device_kind}, dense, per device"
    else:
        peak = 0.0  # measured before and after every run below, the best rate kept
        peak_source = (
            f"measured in this run: the best of 5 jitted {PEAK_MATMUL}x{PEAK_MATMUL} matmuls in "
            f"{arguments.precision} on {device.platform} ({device.device_kind}), before and "
            "after every run; per device"
        )
    measure_peak = not peak

    def fit() -> tuple[float, int]:
        return platform_steps_per_s(inputs, labels, batch_size, 1, NO_CHECKPOINTS, 0.0, size)

    _, steps = fit()  # warm-up: compiles the platform's step
    batches = device_batches(inputs, labels, batch_size, steps)
    flops = step_flops(features, size, batches[0])
    # Interleaved, compared run by run (see train_overhead.py): a load that drifts between runs
    # hits both sides.
    # A measured peak is taken between the runs too: on a shared machine the load drifts.
    platform_runs, bare_runs = [], []
    for run in range(repeat):
        if measure_peak:
            peak = max(peak, measured_peak_tflops(arguments.precision))
        if run % 2:
            bare_runs.append(bare_jit_steps_per_s(batches, features, size))
        platform_runs.append(fit()[0])
        if not run % 2:
            bare_runs.append(bare_jit_steps_per_s(batches, features, size))
    if measure_peak:
        peak = max(peak, measured_peak_tflops(arguments.precision))
    platform, bare = statistics.median(platform_runs), statistics.median(bare_runs)
    ratio = statistics.median(p / b for p, b in zip(platform_runs, bare_runs, strict=True))
    per_step = flops["flops_per_step"]
    print(
        json.dumps(
            {
                "backend": jax.default_backend(),
                "device_kind": device.device_kind,
                "devices": devices,
                "precision": arguments.precision,
                "features": features,
                "hidden_size": size.hidden_size,
                "hidden_layers": size.hidden_layers,
                "batch_size": batch_size,
                "steps": steps,
                "repeat": repeat,
                **flops,
                "analytic_matmul_flops_per_step": analytic_matmul_flops(features, size, batch_size),
                "peak_tflops_per_device": round(peak, 4),
                "peak_source": peak_source,
                "platform_steps_per_s": round(platform, 2),
                "platform_runs_steps_per_s": [round(rate, 2) for rate in platform_runs],
                "bare_steps_per_s": round(bare, 2),
                "bare_runs_steps_per_s": [round(rate, 2) for rate in bare_runs],
                "platform_tflops": round(per_step * platform / 1e12, 4),
                "bare_tflops": round(per_step * bare / 1e12, 4),
                "mfu": round(per_step * platform / (peak * devices * 1e12), 4),
                "bare_mfu": round(per_step * bare / (peak * 1e12), 4),
                "platform_vs_bare_step_ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
