from __future__ import annotations

from enum import Enum

import strawberry

from aiaas.core import plugin_manager


@strawberry.type(description="The API process answers; `/readyz` checks its dependencies.")
class Health:
    status: str


@strawberry.enum
class PluginState(Enum):
    LOADED = "loaded"
    DEGRADED = "degraded"
    FAILED = "failed"


@strawberry.type(description="A plugin, or a hook of one, that was left out, and why.")
class PluginFailure:
    stage: str
    reason: str


@strawberry.type(description="A plugin known to this API process.")
class Plugin:
    name: str
    version: str
    source: str
    hooks: list[str]
    state: PluginState
    failures: list[PluginFailure]

    @classmethod
    def from_status(cls, status: plugin_manager.PluginStatus) -> Plugin:
        return cls(
            name=status.name,
            version=status.version,
            source=status.source,
            hooks=list(status.hooks),
            state=PluginState(status.status),
            failures=[PluginFailure(stage=f.stage, reason=f.reason) for f in status.failures],
        )
