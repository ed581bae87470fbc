"""Registries: the specs that backend hooks return, keyed by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiaas.core.errors import DuplicateSpecError, UnknownBackendError
from aiaas.core.plugin_manager import AiaasPluginManager
from aiaas.core.specs import (
    ArtifactStoreSpec,
    AuthenticatorSpec,
    GraphQLContribution,
    JobKindSpec,
    MetadataStoreSpec,
    ServingRuntimeSpec,
    TrainerSpec,
    ValidatorSpec,
)


class NamedSpec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def plugin(self) -> str: ...


SpecT = TypeVar("SpecT", bound=NamedSpec)


class Registry(Generic[SpecT]):
    """Specs of one kind, in pluggy's call order (last registered first), looked up by name."""

    def __init__(self, kind: str, specs: dict[str, SpecT]) -> None:
        self.kind = kind
        self._specs = specs

    def get(self, name: str) -> SpecT:
        try:
            return self._specs[name]
        except KeyError:
            available = ", ".join(sorted(self._specs)) or "none"
            raise UnknownBackendError(
                f"no {self.kind} named {name!r} is registered (available: {available})"
            ) from None

    def names(self) -> list[str]:
        return list(self._specs)

    def __iter__(self) -> Iterator[SpecT]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


def build_registry(
    manager: AiaasPluginManager, hook_name: str, spec_type: type[SpecT], kind: str
) -> Registry[SpecT]:
    """Collect the specs that `hook_name` returns.

    A plugin whose hook raises, or returns something other than `spec_type`, is recorded as a
    failure and its contribution is left out. Two plugins using one name is an error: the config
    picks backends by name, so an ambiguous name cannot be resolved safely.
    """
    specs: dict[str, SpecT] = {}
    for plugin_name, result in manager.call_each(hook_name):
        try:
            contributed = [_checked(item, spec_type) for item in result or ()]
        except Exception as exc:
            manager.record_failure(plugin_name, f"hook {hook_name}", str(exc))
            continue
        for spec in contributed:
            if spec.name in specs:
                raise DuplicateSpecError(
                    f"{kind} {spec.name!r} is registered by both "
                    f"{specs[spec.name].plugin} and {plugin_name}"
                )
            specs[spec.name] = dataclasses.replace(spec, plugin=plugin_name)  # type: ignore[type-var]
    return Registry(kind, specs)


def _checked(item: Any, spec_type: type[SpecT]) -> SpecT:
    if not isinstance(item, spec_type):
        raise TypeError(f"returned {type(item).__name__}, expected {spec_type.__name__}")
    return item


@dataclass(frozen=True)
class Registries:
    """Every registry of one process, built once from the plugin manager."""

    artifact_stores: Registry[ArtifactStoreSpec]
    metadata_stores: Registry[MetadataStoreSpec]
    trainers: Registry[TrainerSpec]
    serving_runtimes: Registry[ServingRuntimeSpec]
    validators: Registry[ValidatorSpec]
    authenticators: Registry[AuthenticatorSpec]
    graphql: Registry[GraphQLContribution]
    job_kinds: Registry[JobKindSpec[Any]]


def load_registries(manager: AiaasPluginManager) -> Registries:
    return Registries(
        artifact_stores=build_registry(
            manager, "aiaas_artifact_stores", ArtifactStoreSpec, "artifact store"
        ),
        metadata_stores=build_registry(
            manager, "aiaas_metadata_stores", MetadataStoreSpec, "metadata store"
        ),
        trainers=build_registry(manager, "aiaas_trainers", TrainerSpec, "trainer"),
        serving_runtimes=build_registry(
            manager, "aiaas_serving_runtimes", ServingRuntimeSpec, "serving runtime"
        ),
        validators=build_registry(manager, "aiaas_validators", ValidatorSpec, "validator"),
        authenticators=build_registry(
            manager, "aiaas_authenticators", AuthenticatorSpec, "authenticator"
        ),
        graphql=build_registry(
            manager, "aiaas_graphql_schema", GraphQLContribution, "GraphQL contribution"
        ),
        job_kinds=build_registry(manager, "aiaas_job_kinds", JobKindSpec, "job kind"),
    )
