"""aiaas: a self-hosted AI-as-a-Service platform.

Importing this package has no side effects: the plugin manager, the database pool and every other
resource are built by explicit factories (`aiaas.core.plugins.create_plugin_manager`,
`aiaas.core.platform.Platform`).
"""

__version__ = "0.1.0"
