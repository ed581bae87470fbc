"""Third-party plugins, installed for real: pip builds the packages, the entry points find them.

The example package (examples/aiaas-example-plugin) and a few deliberately broken packages are
installed with pip into temporary directories, never into the test environment, and reach
`aiaas` only through PYTHONPATH (subprocesses) or `sys.path` (in-process). So no other test can
see them, and a stale install cannot hide a broken example.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import pytest

from aiaas.app import create_app
from aiaas.core.config import Config
from aiaas.core.identity.accounts import bootstrap_admin
from aiaas.core.platform import Platform
from aiaas.core.plugins import DEFAULT_PLUGINS, create_plugin_manager
from support import REPOSITORY, clean_environment, data_of, error_codes, graphql

EXAMPLE_PLUGIN_SOURCE = REPOSITORY / "examples" / "aiaas-example-plugin"
EXAMPLE_HOOKS = ["aiaas_cli_commands", "aiaas_graphql_schema"]
SUBPROCESS_TIMEOUT_S = 180

GREETING_QUERY = "query Greet($name: String!) { exampleGreeting(name: $name) }"


# Installing packages -----------------------------------------------------------------------


def pip_install_into(target: Path, *sources: Path) -> None:
    """Install `sources` into `target` the way a user installs a plugin, minus the download."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            # Build with this environment's setuptools, so that nothing is downloaded.
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            *map(str, sources),
        ],
        env=clean_environment(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, (
        "pip could not install the plugin packages; building them offline needs "
        "setuptools>=70.1 (or setuptools>=61 plus `wheel`) in the test environment\n"
        f"{result.stdout}\n{result.stderr}"
    )


def copy_of_source(source: Path, destination: Path) -> Path:
    # pip builds in the source tree (build/, *.egg-info): build a copy to keep the checkout clean.
    return Path(
        shutil.copytree(
            source,
            destination,
            ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
        )
    )


def write_plugin_package(
    root: Path, distribution: str, module: str, entry_point: str, code: str
) -> Path:
    """A minimal setuptools project whose module `module` is the `aiaas` entry point
    `entry_point`."""
    project = root / distribution
    package = project / "src" / module
    package.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{distribution}"
            version = "0.1.0"

            [project.entry-points.aiaas]
            {entry_point} = "{module}"
            """
        ),
        encoding="utf-8",
    )
    (package / "__init__.py").write_text(dedent(code), encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def example_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example plugin, to put on PYTHONPATH."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = copy_of_source(EXAMPLE_PLUGIN_SOURCE, work / "source")
    target = work / "site"
    pip_install_into(target, source)
    return target


@pytest.fixture(scope="module")
def broken_plugins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding three installed plugins, each broken in its own way."""
    work = tmp_path_factory.mktemp("broken-plugins")
    fails_at_import = write_plugin_package(
        work,
        "aiaas-broken-import",
        "aiaas_broken_import",
        "broken-import",
        """\
        raise RuntimeError("aiaas_broken_import fails at import on purpose")
        """,
    )
    hook_raises = write_plugin_package(
        work,
        "aiaas-broken-hook",
        "aiaas_broken_hook",
        "broken-hook",
        """\
        from aiaas.core.hookspecs import hookimpl


        @hookimpl
        def aiaas_cli_commands():
            return []


        @hookimpl
        def aiaas_trainers():
            raise RuntimeError("aiaas_trainers fails on purpose")
        """,
    )
    unknown_hook = write_plugin_package(
        work,
        "aiaas-unknown-hook",
        "aiaas_unknown_hook",
        "unknown-hook",
        """\
        from aiaas.core.hookspecs import hookimpl


        @hookimpl
        def aiaas_no_such_hook():
            return []
        """,
    )
    target = work / "site"
    pip_install_into(target, fails_at_import, hook_raises, unknown_hook)
    return target


# Running the CLI ---------------------------------------------------------------------------


def run_aiaas(
    *arguments: str, plugin_dirs: Sequence[Path], **variables: str
) -> subprocess.CompletedProcess[str]:
    """`python -m aiaas ...` with only `plugin_dirs` added to the path and no inherited
    AIAAS_* variable, so the developer's own settings cannot change what loads."""
    environment = clean_environment(
        PYTHONPATH=os.pathsep.join(str(directory) for directory in plugin_dirs), **variables
    )
    return subprocess.run(
        [sys.executable, "-m", "aiaas", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )


def plugins_report(plugin_dirs: Sequence[Path], **variables: str) -> dict[str, dict[str, Any]]:
    """`aiaas plugins --json`, keyed by plugin name; the command itself must succeed."""
    result = run_aiaas("plugins", "--json", plugin_dirs=plugin_dirs, **variables)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return {entry["name"]: entry for entry in entries}


def assert_builtins_loaded(report: dict[str, dict[str, Any]]) -> None:
    for name in DEFAULT_PLUGINS:
        assert report[name]["source"] == "builtin"
        assert report[name]["state"] == "loaded", report[name]


# The example plugin through the CLI --------------------------------------------------------


def test_installed_example_plugin_is_listed_as_a_loaded_entry_point(
    example_plugin_dir: Path,
) -> None:
    report = plugins_report([example_plugin_dir])

    assert report["example"] == {
        "name": "example",
        "version": "0.1.0",
        "source": "entry-point",
        "state": "loaded",
        "hooks": EXAMPLE_HOOKS,
        "failures": [],
    }
    assert_builtins_loaded(report)


def test_disabling_autoload_leaves_the_installed_plugin_out(example_plugin_dir: Path) -> None:
    report = plugins_report([example_plugin_dir], AIAAS_DISABLE_PLUGIN_AUTOLOAD="1")

    assert list(report) == list(DEFAULT_PLUGINS)
    assert_builtins_loaded(report)


def test_allowlist_naming_the_plugin_loads_it(example_plugin_dir: Path) -> None:
    report = plugins_report([example_plugin_dir], AIAAS_PLUGINS="example")

    assert report["example"]["state"] == "loaded"
    assert report["example"]["hooks"] == EXAMPLE_HOOKS


def test_allowlist_naming_another_plugin_leaves_it_out_and_reports_the_missing_one(
    example_plugin_dir: Path,
) -> None:
    report = plugins_report([example_plugin_dir], AIAAS_PLUGINS="other")

    assert "example" not in report
    assert report["other"]["state"] == "failed"
    assert report["other"]["hooks"] == []
    assert [failure["stage"] for failure in report["other"]["failures"]] == ["allowlist"]
    assert "not installed" in report["other"]["failures"][0]["reason"]
    assert_builtins_loaded(report)


def test_plugin_command_runs_through_the_cli(example_plugin_dir: Path) -> None:
    result = run_aiaas("example-greet", "--name", "Ada", plugin_dirs=[example_plugin_dir])

    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, Ada, from the aiaas example plugin!\n"


def test_plugin_command_does_not_exist_when_the_plugin_is_not_loaded(
    example_plugin_dir: Path,
) -> None:
    # The counterpart of the test above: the command comes from the plugin, not from aiaas.
    result = run_aiaas(
        "example-greet", plugin_dirs=[example_plugin_dir], AIAAS_DISABLE_PLUGIN_AUTOLOAD="1"
    )

    assert result.returncode == 2
    assert "No such command 'example-greet'" in result.stderr


def test_export_schema_holds_only_the_builtin_fields_even_with_a_plugin_installed(
    example_plugin_dir: Path,
) -> None:
    with_plugin = run_aiaas("export-schema", plugin_dirs=[example_plugin_dir])
    without_plugin = run_aiaas("export-schema", plugin_dirs=[])

    assert with_plugin.returncode == 0, with_plugin.stderr
    assert "health" in with_plugin.stdout
    assert "exampleGreeting" not in with_plugin.stdout
    assert with_plugin.stdout == without_plugin.stdout


# Broken plugins ----------------------------------------------------------------------------


def test_broken_plugins_are_reported_and_the_others_still_load(
    example_plugin_dir: Path, broken_plugins_dir: Path
) -> None:
    result = run_aiaas("plugins", "--json", plugin_dirs=[example_plugin_dir, broken_plugins_dir])

    assert result.returncode == 0, result.stderr
    report = {entry["name"]: entry for entry in json.loads(result.stdout)}
    fails_at_import = report["broken-import"]
    assert fails_at_import["state"] == "failed"
    assert fails_at_import["source"] == "entry-point"
    assert fails_at_import["hooks"] == []
    assert [failure["stage"] for failure in fails_at_import["failures"]] == ["import"]
    assert "fails at import on purpose" in fails_at_import["failures"][0]["reason"]

    hook_raises = report["broken-hook"]
    assert hook_raises["state"] == "degraded"
    assert hook_raises["version"] == "0.1.0"
    assert hook_raises["hooks"] == ["aiaas_cli_commands", "aiaas_trainers"]
    assert [failure["stage"] for failure in hook_raises["failures"]] == ["hook aiaas_trainers"]
    assert "aiaas_trainers fails on purpose" in hook_raises["failures"][0]["reason"]

    unknown_hook = report["unknown-hook"]
    assert unknown_hook["state"] == "failed"
    assert [failure["stage"] for failure in unknown_hook["failures"]] == ["register"]
    assert "aiaas_no_such_hook" in unknown_hook["failures"][0]["reason"]

    assert report["example"]["state"] == "loaded"
    assert_builtins_loaded(report)
    # The operator also finds the failures in the log, not only by asking for them.
    for name in ("broken-import", "broken-hook", "unknown-hook"):
        assert f"plugin {name} left out" in result.stderr


def test_plugins_table_shows_why_a_plugin_failed(broken_plugins_dir: Path) -> None:
    result = run_aiaas("plugins", plugin_dirs=[broken_plugins_dir])

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    heading = next(index for index, line in enumerate(lines) if line.startswith("broken-import "))
    assert lines[heading].endswith("[entry-point, failed]")
    assert lines[heading + 1].strip().startswith("FAILED at import: RuntimeError(")


def test_broken_plugins_do_not_break_the_commands_of_the_others(
    example_plugin_dir: Path, broken_plugins_dir: Path
) -> None:
    result = run_aiaas(
        "example-greet", "--name", "Ada", plugin_dirs=[example_plugin_dir, broken_plugins_dir]
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, Ada, from the aiaas example plugin!\n"


# The example plugin through the GraphQL API ------------------------------------------------


@pytest.fixture(scope="module")
async def example_platform(config: Config, example_plugin_dir: Path) -> AsyncIterator[Platform]:
    """A started platform whose plugin manager found the example plugin through its entry
    point, exactly as a server process finds it."""
    # The allowlist keeps any other plugin installed in the test environment out of the way.
    plugin_config = config.model_copy(
        update={"disable_plugin_autoload": False, "plugins": ("example",)}
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.syspath_prepend(str(example_plugin_dir))
        importlib.invalidate_caches()
        manager = create_plugin_manager(plugin_config)
        # The schema module is imported while the registries are built: keep the path until then.
        platform = Platform(plugin_config, manager)
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()
        forget_modules("aiaas_example_plugin")


def forget_modules(package: str) -> None:
    # No other test module should find the example plugin already imported.
    for name in [name for name in sys.modules if name.partition(".")[0] == package]:
        del sys.modules[name]


@pytest.fixture(scope="module")
async def example_admin_token(example_platform: Platform) -> str:
    issued = await bootstrap_admin(example_platform)
    assert issued is not None, "each module starts from an empty database"
    return issued.secret


@pytest.fixture
async def example_client(example_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(platform=example_platform))
    async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
        yield client


async def test_graphql_serves_the_plugin_field_to_an_admin(
    example_client: httpx.AsyncClient, example_admin_token: str
) -> None:
    data = data_of(
        await graphql(example_client, GREETING_QUERY, {"name": "Ada"}, token=example_admin_token)
    )

    assert data == {"exampleGreeting": "Hello, Ada, from the aiaas example plugin!"}


async def test_graphql_refuses_the_plugin_field_to_an_anonymous_caller(
    example_client: httpx.AsyncClient,
) -> None:
    status, body = await graphql(example_client, GREETING_QUERY, {"name": "Ada"})

    assert status == 401
    assert body["data"] is None
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_graphql_plugins_field_lists_the_example_plugin(
    example_client: httpx.AsyncClient, example_admin_token: str
) -> None:
    data = data_of(
        await graphql(
            example_client,
            "{ plugins { name version source state hooks } }",
            token=example_admin_token,
        )
    )

    assert {
        "name": "example",
        "version": "0.1.0",
        "source": "entry-point",
        "state": "LOADED",
        "hooks": EXAMPLE_HOOKS,
    } in data["plugins"]
