"""JAX's persistent compilation cache, shared by every process that compiles: training workers
and serving processes. A worker resuming a job, or a serving replica warming a model another
one warmed already, then reads the compiled program from disk instead of compiling it."""

from __future__ import annotations

import os

from aiaas.core.config import Config


def use_compilation_cache(config: Config) -> None:
    """Point JAX at the configured cache directory (idempotent). An operator's own
    JAX_COMPILATION_CACHE_DIR wins. Imports JAX: call it where JAX is about to be used."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    cache_dir = str(config.resolved_compilation_cache_dir)
    jax.config.update("jax_compilation_cache_dir", cache_dir)  # type: ignore[no-untyped-call]
    # Only compilations worth keeping: the many tiny ones would cost more to store than to redo.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # type: ignore[no-untyped-call]
