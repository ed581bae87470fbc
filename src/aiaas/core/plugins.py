"""The plugin manager: built-in plugins, entry-point plugins, and what failed to load.

Nothing here runs at import time. `create_plugin_manager(config)` builds a manager, registers the
built-ins in `DEFAULT_PLUGINS` exactly as a third-party plugin is registered, then the entry
points of the `aiaas` group (filtered by the `plugins` allowlist, or none at all with
`disable_plugin_autoload`). A third-party plugin that fails to import, to register, or that
implements a hook that does not exist is recorded in `failures` and left out.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging

from aiaas.core import hookspecs
from aiaas.core.config import Config
from aiaas.core.plugin_manager import AiaasPluginManager

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "aiaas"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "aiaas.plugins.postgres_metadata",
    "aiaas.plugins.filesystem_artifacts",
    "aiaas.plugins.s3_artifacts",
    "aiaas.plugins.token_auth",
    "aiaas.plugins.casbin_policy",
    "aiaas.plugins.quality_validators",
    "aiaas.plugins.promotion_gates",
    "aiaas.plugins.flax_trainers",
    "aiaas.plugins.jax_serving",
    "aiaas.plugins.builtin_job_kinds",
)
"""The built-in plugins, as module names. Each is registered under its module name."""


def _register_builtins(manager: AiaasPluginManager) -> None:
    for module_name in DEFAULT_PLUGINS:
        # A built-in that fails to import is a bug in aiaas itself: let it raise.
        module = importlib.import_module(module_name)
        manager.register_plugin(module, module_name, source="builtin")


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _register_entry_points(manager: AiaasPluginManager, allowlist: tuple[str, ...] | None) -> None:
    installed = _entry_points()
    if allowlist is not None:
        for missing in sorted(set(allowlist) - {entry.name for entry in installed}):
            manager.record_failure(
                missing, "allowlist", "listed in AIAAS_PLUGINS but not installed"
            )
    for entry in installed:
        if allowlist is not None and entry.name not in allowlist:
            logger.info("plugin %s is installed but not in AIAAS_PLUGINS; not loaded", entry.name)
            continue
        if manager.has_plugin(entry.name):
            manager.record_failure(entry.name, "register", "the name is already taken")
            continue
        try:
            plugin = entry.load()
        except Exception as exc:
            manager.record_failure(entry.name, "import", repr(exc))
            continue
        version = entry.dist.version if entry.dist is not None else "unknown"
        try:
            manager.register_plugin(plugin, entry.name, source="entry-point", version=version)
        except Exception as exc:
            manager.record_failure(entry.name, "register", str(exc))


def new_plugin_manager() -> AiaasPluginManager:
    """A manager that knows every hook of aiaas and has no plugin yet."""
    manager = AiaasPluginManager()
    manager.add_hookspecs(hookspecs)
    return manager


def create_plugin_manager(config: Config) -> AiaasPluginManager:
    """Build the plugin manager for one process."""
    manager = new_plugin_manager()
    _register_builtins(manager)
    if not config.disable_plugin_autoload:
        _register_entry_points(manager, config.plugins)
    manager.check_pending()
    return manager
