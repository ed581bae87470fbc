"""The optimizer of every built-in trainer: AdamW, with a learning rate schedule."""

from __future__ import annotations

import optax  # type: ignore[import-untyped]


def make_optimizer(
    learning_rate: float,
    weight_decay: float,
    lr_schedule: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
) -> optax.GradientTransformation:
    """AdamW, its step size rising linearly from 0 over `warmup_steps`, then constant or
    decaying along a cosine to 1% of `learning_rate` at `total_steps`. The optimizer state's
    structure depends only on whether the rate is scheduled, not on the step counts."""
    rate: float | optax.Schedule = learning_rate
    if lr_schedule == "cosine":
        rate = optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=learning_rate,
            warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1),
            end_value=learning_rate * 0.01,
        )
    elif lr_schedule != "constant":
        raise ValueError(f"unknown learning rate schedule {lr_schedule!r}")
    elif warmup_steps > 0:
        rate = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.adamw(rate, weight_decay=weight_decay)
