"""The kernel: configuration, hook specifications, the plugin manager, the small async protocols
that plugins implement, and the services that the GraphQL API, the CLI and the workers call."""
