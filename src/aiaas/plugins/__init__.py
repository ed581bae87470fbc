"""Built-in plugins. Each is registered exactly like a third-party plugin (see
`aiaas.core.plugins.DEFAULT_PLUGINS`), so each could be replaced by a package of its own."""
