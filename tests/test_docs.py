"""The docs keep up with the code: every hook and every setting is documented, every hook has a
test named after it, and what the pages name and show exists and runs.

Adding a hook or a setting without its documentation fails here, as does documenting one that
is gone.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import types
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from aiaas.access_matrix import render_access_control
from aiaas.cli.inspection import builtin_schema
from aiaas.core import hookspecs
from aiaas.core.config import Config, build_config, env_name
from aiaas.core.platform import Platform
from aiaas.core.plugins import create_plugin_manager
from aiaas.error_reference import error_classes, meanings, render_error_reference
from aiaas.graphql.schema import build_schema
from support import REPOSITORY

DOCS = REPOSITORY / "docs"
SOURCE = REPOSITORY / "src" / "aiaas"
PLUGIN_HOOKS = DOCS / "plugin_hooks.md"
CONFIGURATION = DOCS / "configuration.md"
ACCESS_CONTROL = DOCS / "access-control.md"

FACTORY_DEFAULTS = {"data_dir": "`$XDG_DATA_HOME/aiaas`, else `~/.local/share/aiaas`"}
"""How the page states defaults that are computed (`default_factory`) rather than fixed."""


# Hooks --------------------------------------------------------------------------------------


def hooks() -> dict[str, Callable[..., Any]]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("aiaas_") and function.__module__ == hookspecs.__name__
    }


def hook_signature(name: str, function: Callable[..., Any]) -> str:
    # hookspecs.py uses `from __future__ import annotations`, so every annotation is a string,
    # which inspect would quote; the heading shows them as written in the source.
    return f"{name}{inspect.signature(function)}".replace("'", "")


def is_firstresult(function: Callable[..., Any]) -> bool:
    options: dict[str, Any] = getattr(function, f"{hookspecs.PROJECT_NAME}_spec", {})
    return bool(options.get("firstresult"))


def hook_sections() -> dict[str, str]:
    """`{signature: text of its section}` for every `## \\`...\\`` heading of the page."""
    parts = re.split(r"^## (.*)$", PLUGIN_HOOKS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    headings_and_bodies = zip(parts[1::2], parts[2::2], strict=True)
    return {
        heading.strip().strip("`"): body
        for heading, body in headings_and_bodies
        if heading.strip().startswith("`")
    }


def test_every_hook_has_a_section_headed_by_its_signature() -> None:
    documented = set(hook_sections())

    missing = [
        hook_signature(name, function)
        for name, function in hooks().items()
        if hook_signature(name, function) not in documented
    ]

    assert not missing, f"add a `## `<signature>`` section to {PLUGIN_HOOKS.name}: {missing}"


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    signatures = {hook_signature(name, function) for name, function in hooks().items()}

    stale = sorted(set(hook_sections()) - signatures)

    assert not stale, f"{PLUGIN_HOOKS.name} documents hooks that do not exist (any more): {stale}"


@pytest.mark.parametrize("name", sorted(hooks()))
def test_each_hook_section_states_firstresult_and_shows_an_implementation(name: str) -> None:
    function = hooks()[name]
    section = hook_sections().get(hook_signature(name, function), "")

    firstresult = "yes" if is_firstresult(function) else "no"
    assert f"**firstresult:** {firstresult}" in section
    assert "**Called:**" in section
    assert "**Returns:**" in section
    assert "**Failures:**" in section
    assert f"@hookimpl\ndef {name}(" in section


def test_every_hook_has_a_test_named_after_it() -> None:
    defined: set[str] = set()
    for path in (REPOSITORY / "tests").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        defined |= {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }

    missing = sorted(f"test_{name}" for name in hooks() if f"test_{name}" not in defined)

    assert not missing, f"add a test for each of these hooks (see tests/core): {missing}"


def python_examples(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", page.read_text(encoding="utf-8"), re.S | re.M)


def example_id(example: str) -> str:
    return "+".join(re.findall(r"^def (aiaas_\w+)\(", example, re.MULTILINE)) or "not-a-plugin"


@pytest.mark.parametrize("example", python_examples(PLUGIN_HOOKS), ids=example_id)
def test_the_plugin_examples_register_and_build_a_platform(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("aiaas_docs_example")
    # strawberry resolves a type's annotations through the module it was defined in.
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(example, f"<{PLUGIN_HOOKS.name}>", "exec"), module.__dict__)
    config = build_config({"disable_plugin_autoload": True})
    manager = create_plugin_manager(config)

    manager.register_plugin(module, "docs-example")
    build_schema(Platform(config, manager))

    assert manager.failures == []


# Settings -----------------------------------------------------------------------------------


def settings_rows() -> dict[str, list[str]]:
    """`{TOML key: [environment variable, default, description]}` from the settings table."""
    rows: dict[str, list[str]] = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def documented_default(name: str, field: FieldInfo) -> str:
    """A default as the page writes it: as it would be set in the environment."""
    default = field.default
    if default is PydanticUndefined:
        return FACTORY_DEFAULTS.get(name, f"<state the computed default of {name} here>")
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, Enum):
        return f"`{default.value}`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`" if default else "empty"
    return f"`{default}`"


@pytest.mark.parametrize("name", list(Config.model_fields))
def test_every_setting_has_a_row_with_its_variable_and_default(name: str) -> None:
    field = Config.model_fields[name]

    row = settings_rows().get(name)

    assert row is not None, f"add a row for `{name}` to {CONFIGURATION.name}"
    variable, default, description = row
    assert variable == f"`{env_name(name)}`"
    assert default == documented_default(name, field)
    assert field.description
    assert field.description in description


def test_no_row_documents_a_setting_that_does_not_exist() -> None:
    stale = sorted(set(settings_rows()) - set(Config.model_fields))

    assert not stale, f"{CONFIGURATION.name} documents settings that do not exist: {stale}"


# Access control -----------------------------------------------------------------------------


def test_the_access_control_page_is_the_generated_one() -> None:
    # The page is what the enforcer decides and what each field declares; the authorization
    # tests read their expectations from it, so a stale page would test the wrong thing.
    assert ACCESS_CONTROL.read_text(encoding="utf-8") == render_access_control(builtin_schema()), (
        f"{ACCESS_CONTROL.name} is stale: run "
        "`aiaas export-access-control --output docs/access-control.md`"
    )


# Names the pages mention --------------------------------------------------------------------


def code_spans(page: Path) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8")))


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


def path_exists(path: str) -> bool:
    path = path.rstrip("/")
    return (
        (REPOSITORY / path).exists()
        or (SOURCE / path).exists()
        or next(SOURCE.rglob(path), None) is not None
    )


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_the_modules_files_and_objects_a_page_names_exist(page: Path) -> None:
    spans = code_spans(page)

    dangling_names = sorted(
        span for span in spans if re.fullmatch(r"aiaas(\.\w+)+", span) and not resolves(span)
    )
    dangling_paths = sorted(
        span for span in spans if re.fullmatch(r"[\w./-]+(\.py|/)", span) and not path_exists(span)
    )

    assert not dangling_names, f"{page.name} names objects that do not exist: {dangling_names}"
    assert not dangling_paths, f"{page.name} names files that do not exist: {dangling_paths}"


# Error codes --------------------------------------------------------------------------------


def test_the_error_codes_page_is_the_generated_one() -> None:
    page = DOCS / "errors.md"
    assert page.read_text(encoding="utf-8") == render_error_reference(), (
        f"{page.name} is stale: run `aiaas export-error-codes --output docs/errors.md`"
    )


def test_every_error_code_belongs_to_one_exception() -> None:
    # A class that sets its own code owns it; only a class that inherits one (the concealed
    # denial, which must look exactly like "not found") shares its parent's.
    owners: dict[str, list[str]] = {}
    for cls in error_classes():
        if "code" in vars(cls):
            owners.setdefault(cls.code, []).append(cls.__name__)
    assert {code: names for code, names in owners.items() if len(names) > 1} == {}


def test_every_error_class_is_described_in_the_tree() -> None:
    described = meanings()
    undescribed = [cls.__name__ for cls in error_classes()[1:] if cls.__name__ not in described]
    assert undescribed == []
