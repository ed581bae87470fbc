"""The shape of the code (docs/architecture.md), checked on the import graph.

import-linter (`tox -e lint`) checks the layers and who may import a domain; these tests check
what its contracts do not say: that no module takes part in an import cycle, that modules stay
a size a person reads in one sitting, and that each domain names its public surface.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import grimp
import pytest

import aiaas

SOURCE = Path(aiaas.__file__).parent
DOMAINS = ("identity", "data", "training", "serving", "governance")
LARGEST_MODULE_LINES = 420
"""About 400 lines: a module any larger holds more than one thing to read about."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Imports under TYPE_CHECKING count: a reader follows them as much as any other.
    return grimp.build_graph("aiaas", cache_dir=None)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in on_stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_takes_part_in_an_import_cycle(graph: grimp.ImportGraph) -> None:
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    cyclic = grimp.ImportGraph()
    for module in ("a", "a.one", "a.two", "a.three"):
        cyclic.add_module(module)
    cyclic.add_import(importer="a.one", imported="a.two")
    cyclic.add_import(importer="a.two", imported="a.three")
    cyclic.add_import(importer="a.three", imported="a.one")
    assert import_cycles(cyclic) == [["a.one", "a.three", "a.two"]]


def test_no_module_is_longer_than_a_sitting() -> None:
    too_long = {
        str(path.relative_to(SOURCE)): lines
        for path in sorted(SOURCE.rglob("*.py"))
        if "migrations/versions" not in path.as_posix()
        and (lines := len(path.read_text().splitlines())) > LARGEST_MODULE_LINES
    }
    assert too_long == {}


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_domain_names_its_public_surface(domain: str) -> None:
    package = importlib.import_module(f"aiaas.core.{domain}")
    assert package.__doc__ and len(package.__doc__) > 80, f"{domain} says what it holds"
    surface = getattr(package, "__all__", None)
    assert surface, f"aiaas.core.{domain} lists what others may use in __all__"
    missing = [name for name in surface if not hasattr(package, name)]
    assert missing == []


def test_the_kernel_imports_no_domain(graph: grimp.ImportGraph) -> None:
    kernel = {
        module
        for module in graph.modules
        if module.startswith("aiaas.core.") and module.split(".")[2] not in DOMAINS
    }
    reaching = {
        (module, imported)
        for module in kernel
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("aiaas.core.") and imported.split(".")[2] in DOMAINS
    }
    assert reaching == set()
