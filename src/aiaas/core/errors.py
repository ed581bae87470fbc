"""Every exception aiaas raises on purpose, in two trees, and what each one means.

Every expected failure is an `AiaasError`. Each subclass carries a stable machine-readable
`code`, unique in the tree (sent to GraphQL clients in `extensions.code`, listed in
docs/errors.md), and the HTTP status that a REST route answers with. Anything that is not an
`AiaasError` is a bug: production masks it and logs it with the request id.

    AiaasError
    ├── ConfigError                  invalid configuration: unknown key, bad URL, missing value
    ├── PluginError                  the plugin set cannot form a platform
    │   ├── DuplicateSpecError       two plugins registered a backend under one name
    │   └── UnknownBackendError      the config names a backend no plugin provides
    ├── ServiceUnavailableError      a service the platform needs is not usable (503, Retry-After)
    │   ├── DatabaseUnavailableError  PostgreSQL cannot be reached, or went away mid-request
    │   ├── RedisUnavailableError    Redis cannot be reached, or went away mid-request
    │   ├── SchemaOutdatedError      the database schema is not at this release's revision
    │   ├── QueueFullError           a model's batching queue is full; retry after a while
    │   ├── BatcherClosedError       the model is being stopped; nothing new is taken
    │   └── ModelLoadError           a model version could not be loaded to serve
    ├── BatchFailedError             the model failed on a batch (500, PREDICTION_FAILED)
    ├── AuthenticationError          no valid credentials (401, UNAUTHENTICATED)
    ├── PermissionDeniedError        authenticated, but the policy denies it (403, FORBIDDEN)
    ├── InputError                   the request itself is invalid (400, BAD_USER_INPUT)
    │   ├── PayloadTooLargeError     the request's data is over a size limit (413)
    │   ├── UnknownJobKindError      a job was submitted of a kind no plugin registers
    │   └── JobPayloadError          a job's payload does not match its kind's payload type
    ├── NotFoundError                no such object, or not visible to the caller (404, NOT_FOUND)
    │   └── ConcealedDenialError     a refusal told as "not found", so that it reveals nothing
    ├── ConflictError                valid input that the current state refuses (409, CONFLICT)
    │   └── DeploymentNotReadyError  the deployment exists but does not serve yet, or failed
    ├── ClientGoneError              the caller disconnected; its work was stopped and undone (499)
    ├── RateLimitedError             too many attempts; retry after a while (429, RATE_LIMITED)
    ├── BackupError                  an archive is corrupt, altered, or needs another key (400)
    └── ArtifactError                an artifact store failure
        ├── ArtifactNotFoundError    no artifact under that key (404)
        └── ArtifactIntegrityError   stored or sealed bytes do not open as theirs (never served)

A `Signal` is not a failure a caller sees: it carries a decision from one part of aiaas to
another, and the part that catches it turns it into a state (a job CANCELLED or FAILED, a
subscription ended).

    Signal
    ├── TrainingCancelled            `Trainer.fit` stopped because the reporter said to
    ├── TrainingDiverged             `Trainer.fit` stopped because the loss is not finite
    ├── JobCancelledError            a job handler stopped because its job was cancelled
    ├── SubscriberTooSlowError       a live subscriber fell too far behind and was cut off
    └── MetricWriterError            the metric writer takes no more points
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class AiaasError(Exception):
    """Base class of every expected aiaas failure."""

    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @property
    def extensions(self) -> dict[str, Any]:
        """The GraphQL error `extensions`: graphql-core copies them from the original error."""
        return {"code": self.code, "status": self.http_status, **self.details}


class ConfigError(AiaasError):
    code = "CONFIG_INVALID"


class PluginError(AiaasError):
    code = "PLUGIN_ERROR"


class DuplicateSpecError(PluginError):
    code = "PLUGIN_DUPLICATE"


class UnknownBackendError(PluginError):
    code = "PLUGIN_UNKNOWN_BACKEND"


class ServiceUnavailableError(AiaasError):
    code = "SERVICE_UNAVAILABLE"
    http_status = 503


class DatabaseUnavailableError(ServiceUnavailableError):
    code = "DATABASE_UNAVAILABLE"


class RedisUnavailableError(ServiceUnavailableError):
    code = "REDIS_UNAVAILABLE"


class SchemaOutdatedError(ServiceUnavailableError):
    code = "SCHEMA_OUTDATED"


class AuthenticationError(AiaasError):
    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDeniedError(AiaasError):
    code = "FORBIDDEN"
    http_status = 403


class InputError(AiaasError):
    """Invalid input. `field_errors` maps each offending input field to what is wrong with it."""

    code = "BAD_USER_INPUT"
    http_status = 400

    def __init__(self, message: str, *, field_errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_errors: dict[str, str] = dict(field_errors or {})

    @property
    def extensions(self) -> dict[str, Any]:
        return {**super().extensions, "fieldErrors": self.field_errors}


class PayloadTooLargeError(InputError):
    """The request's data is over a size limit (a prediction's images, say): nothing of it was
    done; `field_errors` names where the limit was passed."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class NotFoundError(AiaasError):
    code = "NOT_FOUND"
    http_status = 404


class ConcealedDenialError(NotFoundError):
    """A refusal told to the caller as "not found", so that it reveals nothing; the audit trail
    still records it as a denial."""


class ConflictError(AiaasError):
    code = "CONFLICT"
    http_status = 409


class ClientGoneError(AiaasError):
    """The caller disconnected before the answer: its work was stopped and undone. Nobody reads
    this answer; the status (nginx's 499) is for the access log."""

    code = "CLIENT_CLOSED_REQUEST"
    http_status = 499


class RateLimitedError(AiaasError):
    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, details={"retryAfter": retry_after_s})
        self.retry_after_s = retry_after_s


class BackupError(AiaasError):
    code = "BACKUP_INVALID"
    http_status = 400


class ArtifactError(AiaasError):
    code = "ARTIFACT_ERROR"


class ArtifactNotFoundError(ArtifactError):
    code = "ARTIFACT_NOT_FOUND"
    http_status = 404


class ArtifactIntegrityError(ArtifactError):
    code = "ARTIFACT_INTEGRITY"


# Serving ----------------------------------------------------------------------------------


class QueueFullError(ServiceUnavailableError):
    """The version's queue holds as many rows as it may; retry after `retry_after_s`."""

    code = "QUEUE_FULL"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, details={"retryAfter": retry_after_s})
        self.retry_after_s = retry_after_s


class BatcherClosedError(ServiceUnavailableError):
    """The batcher is closing or closed (its deployment is stopping); nothing new is taken."""

    code = "MODEL_STOPPING"


class ModelLoadError(ServiceUnavailableError):
    """A model version could not be loaded (remembered for a few seconds); the detail is in the
    log, the caller gets a generic message."""

    code = "MODEL_UNAVAILABLE"


class BatchFailedError(AiaasError):
    """The model failed on the batch that held this request. The cause is chained and logged
    once per batch; other batches are unaffected."""

    code = "PREDICTION_FAILED"
    http_status = 500


class DeploymentNotReadyError(ConflictError):
    """The deployment exists but does not serve: it is CREATING, WARMING or FAILED."""

    code = "DEPLOYMENT_NOT_READY"


# Jobs -------------------------------------------------------------------------------------


class UnknownJobKindError(InputError):
    """No plugin registers the kind of job submitted (`aiaas_job_kinds`); nothing is recorded."""

    code = "UNKNOWN_JOB_KIND"


class JobPayloadError(InputError):
    """A job's payload does not match its kind's payload type: refused when the job is
    submitted, with `field_errors` by payload path; a worker fails a job whose stored payload no
    longer matches with this message as its reason."""

    code = "JOB_PAYLOAD_INVALID"


# Signals ----------------------------------------------------------------------------------


class Signal(Exception):  # noqa: N818 - a decision passed along, not a failure
    """Base of the exceptions that carry a decision between aiaas's own parts."""


class TrainingCancelled(Signal):
    """Raised by `fit` when the reporter says to stop; the job ends CANCELLED."""


class TrainingDiverged(Signal):
    """Raised by `fit` when the loss stops being finite; the job ends FAILED with this message
    and the last complete checkpoint is kept."""


class JobCancelledError(Signal):
    """Raised by a job handler that stopped because its job was cancelled; the job ends
    CANCELLED with this message as its reason."""


class SubscriberTooSlowError(Signal):
    """The subscriber fell more than `SUBSCRIBER_QUEUE_SIZE` events behind and was cut off."""


class MetricWriterError(Signal):
    """The writer takes no more points: it is closed, or one of its flushes failed (then the
    database error is the `__cause__`)."""
