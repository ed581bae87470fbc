"""What the user-command test modules share: scikit-learn's wine data as a CSV file, and its
upload into the module's project (each module has its own server, `cli` and `project`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from user_cli import Cli, wine_frame


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-files") / "wine.csv"
    wine_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def uploaded(cli: Cli, project: str, wine_csv: Path) -> dict[str, Any]:
    version: dict[str, Any] = cli.json(
        "datasets", "upload", str(wine_csv), "--project", project, "--name", "wine"
    )
    return version
