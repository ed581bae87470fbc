"""Credentials that `aiaas login` stores: private from their first byte (0600), refused when
others may read them, and what `Client.from_env()` falls back to when AIAAS_URL and AIAAS_TOKEN
are not both set."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aiaas.client import Client, credentials
from aiaas.client.credentials import Credentials, CredentialsError
from aiaas.client.errors import AiaasClientError


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("AIAAS_URL", raising=False)
    monkeypatch.delenv("AIAAS_TOKEN", raising=False)
    return tmp_path / "config"


def test_stored_credentials_are_private_and_read_back(config_home: Path) -> None:
    path = credentials.store(Credentials("http://aiaas.test:8000", "aiaas_secret"))
    assert path == config_home / "aiaas" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.load() == Credentials("http://aiaas.test:8000", "aiaas_secret")
    assert "aiaas_secret" not in repr(credentials.load())
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]


def test_credentials_others_may_read_are_refused() -> None:
    path = credentials.store(Credentials("http://aiaas.test", "aiaas_secret"))
    path.chmod(0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        credentials.load()


def test_a_file_that_is_not_credentials_is_refused() -> None:
    path = credentials.store(Credentials("http://aiaas.test", "aiaas_secret"))
    path.write_text("[1, 2]")
    with pytest.raises(CredentialsError, match="aiaas login"):
        credentials.load()


def test_from_env_prefers_the_environment_then_the_stored_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AiaasClientError, match="AIAAS_URL and AIAAS_TOKEN"):
        Client.from_env()
    credentials.store(Credentials("http://stored.test:1", "aiaas_stored"))
    with Client.from_env() as client:
        assert client.url == "http://stored.test:1"
    monkeypatch.setenv("AIAAS_URL", "http://env.test:2/")
    # A stored token goes only to the URL it was stored with.
    with pytest.raises(AiaasClientError, match="AIAAS_URL is set but AIAAS_TOKEN is not"):
        Client.from_env()
    monkeypatch.setenv("AIAAS_TOKEN", "aiaas_env")
    with Client.from_env() as client:
        assert client.url == "http://env.test:2"
        assert client.http.headers["authorization"] == "Bearer aiaas_env"


def test_forget_removes_them() -> None:
    credentials.store(Credentials("http://aiaas.test", "aiaas_secret"))
    assert credentials.forget() is True
    assert credentials.load() is None
    assert credentials.forget() is False
