"""The shape of the code (docs/architecture.md), checked on the import graph and the source.

import-linter (`tox -e lint`) checks the layers and who may import a domain; these tests check
what its contracts do not say: that no module takes part in an import cycle, that modules stay
a size a person reads in one sitting, that each domain names its public surface, and that each
table is read and written in SQL by its owner only.
"""

from __future__ import annotations

import importlib
import re
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


# Written by a tool, not read in a sitting: migrations each hold one revision, and the SDK's
# typed layer is regenerated from schema.graphql (its staleness test is its check).
NOT_HAND_WRITTEN = ("migrations/versions/", "client/generated/")


def test_no_module_is_longer_than_a_sitting() -> None:
    too_long = {
        str(path.relative_to(SOURCE)): lines
        for path in sorted(SOURCE.rglob("*.py"))
        if not any(part in path.as_posix() for part in NOT_HAND_WRITTEN)
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


# One owner per table ------------------------------------------------------------------------

TABLE_OWNERS = {
    "users": "aiaas.core.identity",
    "api_tokens": "aiaas.core.identity",
    "projects": "aiaas.core.identity",
    "project_members": "aiaas.core.identity",
    "datasets": "aiaas.core.data",
    "dataset_versions": "aiaas.core.data",
    "quality_reports": "aiaas.core.data",
    "metric_points": "aiaas.core.training",
    "models": "aiaas.core.training",
    "model_versions": "aiaas.core.training",
    "model_aliases": "aiaas.core.training",
    "job_checkpoints": "aiaas.core.training",
    "deployments": "aiaas.core.serving",
    "prediction_samples": "aiaas.core.serving",
    "feature_baselines": "aiaas.core.serving",
    "drift_reports": "aiaas.core.serving",
    "data_keys": "aiaas.core.governance",
    "audit_events": "aiaas.core.audit",
    "jobs": "aiaas.core.jobs",
}
"""Who reads and writes each table (docs/architecture.md, "The domains"): a package or a kernel
module. Everyone else asks the owner's functions."""

CROSSING_ON_PURPOSE = {
    # A backup copies every table whole from one snapshot, and a restore writes each back:
    # its unit is the database, not a domain's rows.
    "aiaas.core.governance.backup": frozenset(TABLE_OWNERS),
    # Garbage collection reads the columns that refer to artifacts. Governance sits beneath
    # data and training, so it cannot ask them; the columns are named in one place there.
    "aiaas.core.governance.garbage": frozenset(
        {"dataset_versions", "model_versions", "job_checkpoints"}
    ),
    # The job series of /metrics aggregate the whole table, read-only, in one snapshot: counts
    # by state and duration buckets, no row of any one job (core/job_metrics.py).
    "aiaas.core.job_metrics": frozenset({"jobs"}),
}
"""The three readers that cross the lines on purpose (docs/architecture.md says why)."""

NOT_YET_ASKED_OF_THEIR_OWNER: set[tuple[str, str]] = set()
"""Crossings still to be moved to their owner. Only ever shrinks: a test below fails once an
entry no longer crosses, so that it is struck off here."""

TABLE_IN_SQL = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(" + "|".join(TABLE_OWNERS) + r")\b", re.IGNORECASE
)


def tables_named(source: str) -> set[str]:
    """The tables a module's SQL reads or writes (FROM, JOIN, INTO or UPDATE them)."""
    return {match.group(1).lower() for match in TABLE_IN_SQL.finditer(source)}


def owns(module: str, table: str) -> bool:
    owner = TABLE_OWNERS[table]
    return module == owner or module.startswith(owner + ".")


def core_modules() -> dict[str, Path]:
    core = SOURCE / "core"
    modules = {}
    for path in sorted(core.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def table_crossings() -> set[tuple[str, str]]:
    """(module, table) for each table a module under aiaas.core names in SQL without owning it,
    the crossings on purpose left out."""
    return {
        (module, table)
        for module, path in core_modules().items()
        for table in tables_named(path.read_text())
        if not owns(module, table) and table not in CROSSING_ON_PURPOSE.get(module, ())
    }


def test_the_table_finder_finds_every_kind_of_statement() -> None:
    source = """
        "SELECT m.name FROM model_versions v JOIN models m ON m.id = v.model_id"
        "insert into jobs (kind) values ($1)", f"UPDATE  deployments SET {x}"
        "SELECT 1 FROM projects_archive", "models of a project", "from the jobs table"
    """
    assert tables_named(source) == {"model_versions", "models", "jobs", "deployments"}


def test_each_table_is_read_and_written_by_its_owner_only() -> None:
    assert table_crossings() - NOT_YET_ASKED_OF_THEIR_OWNER == set()


def test_the_crossings_still_to_move_are_still_there() -> None:
    assert NOT_YET_ASKED_OF_THEIR_OWNER - table_crossings() == set()
