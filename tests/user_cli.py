"""The `aiaas` user commands run as real processes: the command with its environment, and the
shape every refusal takes (one `error:` line on stderr and its exit code)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas
from sklearn.datasets import load_wine

from support import clean_environment

AIAAS = [sys.executable, "-m", "aiaas"]


@dataclass(frozen=True)
class Cli:
    """The `aiaas` command with its environment: a server URL and token, no stored credentials."""

    environment: dict[str, str]

    def __call__(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AIAAS, *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *arguments: str, timeout: float = 120) -> Any:
        result = self(*arguments, "--json", timeout=timeout)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def with_(self, **variables: str) -> Cli:
        return Cli({**self.environment, **variables})


def cli_of(base_url: str, token: str, config_home: Path) -> Cli:
    """The command as a user runs it against `base_url` with `token`, and no stored
    credentials of the machine's (its own config home)."""
    environment = clean_environment(
        AIAAS_URL=base_url,
        AIAAS_TOKEN=token,
        XDG_CONFIG_HOME=str(config_home),
        COLUMNS="300",  # rich's tables, off a terminal, are 80 columns wide otherwise
    )
    return Cli(environment)


def wine_frame() -> pandas.DataFrame:
    """scikit-learn's wine data: features f0..f12 and the cultivar as `label`."""
    data = load_wine()
    frame = pandas.DataFrame(data.data, columns=[f"f{i}" for i in range(data.data.shape[1])])
    frame["label"] = data.target
    return frame


def assert_one_line_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line
