"""The typed entries that backend hooks return.

A backend hook returns an iterable of one of these frozen dataclasses. The registry keys them by
`name`; two plugins registering the same name is a startup error, and the config picks a backend
by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from aiaas.core.auth import Authenticator
from aiaas.core.config import Config
from aiaas.core.runtimes import ServingRuntime
from aiaas.core.storage import ArtifactStore, MetadataStore
from aiaas.core.trainers import Trainer
from aiaas.core.validation import Validator

BackendT = TypeVar("BackendT")
PayloadT = TypeVar("PayloadT", bound=BaseModel)


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
class JobKindSpec(Generic[PayloadT]):
    """A kind of worker job: the pydantic model its payload must match, and what runs it.

    The payload is checked against `payload_type` when the job is submitted
    (`aiaas.core.job_submission.record_new_job` refuses one that does not match, and records
    nothing) and again when a worker runs it: a payload that no longer matches (changed in the
    database, or written by an older release) fails the job with the reason, and the handler
    is not called.

    `handler(platform, job, payload)` gets the payload as the model the worker just validated,
    rather than the job alone: validation then happens in one place, the same for every kind,
    and a handler cannot forget it or read fields the model does not declare. The job is
    passed too, for what is not payload: its id (event stream, checkpoints), project, attempt
    (a resumed run) and cancellation. It returns an optional note stored as the job's reason.
    """

    name: str
    payload_type: type[PayloadT]
    handler: Callable[[Any, Any, PayloadT], Awaitable[str | None]]
    """`(platform: Platform, job: Job, payload)`. Typed `Any` here only because this module
    sits beneath `Platform` (whose registries it fills) and so cannot name it or `Job`;
    `aiaas.core.job_kinds.JobKindHandler` is the full type, to annotate a handler with."""
    description: str = ""
    plugin: str = field(default="", compare=False)
    """Filled in by the registry with the name of the plugin that registered the spec."""

    def __post_init__(self) -> None:
        # Refused here, so that a plugin that gets it wrong is reported when it registers
        # rather than when a job of its kind is first submitted.
        if not (isinstance(self.payload_type, type) and issubclass(self.payload_type, BaseModel)):
            raise TypeError(
                f"job kind {self.name!r}: payload_type must be a pydantic model class, "
                f"not {self.payload_type!r}"
            )
        if not callable(self.handler):
            raise TypeError(f"job kind {self.name!r}: handler is not callable")


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
