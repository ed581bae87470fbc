"""The typed entries that backend hooks return.

A backend hook returns an iterable of one of these frozen dataclasses. The registry keys them by
`name`; two plugins registering the same name is a startup error, and the config picks a backend
by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiaas.core.auth import Authenticator
from aiaas.core.config import Config
from aiaas.core.runtimes import ServingRuntime
from aiaas.core.storage import ArtifactStore, MetadataStore
from aiaas.core.trainers import Trainer
from aiaas.core.validation import Validator

BackendT = TypeVar("BackendT")


@dataclass(frozen=True, kw_only=True)
class BackendSpec(Generic[BackendT]):
    """A named factory. Factories take the `Config` and must not do I/O: connecting happens in
    the backend's own async `connect`/`start`, so building the registry stays cheap and safe."""

    name: str
    factory: Callable[[Config], BackendT]
    description: str = ""
    plugin: str = field(default="", compare=False)
    """Filled in by the registry with the name of the plugin that registered the spec."""


class ArtifactStoreSpec(BackendSpec[ArtifactStore]):
    pass


class MetadataStoreSpec(BackendSpec[MetadataStore]):
    pass


class TrainerSpec(BackendSpec[Trainer]):
    pass


class ServingRuntimeSpec(BackendSpec[ServingRuntime]):
    pass


class ValidatorSpec(BackendSpec[Validator]):
    pass


class AuthenticatorSpec(BackendSpec[Authenticator]):
    pass


@dataclass(frozen=True, kw_only=True)
class GraphQLContribution:
    """Root fields a plugin adds to the GraphQL schema: strawberry types whose fields are merged
    into `Query`, `Mutation` and `Subscription`. Every added field must declare its permission
    (`aiaas.graphql.permissions`); a field without one is refused when the schema is built."""

    name: str
    query: type | None = None
    mutation: type | None = None
    subscription: type | None = None
    plugin: str = field(default="", compare=False)
