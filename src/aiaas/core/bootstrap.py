"""`create_platform(config)`: the plugin manager that the config asks for, and the platform on it.

Kept apart from `platform.py` so that the platform does not import the hook specifications,
which name the platform in their signatures: the two would import each other.
"""

from __future__ import annotations

from aiaas.core.config import Config
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.plugins import create_plugin_manager


def create_platform(config: Config, plugin_manager: AiaasPluginManager | None = None) -> Platform:
    """A platform for this process, on `plugin_manager` or on the plugins the config allows."""
    return Platform(config, plugin_manager or create_plugin_manager(config))
