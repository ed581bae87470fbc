"""The plugin manager on its own: registering, isolating failures, registries, entry points.

Plugins here are throwaway objects registered in code, or modules written into `tmp_path` and
offered as crafted entry points, so each failure mode is produced on purpose and in-process.
tests/plugins/test_entry_points.py does the same with packages that pip really installs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pluggy
import pytest

import aiaas
from aiaas.core import plugins
from aiaas.core.config import Config, build_config
from aiaas.core.errors import DuplicateSpecError, PluginError, UnknownBackendError
from aiaas.core.hookspecs import hookimpl
from aiaas.core.platform import Platform
from aiaas.core.plugin_manager import AiaasPluginManager, PluginFailure
from aiaas.core.plugins import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    create_plugin_manager,
    new_plugin_manager,
)
from aiaas.core.registry import Registry, build_registry, load_registries
from aiaas.core.specs import TrainerSpec, ValidatorSpec
from aiaas.plugins.casbin_policy import CasbinPolicyEnforcer

BUILTINS_ONLY = build_config({"disable_plugin_autoload": True})


def never_called(config: Config) -> Any:
    raise AssertionError("building a registry must not call the factories")


def validator_spec(name: str) -> ValidatorSpec:
    return ValidatorSpec(name=name, factory=never_called)


# Throwaway plugins -------------------------------------------------------------------------


class ContributesValidators:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def aiaas_validators(self) -> Iterable[ValidatorSpec]:
        return [validator_spec(name) for name in self.names]


class RaisesInValidators:
    @hookimpl
    def aiaas_validators(self) -> Iterable[ValidatorSpec]:
        raise RuntimeError("validators hook fails on purpose")


class ReturnsFromValidators:
    """Returns whatever it is given, right or wrong."""

    def __init__(self, result: object) -> None:
        self.result = result

    @hookimpl
    def aiaas_validators(self) -> object:
        return self.result


class ImplementsAnUnknownHook:
    @hookimpl
    def aiaas_validators(self) -> Iterable[ValidatorSpec]:
        return [validator_spec("from-the-refused-plugin")]

    @hookimpl
    def aiaas_no_such_hook(self) -> None:
        return None


class ProvidesEnforcer:
    def __init__(self, enforcer: object) -> None:
        self.enforcer = enforcer

    @hookimpl
    def aiaas_policy_enforcer(self, config: Config) -> object:
        return self.enforcer


class RaisesInPolicyEnforcer:
    @hookimpl
    def aiaas_policy_enforcer(self, config: Config) -> object:
        raise RuntimeError("policy enforcer hook fails on purpose")


@pytest.fixture
def manager() -> AiaasPluginManager:
    """A manager with no plugin at all, so each test controls every implementation."""
    return new_plugin_manager()


@pytest.fixture
def builtin_manager() -> AiaasPluginManager:
    return create_plugin_manager(BUILTINS_ONLY)


def validators(manager: AiaasPluginManager) -> Registry[ValidatorSpec]:
    return build_registry(manager, "aiaas_validators", ValidatorSpec, "validator")


def states(manager: AiaasPluginManager) -> dict[str, str]:
    return {status.name: status.status for status in manager.report()}


# Built-ins ---------------------------------------------------------------------------------


def test_builtins_are_registered_under_their_module_names_as_builtin(
    builtin_manager: AiaasPluginManager,
) -> None:
    infos = builtin_manager.plugin_infos()

    assert [info.name for info in infos] == list(DEFAULT_PLUGINS)
    assert {info.source for info in infos} == {"builtin"}
    assert {info.version for info in infos} == {aiaas.__version__}
    assert all(info.hooks for info in infos), "a built-in that implements no hook is dead code"
    assert builtin_manager.failures == []
    assert set(states(builtin_manager).values()) == {"loaded"}


def test_builtins_provide_the_default_backends(builtin_manager: AiaasPluginManager) -> None:
    registries = load_registries(builtin_manager)

    assert registries.metadata_stores.get("postgresql").plugin == "aiaas.plugins.postgres_metadata"
    assert (
        registries.artifact_stores.get("filesystem").plugin == "aiaas.plugins.filesystem_artifacts"
    )
    assert registries.authenticators.get("api-token").plugin == "aiaas.plugins.token_auth"
    assert isinstance(
        builtin_manager.call_first("aiaas_policy_enforcer", config=BUILTINS_ONLY),
        CasbinPolicyEnforcer,
    )
    assert builtin_manager.failures == []


# Registering -------------------------------------------------------------------------------


def test_register_plugin_refuses_a_plugin_with_a_hook_that_does_not_exist(
    manager: AiaasPluginManager,
) -> None:
    with pytest.raises(pluggy.PluginValidationError, match="aiaas_no_such_hook"):
        manager.register_plugin(ImplementsAnUnknownHook(), "refused")

    # Refused whole: its valid hook contributes nothing, and nothing of it lingers.
    assert not manager.has_plugin("refused")
    assert manager.plugin_infos() == []
    assert validators(manager).names() == []
    manager.check_pending()
    manager.register_plugin(ContributesValidators("fine"), "refused")
    assert validators(manager).names() == ["fine"]


class WrapsValidators:
    @hookimpl(wrapper=True)
    def aiaas_validators(self) -> Iterator[Any]:
        return (yield)


class OldStyleWrapsValidators:
    @hookimpl(hookwrapper=True)
    def aiaas_validators(self) -> Iterator[None]:
        yield


@pytest.mark.parametrize("plugin", [WrapsValidators(), OldStyleWrapsValidators()])
def test_register_plugin_refuses_a_hook_wrapper(
    manager: AiaasPluginManager, plugin: object
) -> None:
    # Every implementation is called on its own, so a wrapper would silently wrap nothing.
    with pytest.raises(pluggy.PluginValidationError, match=r"wraps hooks.*aiaas_validators"):
        manager.register_plugin(plugin, "wrapper")

    assert not manager.has_plugin("wrapper")


def test_a_failure_that_repeats_is_recorded_once(manager: AiaasPluginManager) -> None:
    # An observer failing on every event must not grow the failure list without end.
    manager.register_plugin(RaisesInValidators(), "always-broken")

    for _ in range(3):
        validators(manager)

    assert len(manager.failures) == 1


def test_plugin_registered_in_code_reports_its_source_and_version(
    manager: AiaasPluginManager,
) -> None:
    manager.register_plugin(ContributesValidators("a"), "in-code")
    manager.register_plugin(
        ContributesValidators("b"), "versioned", source="entry-point", version="3.1"
    )

    infos = {info.name: info for info in manager.plugin_infos()}
    assert (infos["in-code"].source, infos["in-code"].version) == ("registered", aiaas.__version__)
    assert (infos["versioned"].source, infos["versioned"].version) == ("entry-point", "3.1")
    assert infos["versioned"].hooks == ("aiaas_validators",)


# Failure isolation -------------------------------------------------------------------------


def test_a_hook_that_raises_is_recorded_and_the_others_still_contribute(
    manager: AiaasPluginManager,
) -> None:
    # The broken plugin sits between two healthy ones, so neither the one called before it
    # nor the one called after it may be lost.
    manager.register_plugin(ContributesValidators("registered-first"), "first")
    manager.register_plugin(RaisesInValidators(), "broken")
    manager.register_plugin(ContributesValidators("registered-last"), "last")

    registry = validators(manager)

    assert sorted(registry.names()) == ["registered-first", "registered-last"]
    assert manager.failures == [
        PluginFailure(
            name="broken",
            stage="hook aiaas_validators",
            reason="RuntimeError('validators hook fails on purpose')",
        )
    ]
    assert states(manager) == {"first": "loaded", "broken": "degraded", "last": "loaded"}
    [broken] = [status for status in manager.report() if status.name == "broken"]
    assert broken.hooks == ("aiaas_validators",)
    assert broken.failures == tuple(manager.failures)


def test_call_each_yields_results_last_registered_first_and_skips_the_one_that_raises(
    manager: AiaasPluginManager,
) -> None:
    manager.register_plugin(ContributesValidators("a"), "first")
    manager.register_plugin(RaisesInValidators(), "broken")
    manager.register_plugin(ContributesValidators("c"), "last")

    called = [name for name, _ in manager.call_each("aiaas_validators")]

    assert called == ["last", "first"]
    assert [failure.name for failure in manager.failures] == ["broken"]


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        pytest.param(
            [TrainerSpec(name="t", factory=never_called)],
            "returned TrainerSpec, expected ValidatorSpec",
            id="another-spec-type",
        ),
        pytest.param(
            [validator_spec("valid-but-in-bad-company"), "not a spec"],
            "returned str, expected ValidatorSpec",
            id="one-bad-item",
        ),
        pytest.param("a string", "returned str, expected ValidatorSpec", id="a-string"),
        pytest.param(validator_spec("bare"), "is not iterable", id="a-bare-spec"),
    ],
)
def test_a_hook_returning_the_wrong_type_is_recorded_and_its_contribution_left_out(
    manager: AiaasPluginManager, result: object, reason: str
) -> None:
    manager.register_plugin(ContributesValidators("healthy"), "healthy")
    manager.register_plugin(ReturnsFromValidators(result), "wrong")

    registry = validators(manager)

    # All or nothing: a valid spec next to a wrong item is left out too.
    assert registry.names() == ["healthy"]
    [failure] = manager.failures
    assert (failure.name, failure.stage) == ("wrong", "hook aiaas_validators")
    assert reason in failure.reason
    assert states(manager) == {"healthy": "loaded", "wrong": "degraded"}


def test_a_hook_returning_none_contributes_nothing_and_is_no_failure(
    manager: AiaasPluginManager,
) -> None:
    manager.register_plugin(ReturnsFromValidators(None), "nothing-to-add")

    assert validators(manager).names() == []
    assert manager.failures == []


# Registries --------------------------------------------------------------------------------


def test_two_plugins_registering_one_name_raise_duplicate_spec_error_naming_both(
    manager: AiaasPluginManager,
) -> None:
    manager.register_plugin(ContributesValidators("schema-check"), "plugin-one")
    manager.register_plugin(ContributesValidators("schema-check"), "plugin-two")

    with pytest.raises(DuplicateSpecError) as raised:
        validators(manager)

    message = raised.value.message
    assert "validator 'schema-check'" in message
    assert "plugin-one" in message
    assert "plugin-two" in message


def test_registry_fills_in_the_plugin_of_each_spec(manager: AiaasPluginManager) -> None:
    manager.register_plugin(ContributesValidators("row-count", "null-rate"), "quality")

    registry = validators(manager)

    assert registry.names() == ["row-count", "null-rate"]
    assert {spec.plugin for spec in registry} == {"quality"}
    assert "row-count" in registry
    assert len(registry) == 2


def test_registry_get_of_an_unknown_name_lists_the_available_ones(
    manager: AiaasPluginManager,
) -> None:
    manager.register_plugin(ContributesValidators("zeta", "alpha"), "quality")
    registry = validators(manager)

    with pytest.raises(UnknownBackendError) as raised:
        registry.get("gamma")

    assert raised.value.message == (
        "no validator named 'gamma' is registered (available: alpha, zeta)"
    )


def test_registry_get_in_an_empty_registry_says_none_is_available(
    manager: AiaasPluginManager,
) -> None:
    with pytest.raises(UnknownBackendError, match=r"\(available: none\)"):
        validators(manager).get("anything")


# call_first --------------------------------------------------------------------------------


def test_call_first_returns_the_first_non_none_result_in_pluggy_order(
    builtin_manager: AiaasPluginManager,
) -> None:
    from_first, from_second = object(), object()
    builtin_manager.register_plugin(ProvidesEnforcer(from_first), "first")
    builtin_manager.register_plugin(ProvidesEnforcer(from_second), "second")
    builtin_manager.register_plugin(ProvidesEnforcer(None), "declines")

    chosen = builtin_manager.call_first("aiaas_policy_enforcer", config=BUILTINS_ONLY)

    # Last registered is asked first; it declines, so the one registered before it wins over
    # both the earlier plugin and the built-in Casbin enforcer, exactly as pluggy decides.
    assert chosen is from_second
    assert builtin_manager.hook.aiaas_policy_enforcer(config=BUILTINS_ONLY) is from_second


def test_call_first_skips_an_implementation_that_raises(
    builtin_manager: AiaasPluginManager,
) -> None:
    builtin_manager.register_plugin(RaisesInPolicyEnforcer(), "broken-enforcer")

    chosen = builtin_manager.call_first("aiaas_policy_enforcer", config=BUILTINS_ONLY)

    assert isinstance(chosen, CasbinPolicyEnforcer)
    assert [(f.name, f.stage) for f in builtin_manager.failures] == [
        ("broken-enforcer", "hook aiaas_policy_enforcer")
    ]


def test_a_policy_enforcer_that_raises_stops_the_platform_instead_of_falling_back(
    builtin_manager: AiaasPluginManager,
) -> None:
    # Falling back to the next enforcer could allow what the broken one meant to deny.
    builtin_manager.register_plugin(RaisesInPolicyEnforcer(), "broken-enforcer")

    with pytest.raises(PluginError, match="policy enforcer failed to load"):
        Platform(BUILTINS_ONLY, builtin_manager)


def test_call_first_returns_none_when_every_implementation_declines(
    manager: AiaasPluginManager,
) -> None:
    manager.register_plugin(ProvidesEnforcer(None), "declines")
    manager.register_plugin(ProvidesEnforcer(None), "declines-too")

    assert manager.call_first("aiaas_policy_enforcer", config=BUILTINS_ONLY) is None


# Entry points ------------------------------------------------------------------------------

WORKING_PLUGIN = """\
from aiaas.core.hookspecs import hookimpl


@hookimpl
def aiaas_cli_commands():
    return []
"""

UNKNOWN_HOOK_PLUGIN = """\
from aiaas.core.hookspecs import hookimpl


@hookimpl
def aiaas_no_such_hook():
    return []
"""

WriteModule = Callable[[str, str], str]
InstallEntryPoints = Callable[..., None]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Writes importable modules into `tmp_path`; forgets them after the test, so that the next
    test imports its own module of the same name afresh."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(module: str, code: str) -> str:
        (tmp_path / f"{module}.py").write_text(dedent(code), encoding="utf-8")
        importlib.invalidate_caches()
        written.append(module)
        return module

    yield write
    for module in written:
        sys.modules.pop(module, None)


@pytest.fixture
def install_entry_points(monkeypatch: pytest.MonkeyPatch) -> InstallEntryPoints:
    """Makes `create_plugin_manager` see exactly the given entry points, `name=module`."""

    def install(**modules: str) -> None:
        entries = [
            importlib.metadata.EntryPoint(name=name, value=module, group=ENTRY_POINT_GROUP)
            for name, module in modules.items()
        ]
        monkeypatch.setattr(plugins, "_entry_points", lambda: entries)

    return install


def entry_point_names(manager: AiaasPluginManager) -> list[str]:
    return [info.name for info in manager.plugin_infos() if info.source == "entry-point"]


def test_installed_entry_points_load_without_an_allowlist(
    write_module: WriteModule, install_entry_points: InstallEntryPoints
) -> None:
    install_entry_points(
        alpha=write_module("aiaas_test_alpha", WORKING_PLUGIN),
        beta=write_module("aiaas_test_beta", WORKING_PLUGIN),
    )

    manager = create_plugin_manager(build_config({}))

    assert entry_point_names(manager) == ["alpha", "beta"]
    assert manager.failures == []
    [alpha] = [info for info in manager.plugin_infos() if info.name == "alpha"]
    assert alpha.hooks == ("aiaas_cli_commands",)
    # A crafted entry point belongs to no distribution, so there is no version to read.
    assert alpha.version == "unknown"


def test_allowlist_loads_only_the_listed_entry_points_and_reports_missing_ones(
    write_module: WriteModule, install_entry_points: InstallEntryPoints
) -> None:
    # `unlisted` would fail at import if it were imported at all.
    install_entry_points(
        unlisted=write_module("aiaas_test_unlisted", "raise RuntimeError('imported anyway')\n"),
        listed=write_module("aiaas_test_listed", WORKING_PLUGIN),
    )

    manager = create_plugin_manager(build_config({"plugins": ["listed", "not-installed"]}))

    assert entry_point_names(manager) == ["listed"]
    assert "aiaas_test_unlisted" not in sys.modules
    assert manager.failures == [
        PluginFailure(
            name="not-installed",
            stage="allowlist",
            reason="listed in AIAAS_PLUGINS but not installed",
        )
    ]
    assert states(manager)["not-installed"] == "failed"
    assert "unlisted" not in states(manager), "not listed is a choice, not a failure"


def test_disabled_autoload_loads_no_entry_point(
    write_module: WriteModule, install_entry_points: InstallEntryPoints
) -> None:
    install_entry_points(
        working=write_module("aiaas_test_working", WORKING_PLUGIN),
        broken=write_module("aiaas_test_broken", "raise RuntimeError('imported anyway')\n"),
    )

    manager = create_plugin_manager(
        build_config({"disable_plugin_autoload": True, "plugins": ["working", "missing"]})
    )

    assert [info.name for info in manager.plugin_infos()] == list(DEFAULT_PLUGINS)
    assert manager.failures == []


@pytest.mark.parametrize(
    ("module_code", "target", "exception"),
    [
        pytest.param("raise RuntimeError('boom')\n", "", "RuntimeError('boom')", id="raises"),
        pytest.param("def broken(:\n", "", "SyntaxError", id="syntax-error"),
        pytest.param(None, "", "ModuleNotFoundError", id="module-missing"),
        pytest.param(WORKING_PLUGIN, ":no_such_attribute", "AttributeError", id="attr-missing"),
    ],
)
def test_entry_point_that_fails_to_import_is_recorded_and_the_others_load(
    write_module: WriteModule,
    install_entry_points: InstallEntryPoints,
    module_code: str | None,
    target: str,
    exception: str,
) -> None:
    broken = "aiaas_test_fails_to_import"
    if module_code is not None:
        write_module(broken, module_code)
    install_entry_points(
        broken=broken + target, working=write_module("aiaas_test_working", WORKING_PLUGIN)
    )

    manager = create_plugin_manager(build_config({}))

    assert entry_point_names(manager) == ["working"]
    [failure] = manager.failures
    assert (failure.name, failure.stage) == ("broken", "import")
    assert exception in failure.reason
    [status] = [status for status in manager.report() if status.name == "broken"]
    assert (status.status, status.source, status.hooks) == ("failed", "entry-point", ())


def test_entry_point_with_a_hook_that_does_not_exist_is_left_out_at_register(
    write_module: WriteModule, install_entry_points: InstallEntryPoints
) -> None:
    install_entry_points(
        unknown=write_module("aiaas_test_unknown_hook", UNKNOWN_HOOK_PLUGIN),
        working=write_module("aiaas_test_working", WORKING_PLUGIN),
    )

    manager = create_plugin_manager(build_config({}))

    assert entry_point_names(manager) == ["working"]
    [failure] = manager.failures
    assert (failure.name, failure.stage) == ("unknown", "register")
    assert "aiaas_no_such_hook" in failure.reason
    assert states(manager)["unknown"] == "failed"


def test_entry_point_named_like_a_builtin_cannot_replace_it(
    write_module: WriteModule, install_entry_points: InstallEntryPoints
) -> None:
    builtin = "aiaas.plugins.token_auth"
    install_entry_points(**{builtin: write_module("aiaas_test_impostor", WORKING_PLUGIN)})

    manager = create_plugin_manager(build_config({}))

    [info] = [info for info in manager.plugin_infos() if info.name == builtin]
    assert (info.source, info.hooks) == ("builtin", ("aiaas_authenticators",))
    assert [(f.name, f.stage) for f in manager.failures] == [(builtin, "register")]
    assert "aiaas_test_impostor" not in sys.modules


def test_entry_point_from_an_installed_distribution_reports_its_version(
    tmp_path: Path, write_module: WriteModule
) -> None:
    # No monkeypatched `_entry_points` here: the real importlib.metadata lookup must find a
    # distribution on sys.path, laid out as pip leaves one.
    module = write_module("aiaas_test_versioned", WORKING_PLUGIN)
    dist_info = tmp_path / "aiaas_test_versioned-2.5.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aiaas-test-versioned\nVersion: 2.5.0\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nversioned = {module}\n", encoding="utf-8"
    )
    importlib.invalidate_caches()

    # The allowlist keeps any other plugin installed in the test environment out of the way.
    manager = create_plugin_manager(build_config({"plugins": ["versioned"]}))

    [info] = [info for info in manager.plugin_infos() if info.name == "versioned"]
    assert (info.source, info.version) == ("entry-point", "2.5.0")
    assert info.hooks == ("aiaas_cli_commands",)
    assert manager.failures == []
