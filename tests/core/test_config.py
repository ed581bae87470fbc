"""Configuration: defaults, TOML file, environment, overrides, and the errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.core.config import Config, Mode, build_config, config_environment, load_config
from aiaas.core.errors import ConfigError
from support import REPOSITORY, clean_environment

PASSWORD = "Sup3rS3cretPassw0rd"
"""A password distinctive enough that finding it in a message cannot be a coincidence."""


def write_toml(directory: Path, text: str) -> Path:
    path = directory / "aiaas.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    config = load_config({})

    assert config.mode is Mode.PRODUCTION
    assert config.is_dev is False
    assert config.host == "127.0.0.1"
    assert config.port == 8000
    assert config.database_url is None
    assert config.redis_url is None
    assert config.metadata_store == "postgresql"
    assert config.artifact_store == "filesystem"
    assert config.plugins is None
    assert config.disable_plugin_autoload is False
    assert config.public_paths == ("/healthz", "/readyz")
    assert config.cors_origins == ()
    assert config.log_level == "info"
    assert config.resolved_artifact_dir == config.data_dir / "artifacts"
    # An explicit artifact_dir wins over the one derived from data_dir.
    explicit = build_config({"artifact_dir": tmp_path / "blobs"})
    assert explicit.resolved_artifact_dir == tmp_path / "blobs"


def test_values_from_a_toml_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        f"""
mode = "dev"
port = 9100
database_url = "postgresql://aiaas:{PASSWORD}@db.example:5433/aiaas"
redis_url = "redis://cache.example:6380/2"
cors_origins = ["https://app.example", "https://admin.example"]
""",
    )

    config = load_config({}, config_file=path)

    assert config.mode is Mode.DEV
    assert config.port == 9100
    assert config.database_url == f"postgresql://aiaas:{PASSWORD}@db.example:5433/aiaas"
    assert config.redis_url == "redis://cache.example:6380/2"
    assert config.cors_origins == ("https://app.example", "https://admin.example")


def test_values_from_the_environment_are_converted_to_their_types() -> None:
    config = load_config(
        {
            "AIAAS_PORT": "9200",
            "AIAAS_DISABLE_PLUGIN_AUTOLOAD": "1",
            "AIAAS_DATABASE_CONNECT_TIMEOUT_S": "2.5",
            "AIAAS_DATABASE_URL": "postgresql://localhost/aiaas",
            # Variables outside the prefix are none of the config's business.
            "DATABASE_URL": "ignored",
        }
    )

    assert config.port == 9200
    assert config.disable_plugin_autoload is True
    assert config.database_connect_timeout_s == 2.5
    assert config.database_url == "postgresql://localhost/aiaas"


def test_precedence_is_defaults_then_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = 8001\nhost = "10.0.0.1"\nlog_level = "debug"\n')
    environ = {"AIAAS_PORT": "8002", "AIAAS_HOST": "10.0.0.2"}

    from_file = load_config({}, config_file=path)
    from_environment = load_config(environ, config_file=path)
    overridden = load_config(environ, config_file=path, overrides={"port": 8003, "host": None})

    assert (from_file.port, from_file.host, from_file.log_level) == (8001, "10.0.0.1", "debug")
    assert (from_environment.port, from_environment.host) == (8002, "10.0.0.2")
    # The file still supplies what the environment does not name.
    assert from_environment.log_level == "debug"
    assert overridden.port == 8003
    # A None override is a CLI flag that was not given: it must not erase a lower layer.
    assert overridden.host == "10.0.0.2"
    # Untouched by every layer: the default.
    assert overridden.queue_name == Config.model_fields["queue_name"].default


def test_config_file_named_by_the_environment_is_read(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 8111\n")

    config = load_config({"AIAAS_CONFIG_FILE": str(path)})

    assert config.port == 8111


def test_unknown_environment_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"AIAAS_DATABSE_URL": "postgresql://localhost/aiaas"})

    message = raised.value.message
    assert "AIAAS_DATABSE_URL" in message
    assert "did you mean AIAAS_DATABASE_URL?" in message


def test_the_sdks_url_and_token_in_the_environment_are_no_settings_and_not_refused() -> None:
    # The tutorial exports them in the terminal where an operator then runs `aiaas users`,
    # `aiaas tokens` or `aiaas backup`: they must not stop those commands.
    config = load_config(
        {"AIAAS_URL": "http://127.0.0.1:8000", "AIAAS_TOKEN": "aiaas_x_y", "AIAAS_PORT": "9000"}
    )

    assert config.port == 9000
    assert config == load_config({"AIAAS_PORT": "9000"})
    # A misspelling of them is still refused.
    with pytest.raises(ConfigError, match="unknown configuration key AIAAS_TOKN"):
        load_config({"AIAAS_TOKN": "aiaas_x_y"})


def test_unknown_toml_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'databse_url = "postgresql://localhost/aiaas"\n')

    with pytest.raises(ConfigError) as raised:
        load_config({}, config_file=path)

    message = raised.value.message
    assert "databse_url" in message
    assert "did you mean database_url?" in message
    assert str(path) in message


def test_unknown_key_passed_to_build_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown configuration key"):
        build_config({"prot": 80})


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"mysql://aiaas:{PASSWORD}@db.example/aiaas", "postgresql://"),
        (f"postgresql://aiaas:{PASSWORD}@db.example:54x2/aiaas", "malformed port"),
        (f"postgresql://aiaas:{PASSWORD}@db.example:99999/aiaas", "malformed port"),
        (f"postgresql://aiaas:{PASSWORD}@/aiaas", "no host"),
        (f"postgresql://aiaas:{PASSWORD}@db.example/", "no database name"),
        (f"postgresql://aiaas:{PASSWORD}@db.example", "no database name"),
    ],
    ids=["scheme", "port", "port-range", "host", "database-slash", "database"],
)
def test_malformed_database_url_is_refused_without_revealing_the_password(
    url: str, complaint: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"AIAAS_DATABASE_URL": url})

    message = raised.value.message
    assert "database_url (AIAAS_DATABASE_URL)" in message
    assert complaint in message
    assert PASSWORD not in message
    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in repr(raised.value)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"http://:{PASSWORD}@cache.example:6379/0", "redis://"),
        (f"redis://:{PASSWORD}@cache.example:63a9/0", "malformed port"),
        (f"redis://:{PASSWORD}@/0", "no host"),
        (f"redis://:{PASSWORD}@cache.example:6379/zero", "must be a number"),
        (f"unix://:{PASSWORD}@", "no socket path"),
    ],
    ids=["scheme", "port", "host", "database", "socket"],
)
def test_malformed_redis_url_is_refused_without_revealing_the_password(
    url: str, complaint: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"AIAAS_REDIS_URL": url})

    message = raised.value.message
    assert "redis_url (AIAAS_REDIS_URL)" in message
    assert complaint in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(raised.value)


@pytest.mark.parametrize("character", ["/", "#", "?"])
def test_password_with_an_unencoded_reserved_character_is_not_revealed(character: str) -> None:
    # A generated password often contains such characters; forgetting to percent-encode them is
    # exactly the mistake that makes the URL malformed, so this message is the one users see.
    password = f"Sup3r{character}S3cret"
    url = f"postgresql://aiaas:{password}@db.example:5432/aiaas"

    with pytest.raises(ConfigError) as raised:
        load_config({"AIAAS_DATABASE_URL": url})

    assert password.split(character)[1] not in raised.value.message


def test_password_in_the_query_string_is_not_revealed() -> None:
    url = f"postgresql://aiaas@db.example/?password={PASSWORD}"

    with pytest.raises(ConfigError, match="no database name") as raised:
        load_config({"AIAAS_DATABASE_URL": url})

    assert PASSWORD not in raised.value.message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://localhost/aiaas",
        "postgres://user@db.example:5433/aiaas",
        f"postgresql://user:{PASSWORD}@[::1]:5432/aiaas?sslmode=require",
        "postgresql:///aiaas?host=/var/run/postgresql",
    ],
)
def test_well_formed_database_urls_are_accepted(url: str) -> None:
    assert build_config({"database_url": url}).database_url == url


@pytest.mark.parametrize(
    "url",
    ["redis://localhost", "rediss://:pw@cache.example:6380/3", "unix:///run/redis.sock"],
)
def test_well_formed_redis_urls_are_accepted(url: str) -> None:
    assert build_config({"redis_url": url}).redis_url == url


def test_list_fields_parse_comma_separated_from_the_environment() -> None:
    config = load_config(
        {
            "AIAAS_CORS_ORIGINS": " https://a.example , https://b.example,,",
            "AIAAS_PLUGINS": "aiaas-extra,aiaas-more",
            "AIAAS_PUBLIC_PATHS": "/healthz",
        }
    )

    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert config.plugins == ("aiaas-extra", "aiaas-more")
    assert config.public_paths == ("/healthz",)


def test_config_file_named_by_the_environment_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"

    with pytest.raises(ConfigError, match="does not exist") as raised:
        load_config({"AIAAS_CONFIG_FILE": str(missing)})

    assert str(missing) in raised.value.message


def test_config_file_with_invalid_toml_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = = 8000\n")

    with pytest.raises(ConfigError, match="cannot be read") as raised:
        load_config({"AIAAS_CONFIG_FILE": str(path)})

    assert str(path) in raised.value.message


def test_config_file_value_of_the_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = "eighty"\n')

    with pytest.raises(ConfigError, match=r"port \(AIAAS_PORT\)"):
        load_config({}, config_file=path)


def _is_well_formed_postgresql_url(url: str) -> bool:
    """An independent statement of what a usable database URL is."""
    parts = urlsplit(url)
    has_host = bool(parts.hostname) or bool(parse_qs(parts.query).get("host"))
    return (
        parts.scheme in {"postgresql", "postgres"}
        and has_host
        and bool(parts.path.strip("/"))
        and (parts.port is None or 0 <= parts.port <= 65535)
    )


def _build_or_refuse(values: dict[str, str]) -> Config | ConfigError:
    """The config, or the ConfigError refusing it. Any other exception (a ValueError from
    urlsplit, say) propagates and fails the calling test."""
    try:
        return build_config(values)
    except ConfigError as exc:
        return exc


_URL_LIKE = st.builds(
    "{}://{}".format,
    st.sampled_from(["postgresql", "postgres", "mysql", "", "POSTGRESQL"]),
    st.text(),
)


@given(url=st.one_of(st.text(), _URL_LIKE))
def test_any_database_url_is_either_well_formed_or_a_config_error(url: str) -> None:
    outcome = _build_or_refuse({"database_url": url})

    if isinstance(outcome, ConfigError):
        assert outcome.message.startswith("invalid configuration: database_url")
    else:
        assert outcome.database_url is not None
        assert _is_well_formed_postgresql_url(outcome.database_url)


@pytest.mark.slow
def test_cli_refuses_an_unknown_key_with_one_line_and_exit_status_2(tmp_path: Path) -> None:
    environment = clean_environment(AIAAS_DATABSE_URL="postgresql://localhost/aiaas")

    completed = subprocess.run(
        [sys.executable, "-m", "aiaas", "serve"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ")
    assert "AIAAS_DATABSE_URL" in lines[0]
    assert "AIAAS_DATABASE_URL" in lines[0].split("did you mean", 1)[1]
    assert "Traceback" not in completed.stderr
    assert str(REPOSITORY) not in completed.stderr


def test_config_environment_rebuilds_the_same_config_in_another_process(tmp_path: Path) -> None:
    # aiaas dev hands its children their settings this way: file values and flags included.
    original = build_config(
        {
            "mode": "dev",
            "data_dir": tmp_path,
            "database_url": f"postgresql://aiaas:{PASSWORD}@127.0.0.1:5432/aiaas",
            "plugins": ("first", "second"),
            "cors_origins": ("https://portal.example",),
            "disable_plugin_autoload": True,
            "worker_poll_delay_s": 0.02,
        }
    )

    rebuilt = load_config(config_environment(original))

    assert rebuilt == original
