"""`AiaasPluginManager`: a pluggy manager that remembers where each plugin came from and what
failed, and calls hooks one implementation at a time so that one broken plugin cannot take the
others down. `aiaas.core.plugins.create_plugin_manager` fills it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pluggy

from aiaas import __version__

logger = logging.getLogger(__name__)

PROJECT_NAME = "aiaas"
"""pluggy's project name: hook markers and entry points are matched on it."""


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as `aiaas plugins` and the GraphQL `plugins` field show it."""

    name: str
    version: str
    source: str
    """`builtin`, `entry-point`, or `registered` for a plugin object given in code."""
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class PluginFailure:
    """A plugin, or one of its hook implementations, that was left out, and why."""

    name: str
    stage: str
    """`import`, `register`, `allowlist`, or `hook <hook name>`."""
    reason: str


@dataclass(frozen=True)
class PluginStatus:
    """A plugin and its health: `loaded`, `degraded` (loaded, but a hook of it failed), or
    `failed` (left out whole)."""

    name: str
    version: str
    source: str
    hooks: tuple[str, ...]
    status: str
    failures: tuple[PluginFailure, ...]


class AiaasPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers where each plugin came from and what failed."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.failures: list[PluginFailure] = []
        self._sources: dict[str, tuple[str, str]] = {}

    def register_plugin(
        self, plugin: object, name: str, *, source: str = "registered", version: str = ""
    ) -> None:
        """Register `plugin`, refusing it whole if it implements a hook that does not exist, or
        implements one as a wrapper: `call_each` calls every implementation on its own, so a
        wrapper would never wrap anything."""
        self.register(plugin, name=name)
        callers = self.get_hookcallers(plugin) or []
        unknown = sorted(caller.name for caller in callers if not caller.has_spec())
        wrappers = sorted(
            caller.name
            for caller in callers
            for implementation in caller.get_hookimpls()
            if implementation.plugin is plugin
            and (implementation.wrapper or implementation.hookwrapper)
        )
        if unknown or wrappers:
            self.unregister(plugin)
            problems = []
            if unknown:
                problems.append(f"implements hooks that do not exist: {', '.join(unknown)}")
            if wrappers:
                problems.append(f"wraps hooks, which aiaas does not support: {', '.join(wrappers)}")
            raise pluggy.PluginValidationError(plugin, "; ".join(problems))
        self._sources[name] = (source, version or __version__)

    def record_failure(self, name: str, stage: str, reason: str) -> None:
        failure = PluginFailure(name=name, stage=stage, reason=reason)
        # An observer that fails on every event would otherwise grow this list without end.
        if failure in self.failures:
            return
        logger.error("plugin %s left out (%s): %s", name, stage, reason)
        self.failures.append(failure)

    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.list_name_plugin():
            source, version = self._sources.get(name, ("registered", ""))
            hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name=name, version=version, source=source, hooks=hooks))
        return infos

    def report(self) -> list[PluginStatus]:
        """Every plugin, loaded or not, with its failures; for `aiaas plugins` and GraphQL."""
        failures: dict[str, list[PluginFailure]] = {}
        for failure in self.failures:
            failures.setdefault(failure.name, []).append(failure)
        report = [
            PluginStatus(
                name=info.name,
                version=info.version,
                source=info.source,
                hooks=info.hooks,
                status="degraded" if info.name in failures else "loaded",
                failures=tuple(failures.pop(info.name, ())),
            )
            for info in self.plugin_infos()
        ]
        report += [
            PluginStatus(
                name=name,
                version="",
                source="entry-point",
                hooks=(),
                status="failed",
                failures=tuple(plugin_failures),
            )
            for name, plugin_failures in failures.items()
        ]
        return report

    def call_each(
        self, hook_name: str, *, isolate: bool = True, **kwargs: Any
    ) -> Iterator[tuple[str, Any]]:
        """Call every implementation of a hook on its own, in pluggy's order (last registered
        first), yielding `(plugin name, result)`. An implementation that raises is recorded as
        a failure and skipped, so one broken plugin cannot take the others down with it;
        `isolate=False` lets the exception through instead."""
        caller = getattr(self.hook, hook_name)
        for implementation in reversed(caller.get_hookimpls()):
            arguments = [kwargs[argument] for argument in implementation.argnames]
            try:
                result = implementation.function(*arguments)
            except Exception as exc:
                if not isolate:
                    raise
                self.record_failure(implementation.plugin_name, f"hook {hook_name}", repr(exc))
                continue
            yield implementation.plugin_name, result

    def call_first(self, hook_name: str, *, isolate: bool = True, **kwargs: Any) -> Any:
        """The first non-None result of a `firstresult` hook, in the order of `call_each`."""
        for _, result in self.call_each(hook_name, isolate=isolate, **kwargs):
            if result is not None:
                return result
        return None
