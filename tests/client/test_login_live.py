"""`aiaas login` against a real `aiaas serve`: a good token is checked and stored (0600), and
`Client.from_env()` then connects with it; a refused token or an unreachable URL is one line on
stderr, a non-zero exit and nothing stored; `aiaas logout` removes the file."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiaas.cli import cli
from aiaas.client import Client, credentials
from aiaas.core.config import Config
from support import RunningServer, free_port, ready_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    data_dir = str(config.data_dir)
    async with ready_server(config, tmp_path_factory, AIAAS_DATA_DIR=data_dir) as running:
        yield running


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("AIAAS_URL", "AIAAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config"


def test_login_checks_and_stores_the_token_for_the_sdk(
    server: RunningServer, admin_token: str
) -> None:
    result = CliRunner().invoke(cli, ["login", "--url", server.base_url], input=f"{admin_token}\n")
    assert result.exit_code == 0, result.output
    assert admin_token not in result.output  # prompted without echo
    assert f"logged in to {server.base_url} as admin" in result.output
    path = credentials.credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Client.from_env() as client:
        assert client.api.viewer().viewer.username == "admin"
    result = CliRunner().invoke(cli, ["logout"])
    assert (result.exit_code, path.exists()) == (0, False)


def test_a_refused_token_is_one_line_and_stores_nothing(server: RunningServer) -> None:
    result = CliRunner().invoke(
        cli, ["login", "--url", server.base_url, "--token", "aiaas_not-a-token"]
    )
    assert result.exit_code == 3
    [line] = result.output.splitlines()
    assert line.startswith(f"error: the aiaas server at {server.base_url} refused the token")
    assert credentials.load() is None


def test_an_unreachable_url_is_one_line_and_stores_nothing() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["login", "--url", url, "--token", "aiaas_token"])
    assert result.exit_code == 3
    [line] = result.output.splitlines()
    assert line.startswith(f"error: cannot reach the aiaas server at {url}")
    assert credentials.load() is None
