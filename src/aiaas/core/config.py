"""Configuration: defaults, then an optional TOML file, then `AIAAS_*` environment variables.

Every key is a field of `Config`. An unknown key, in the file or in the environment, is refused
with a suggestion, because a misspelt `AIAAS_DATABSE_URL` silently falling back to a default is
exactly the kind of mistake that reaches production. Each field is documented in
docs/configuration.md, and a test keeps that page and this model in step.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from aiaas.core.checkpoint_settings import CheckpointSettings
from aiaas.core.database_settings import DatabaseSettings
from aiaas.core.errors import ConfigError
from aiaas.core.inference_request_settings import InferenceRequestSettings
from aiaas.core.object_store_settings import ObjectStoreSettings
from aiaas.core.setting_types import MasterKeyText, PostgresUrl, RedisUrl, redact_url
from aiaas.core.token_settings import TokenSettings
from aiaas.core.tracing_settings import ObservabilitySettings

ENV_PREFIX = "AIAAS_"
CONFIG_FILE_ENV = "AIAAS_CONFIG_FILE"
"""Names the TOML file to read. Not a field; nor are the SDK's AIAAS_URL and AIAAS_TOKEN."""


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class ServerRole(StrEnum):
    """What an `aiaas serve` process answers: everything, the API without the V2 inference
    routes and rollouts, or inference only (V2 REST, metrics and health)."""

    ALL = "all"
    API = "api"
    INFERENCE = "inference"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aiaas"


class Config(
    DatabaseSettings,
    ObjectStoreSettings,
    CheckpointSettings,
    ObservabilitySettings,
    InferenceRequestSettings,
    TokenSettings,
):
    """Every setting of the platform. Field docs are the reference text of docs/configuration.md."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    mode: Mode = Field(
        Mode.PRODUCTION,
        description="`production` masks errors and turns GraphiQL off; `aiaas dev` sets `dev`.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where `aiaas dev` keeps the embedded PostgreSQL, Redis and artifacts.",
    )
    database_url: PostgresUrl | None = Field(
        None,
        description="PostgreSQL URL. Required by `serve`, `worker` and `db`; "
        "`aiaas dev` starts an embedded server when it is unset.",
    )
    database_owner_url: PostgresUrl | None = Field(
        None,
        description="PostgreSQL URL of the schema's owner: migrations and restores run as it.",
    )
    redis_url: RedisUrl | None = Field(
        None,
        description="Redis URL. Required by `serve` and `worker`; "
        "`aiaas dev` starts an embedded server when it is unset.",
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the API listens on (0: any).")
    redis_connect_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Give up connecting to Redis after this many seconds."
    )
    metadata_store: str = Field(
        "postgresql", description="Name of the metadata store backend (`aiaas_metadata_stores`)."
    )
    artifact_store: str = Field(
        "filesystem", description="Name of the artifact store backend (`aiaas_artifact_stores`)."
    )
    master_key: MasterKeyText | None = Field(
        None,
        description="Base64 of 32 random bytes: wraps every project's data key. Required in "
        "production; `aiaas dev` makes one in the data dir; `aiaas keys generate` prints one.",
    )
    previous_master_keys: tuple[MasterKeyText, ...] = Field(
        (),
        description="Master keys being rotated out, comma separated: they still unwrap data keys "
        "until `aiaas keys rotate` has re-wrapped them with master_key.",
    )
    upload_max_bytes: int = Field(
        2 * 1024**3, ge=1, description="Largest dataset file accepted by an upload."
    )
    dataset_max_columns: int = Field(
        10_000,
        ge=1,
        description="Widest table an upload may hold, checked from a CSV's header or a Parquet "
        "file's footer before anything is read.",
    )
    dataset_max_rows: int = Field(
        1_000_000_000, ge=1, description="Most rows a Parquet upload's footer may declare."
    )
    dataset_max_cell_bytes: int = Field(
        1 << 20,
        ge=1,
        description="Longest text value an upload may hold, in bytes; a CSV's rows are also "
        "bounded by its 4 MiB read block.",
    )
    dataset_max_uncompressed_bytes: int = Field(
        64 << 30,
        ge=1,
        description="Largest table a Parquet upload's footer may declare, uncompressed.",
    )
    ingest_memory_limit_bytes: int = Field(
        4 << 30,
        ge=1 << 30,
        description="Address space of each process that reads uploads: a file that needs more "
        "is refused, and the API process keeps its own memory.",
    )
    ingest_processes: int = Field(
        2,
        ge=1,
        description="Uploads read at once by one API process, each in its own child process; "
        "more wait their turn.",
    )
    gc_grace_s: int = Field(
        3600,
        ge=0,
        description="Garbage collection keeps an unreferenced artifact younger than this, since "
        "an upload in flight stores its artifact before the row that refers to it.",
    )
    artifact_dir: Path | None = Field(
        None,
        description="Root of the filesystem artifact store; defaults to `<data_dir>/artifacts`.",
    )
    plugins: tuple[str, ...] | None = Field(
        None,
        description="Allowlist of `aiaas` entry points that may load, comma separated; "
        "unset loads every installed one.",
    )
    disable_plugin_autoload: bool = Field(
        False, description="`1` loads no entry-point plugin at all, only the built-ins."
    )
    public_paths: tuple[str, ...] = Field(
        ("/healthz", "/readyz"),
        description="HTTP paths answered without credentials, comma separated.",
    )
    cors_origins: tuple[str, ...] = Field(
        (), description="Origins allowed to call the API from a browser, comma separated."
    )
    graphql_max_depth: int = Field(
        12, ge=2, le=100, description="Deepest GraphQL selection accepted."
    )
    graphql_max_aliases: int = Field(
        30, ge=1, le=1000, description="Most aliases in one GraphQL document, fragments included."
    )
    graphql_max_tokens: int = Field(
        4000, ge=100, le=100_000, description="Most lexical tokens in one GraphQL document."
    )
    graphql_max_body_bytes: int = Field(
        1024**2,
        ge=1024,
        description="Largest /graphql request body that is not a multipart upload; a larger "
        "one is answered 413 before it is read, parsed or authenticated.",
    )
    policy_reload_interval_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Full reload of the access policy, a backstop to change notifications.",
    )
    login_attempts_per_user: int = Field(
        5,
        ge=1,
        description="Failed logins allowed per user from one client address per login_window_s.",
    )
    login_attempts_per_user_global: int = Field(
        100,
        ge=1,
        description="Failed logins allowed per user from all addresses together per "
        "login_window_s: the backstop against guessing from many addresses.",
    )
    login_attempts_per_client: int = Field(
        20, ge=1, description="Failed logins allowed per client address per login_window_s."
    )
    login_window_s: int = Field(300, ge=1, description="Window of the login rate limits.")
    session_ttl_s: int = Field(
        12 * 3600, ge=60, description="Lifetime of a session token from `login`."
    )
    queue_name: str = Field(
        "aiaas:queue", min_length=1, description="Name of the arq queue in Redis."
    )
    worker_poll_delay_s: float = Field(
        0.05, gt=0, le=1.0, description="How often an idle worker polls the queue."
    )
    worker_max_jobs: int = Field(4, ge=1, description="Jobs one worker process runs at once.")
    job_heartbeat_interval_s: float = Field(
        10.0, gt=0, le=300, description="How often a worker renews its claim on a running job."
    )
    job_stale_after_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A running job whose claim is older than this lost its worker; the "
        "reconciler (every 15 s) hands it to another, which resumes it from its checkpoint.",
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="This worker's scratch for checkpoints, by default `<data_dir>/checkpoints`; "
        "each checkpoint is also stored as an artifact, so workers need share no disk.",
    )
    checkpoint_every_steps: int = Field(
        1000,
        ge=1,
        description="Training steps between two checkpoints of a job. A checkpoint is written "
        "synchronously; every 1000 steps keeps its cost small even for models whose steps "
        "take well under a millisecond.",
    )
    compilation_cache_dir: Path | None = Field(
        None,
        description="JAX's persistent compilation cache, shared by training and serving; "
        "defaults to `<data_dir>/jax-cache`.",
    )
    role: ServerRole = Field(
        ServerRole.ALL,
        description="What `aiaas serve` answers: `all`; `api` (GraphQL and uploads, no V2 "
        "inference routes, no rollouts); `inference` (V2 inference REST, /metrics, health; "
        "rolls out deployments). `aiaas serve --role` sets it.",
    )
    model_cache_bytes: int = Field(
        4 * 1024**3,
        ge=1024**2,
        description="Memory budget of one serving process's loaded models (their bundle "
        "sizes); the least recently used model is unloaded past it.",
    )
    deployment_poll_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a serving process looks for deployments waiting for a rollout.",
    )
    deployment_stale_after_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A rollout whose process stopped renewing its claim for this long is taken "
        "over by another serving process.",
    )
    prediction_sample_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of prediction requests of which one row (inputs and outputs) is "
        "kept for drift monitoring.",
    )
    prediction_sample_retention_s: int = Field(
        7 * 24 * 3600, ge=3600, description="How long sampled predictions are kept."
    )
    drift_check_every_minutes: int = Field(
        10,
        ge=1,
        le=60,
        description="Minutes between two drift checks of every serving deployment (a divisor "
        "of 60 keeps them evenly spaced).",
    )
    drift_window_s: int = Field(
        24 * 3600, ge=60, description="Age of the newest samples a drift check compares."
    )
    drift_min_samples: int = Field(
        100, ge=1, description="Fewest samples a drift check needs to compute a PSI."
    )
    drift_psi_threshold: float = Field(
        0.25,
        gt=0,
        description="PSI above which a feature's drift raises the alert, unless the "
        "deployment sets its own.",
    )

    def __repr_args__(self) -> Any:
        # Keep passwords out of logs and tracebacks that print the config.
        for name, value in super().__repr_args__():
            if name in _SECRET_FIELDS and value:
                yield name, "***"
            else:
                yield name, redact_url(value) if name in _URL_FIELDS and value else value

    @property
    def scratch_dir(self) -> Path:
        """Where uploads and intermediate files wait while they are processed."""
        return self.data_dir / "scratch"

    @property
    def resolved_artifact_dir(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def resolved_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    @property
    def resolved_compilation_cache_dir(self) -> Path:
        return self.compilation_cache_dir or self.data_dir / "jax-cache"

    @property
    def is_dev(self) -> bool:
        return self.mode is Mode.DEV


_URL_FIELDS = frozenset({"database_url", "database_owner_url", "redis_url"})
_SECRET_FIELDS = frozenset({"master_key", "previous_master_keys"})
# Fields that take a list: in the environment they are written comma separated.
_LIST_FIELDS = frozenset({"plugins", "public_paths", "cors_origins", "previous_master_keys"})


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _unknown_key_error(key: str, known: list[str], where: str) -> ConfigError:
    suggestion = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {suggestion[0]}?" if suggestion else ""
    return ConfigError(f"unknown configuration key {key} in {where}{hint}")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {env_name(field): field for field in Config.model_fields}
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key in (CONFIG_FILE_ENV, "AIAAS_URL", "AIAAS_TOKEN"):
            continue
        if key not in known:
            raise _unknown_key_error(key, [*known, CONFIG_FILE_ENV], "the environment")
        field = known[key]
        values[field] = _split_list(raw) if field in _LIST_FIELDS else raw
    return values


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _from_file(path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    for key in values:
        if key not in Config.model_fields:
            raise _unknown_key_error(key, list(Config.model_fields), str(path))
    return values


def load_config(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the `Config`: defaults < TOML file < environment < explicit overrides (CLI flags)."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(CONFIG_FILE_ENV):
        config_file = Path(environ[CONFIG_FILE_ENV])
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_from_file(config_file))
    values.update(_from_environment(environ))
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return build_config(values)


def config_environment(config: Config) -> dict[str, str]:
    """The `AIAAS_*` variables that make `load_config` rebuild `config` in another process:
    `aiaas dev` hands its children their whole resolved configuration (file and flags) so."""
    environment: dict[str, str] = {}
    for name, value in config.model_dump(mode="json").items():
        if value is None:
            continue
        if name in _LIST_FIELDS:
            environment[env_name(name)] = ",".join(value)
        elif isinstance(value, bool):
            environment[env_name(name)] = "1" if value else "0"
        else:
            environment[env_name(name)] = str(value)
    return environment


def build_config(values: Mapping[str, Any]) -> Config:
    """Validate `values` into a `Config`, turning pydantic's report into one `ConfigError`."""
    try:
        return Config.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "config"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown configuration key"
            problems.append(f"{field} ({env_name(field)}): {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
