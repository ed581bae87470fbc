"""The arq worker: settings and thin job coroutines that call core services."""
