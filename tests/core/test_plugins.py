"""The plugin system: discovery through entry points, validation at start-up, and the kernel's own plugins."""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
from importlib.metadata import EntryPoint, PathDistribution
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from litestar import get

from inopsio import __version__, hookimpl
from inopsio.app import collect_routers, create_app
from inopsio.cli import main
from inopsio.plugins import (
    ENTRY_POINT_GROUP,
    KERNEL_PLUGINS,
    PluginError,
    _check_core_compatibility,
    build_plugin_manager,
    installed_entry_points,
)
from inopsio.settings import Settings


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *extra: EntryPoint) -> None:
    """Make ``extra`` look installed, besides the plugins that really are."""
    installed = dict(installed_entry_points())
    installed.update({ep.name: ep for ep in extra})
    monkeypatch.setattr("inopsio.plugins.installed_entry_points", lambda: installed)


def _plugin_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, source: str) -> str:
    """Write an importable plugin module ``name`` with ``source``; return its module name."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _fake_distribution(tmp_path: Path, name: str, version: str, requires: list[str], entry_points: str = "") -> Path:
    """A ``.dist-info`` folder as pip would install it, found by importlib.metadata on ``tmp_path``."""
    info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points)
    return info


class RoutePlugin:
    """A plugin object registering one GET route at ``path``."""

    def __init__(self, name: str, path: str) -> None:
        self.INOPSIO_PLUGIN_NAME = name

        @get(path, sync_to_thread=False)
        def handler() -> dict[str, str]:
            return {"ok": "yes"}

        self.handler = handler

    @hookimpl
    def register_routes(self, register: Any) -> None:
        register(self.handler)


# --- discovery and the kernel's own plugins ---------------------------------------------------


def test_installed_sample_plugin_is_found_through_the_inopsio_entry_point_group() -> None:
    assert ENTRY_POINT_GROUP == "inopsio"
    assert installed_entry_points()["sample"].value == "inopsio_sample.plugin"


def test_plugin_manager_loads_the_kernel_plugins_first_then_installed_ones() -> None:
    registry = build_plugin_manager()
    names = list(registry.infos)
    kernel_names = [f"kernel.{m.split('.')[1]}" for m in KERNEL_PLUGINS]
    assert names[: len(kernel_names)] == kernel_names
    assert "sample" in names[len(kernel_names) :]
    sample = registry.infos["sample"]
    assert not sample.is_kernel
    assert sample.distribution == "inopsio-sample"
    assert sample.version == "0.1.0"
    assert sample.module == "inopsio_sample.plugin"
    assert {"register_models", "register_migrations", "register_routes", "on_tenant_created"} <= set(sample.hooks)


def test_kernel_features_register_through_the_same_hooks_as_plugins(inopsio_settings: Settings) -> None:
    registry = build_plugin_manager(enabled=[])
    kernel_infos = [i for i in registry.infos.values() if i.is_kernel]
    assert {i.name for i in kernel_infos} == {f"kernel.{m.split('.')[1]}" for m in KERNEL_PLUGINS}
    assert {"kernel.tenancy", "kernel.quotas", "kernel.platform", "kernel.health"} <= {i.name for i in kernel_infos}
    for info in kernel_infos:
        assert info.hooks, f"{info.name} implements no hook"
        assert info.distribution == "inopsio-core"
        assert info.version == __version__
    assert "register_routes" in registry.infos["kernel.tenancy"].hooks
    assert "register_health_checks" in registry.infos["kernel.health"].hooks
    routes = registry.collect("register_routes", settings=inopsio_settings)
    by_plugin = {plugin for plugin, _ in routes}
    assert {"kernel.tenancy", "kernel.health", "kernel.platform"} <= by_plugin
    health_paths = {p for plugin, h in routes if plugin == "kernel.health" for p in h.paths}
    assert health_paths == {"/health/live", "/health/ready"}


def test_inopsio_plugins_none_loads_only_the_kernel() -> None:
    registry = build_plugin_manager(enabled=[])
    assert registry.plugin_names() == []
    assert all(i.is_kernel for i in registry.infos.values())


def test_plugin_manager_is_built_per_call_not_shared() -> None:
    first, second = build_plugin_manager(), build_plugin_manager(enabled=[])
    assert first.pm is not second.pm
    assert "sample" in first.infos
    assert "sample" not in second.infos


def test_hooks_about_a_tenant_skip_the_plugins_it_switched_off() -> None:
    registry = build_plugin_manager()
    everyone = {impl.plugin_name for impl in registry.for_modules("on_tenant_created", []).get_hookimpls()}
    without_sample = registry.for_modules("on_tenant_created", ["sample"]).get_hookimpls()
    assert "sample" in everyone
    assert "sample" not in {impl.plugin_name for impl in without_sample}


class Recorder:
    """A plugin named ``name`` that notes, in the shared ``calls`` list, each hook call it gets."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.INOPSIO_PLUGIN_NAME = name
        self.calls = calls

    @hookimpl
    async def seed_demo_data(self, tenant: Any, session: Any) -> None:
        await asyncio.sleep(0)  # really awaited: the next plugin starts only after this one is done
        self.calls.append(f"{self.INOPSIO_PLUGIN_NAME}.seed_demo_data")

    @hookimpl
    def register_menu(self, register: Any) -> None:
        register(f"entry of {self.INOPSIO_PLUGIN_NAME}")


class Wrapper:
    """A plugin that only wraps hooks (new-style pluggy wrappers), noting what it saw."""

    INOPSIO_PLUGIN_NAME = "wrapper"

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def seed_demo_data(self, tenant: Any, session: Any) -> Any:
        self.calls.append("wrapper.before")
        results = yield
        self.calls.append(f"wrapper.after ({len(results)} result)")
        return results

    @hookimpl(wrapper=True)
    def register_menu(self, register: Any) -> Any:
        self.calls.append("wrapper.before")
        try:
            return (yield)
        finally:
            self.calls.append("wrapper.after")


async def test_async_hooks_are_awaited_plugin_by_plugin_in_registration_order_and_reversed_on_shutdown() -> None:
    calls: list[str] = []
    registry = build_plugin_manager(enabled=[], extra=[Recorder("first", calls), Recorder("second", calls)])
    await registry.call_async("seed_demo_data", tenant=None, session=None)
    assert calls == ["first.seed_demo_data", "second.seed_demo_data"]
    calls.clear()
    await registry.call_async("seed_demo_data", reverse=True, tenant=None, session=None)
    assert calls == ["second.seed_demo_data", "first.seed_demo_data"]


async def test_hooks_about_a_tenant_reach_only_the_plugins_it_enabled() -> None:
    calls: list[str] = []
    plugins = [Recorder("first", calls), Recorder("off", calls), Recorder("last", calls)]
    registry = build_plugin_manager(enabled=[], extra=plugins)
    await registry.call_async("seed_demo_data", disabled=["off"], tenant=None, session=None)
    assert calls == ["first.seed_demo_data", "last.seed_demo_data"]


async def test_a_plugins_hook_wrapper_wraps_every_plugins_call_of_the_hook() -> None:
    calls: list[str] = []
    registry = build_plugin_manager(
        enabled=[], extra=[Recorder("first", calls), Wrapper(calls), Recorder("last", calls)]
    )
    await registry.call_async("seed_demo_data", tenant=None, session=None)
    # The wrapper sees each plugin's coroutine (results are awaited after the call returns).
    assert calls == [
        "wrapper.before",
        "wrapper.after (1 result)",
        "first.seed_demo_data",
        "wrapper.before",
        "wrapper.after (1 result)",
        "last.seed_demo_data",
    ]
    calls.clear()
    items = registry.collect("register_menu")
    assert ("first", "entry of first") in items
    assert ("last", "entry of last") in items
    assert "wrapper" not in {plugin for plugin, _ in items}
    # Once around each implementer's call: the kernel's menu plugins and the two recorders.
    assert calls.count("wrapper.before") == calls.count("wrapper.after") == len(registry.implementers("register_menu"))


async def test_a_switched_off_plugins_wrapper_is_not_called_for_that_tenant() -> None:
    calls: list[str] = []
    registry = build_plugin_manager(enabled=[], extra=[Recorder("first", calls), Wrapper(calls)])
    await registry.call_async("seed_demo_data", disabled=["wrapper"], tenant=None, session=None)
    assert calls == ["first.seed_demo_data"]


def test_register_names_the_plugin_that_sent_a_bad_item_even_among_wrappers() -> None:
    calls: list[str] = []
    registry = build_plugin_manager(enabled=[], extra=[Wrapper(calls), Recorder("bad", calls)])

    def validate(plugin: str, item: Any) -> None:
        if item == "entry of bad":
            raise ValueError("not a MenuEntry")

    with pytest.raises(PluginError, match=r"plugin 'bad', hook register_menu: not a MenuEntry"):
        registry.collect("register_menu", validate)


async def test_tracing_hooks_logs_each_call_with_plugin_hook_and_duration(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    registry = build_plugin_manager(enabled=[], extra=[Recorder("first", calls)], trace=True)
    with caplog.at_level(logging.INFO, logger="inopsio.plugins"):
        registry.collect("register_menu")
        await registry.call_async("seed_demo_data", tenant=None, session=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "inopsio.plugins"]
    assert any(re.fullmatch(r"hook register_menu plugin first done in \d+\.\d\d ms", line) for line in lines), lines
    assert any(re.fullmatch(r"hook seed_demo_data plugin first done in \d+\.\d\d ms", line) for line in lines), lines
    assert any(line.startswith("hook register_menu plugin kernel.") for line in lines), lines


async def test_an_app_built_with_trace_hooks_logs_the_hook_calls_of_start_up(
    inopsio_migrated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = msgspec.structs.replace(inopsio_migrated, trace_hooks=True)
    with caplog.at_level(logging.INFO, logger="inopsio.plugins"):
        app = create_app(settings)
        async with app.lifespan():
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "inopsio.plugins"]
    for hook in ("register_routes", "register_permissions", "on_startup", "on_shutdown"):
        assert any(line.startswith(f"hook {hook} plugin ") and line.endswith(" ms") for line in lines), hook
    assert any(line.startswith("hook on_startup plugin kernel.realtime done in ") for line in lines), lines


# --- plugins that must stop start-up ----------------------------------------------------------


def test_inopsio_plugins_naming_an_uninstalled_plugin_is_refused_listing_installed_ones() -> None:
    with pytest.raises(PluginError) as excinfo:
        build_plugin_manager(enabled=["sample", "crmm"])
    message = str(excinfo.value)
    assert "INOPSIO_PLUGINS" in message
    assert "crmm" in message
    assert "installed: " in message
    assert "sample" in message.split("installed: ", 1)[1]


def test_plugin_module_that_does_not_exist_stops_startup_naming_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, EntryPoint(name="broken", value="nonexistent_mod", group=ENTRY_POINT_GROUP))
    with pytest.raises(PluginError) as excinfo:
        build_plugin_manager()
    message = str(excinfo.value)
    assert "'broken'" in message
    assert "failed to import" in message
    assert "nonexistent_mod" in message
    assert "ModuleNotFoundError" in message


def test_plugin_module_that_raises_on_import_stops_startup_with_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = _plugin_module(monkeypatch, tmp_path, "inopsio_needs_dep", 'raise ImportError("needs the foo library")\n')
    _with_entry_points(monkeypatch, EntryPoint(name="needs_dep", value=module, group=ENTRY_POINT_GROUP))
    with pytest.raises(PluginError, match=r"plugin 'needs_dep'.*failed to import.*needs the foo library"):
        build_plugin_manager()


def test_broken_plugin_that_is_not_enabled_does_not_stop_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, EntryPoint(name="broken", value="nonexistent_mod", group=ENTRY_POINT_GROUP))
    registry = build_plugin_manager(enabled=["sample"])
    assert "broken" not in registry.infos


def test_plugin_with_unknown_hook_stops_startup_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _plugin_module(
        monkeypatch,
        tmp_path,
        "inopsio_typo",
        """
        from inopsio import hookimpl

        @hookimpl
        def register_routs(register):
            pass
        """,
    )
    _with_entry_points(monkeypatch, EntryPoint(name="typo", value=module, group=ENTRY_POINT_GROUP))
    with pytest.raises(PluginError) as excinfo:
        build_plugin_manager()
    assert "'typo'" in str(excinfo.value)
    assert "register_routs" in str(excinfo.value)


def test_plugin_object_with_unknown_hook_stops_startup_naming_it() -> None:
    class Typo:
        INOPSIO_PLUGIN_NAME = "typo"

        @hookimpl
        def on_start_up(self, kernel: Any) -> None:
            pass

    with pytest.raises(PluginError, match=r"plugin 'typo'.*on_start_up"):
        build_plugin_manager(enabled=[], extra=[Typo()])


def test_hook_implementation_asking_for_an_unknown_argument_is_refused_naming_the_plugin() -> None:
    class WrongArguments:
        INOPSIO_PLUGIN_NAME = "wrongargs"

        @hookimpl
        def register_routes(self, register: Any, app: Any) -> None:
            pass

    with pytest.raises(PluginError, match=r"(?s)plugin 'wrongargs'.*'app'.*can not be found in the hookspec"):
        build_plugin_manager(enabled=[], extra=[WrongArguments()])


def test_plugin_registered_twice_is_refused() -> None:
    with pytest.raises(PluginError, match="'sample' is registered twice"):
        build_plugin_manager(enabled=["sample"], extra=["inopsio_sample.plugin"])


def test_plugin_requiring_another_core_version_is_refused_naming_it_and_both_versions(tmp_path: Path) -> None:
    info = _fake_distribution(tmp_path, "inopsio-old", "0.0.1", ["inopsio-core>=2.0,<3", "msgspec"])
    with pytest.raises(PluginError) as excinfo:
        _check_core_compatibility("old", PathDistribution(info))
    message = str(excinfo.value)
    assert "'old'" in message
    assert "inopsio-old 0.0.1" in message
    assert ">=2.0" in message
    assert __version__ in message


def test_plugin_accepting_this_core_version_or_naming_none_passes_the_check(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    compatible = _fake_distribution(tmp_path / "a", "inopsio-new", "1.0", [f"inopsio_core=={__version__}"])
    unpinned = _fake_distribution(tmp_path / "b", "inopsio-loose", "1.0", ["inopsio-core"])
    _check_core_compatibility("new", PathDistribution(compatible))
    _check_core_compatibility("loose", PathDistribution(unpinned))
    _check_core_compatibility("local", None)


def test_installed_plugin_requiring_another_core_version_stops_startup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real (if tiny) installation: importlib.metadata finds the dist-info on sys.path.
    _fake_distribution(tmp_path, "inopsio-old", "0.0.1", ["inopsio-core>=2.0"], "[inopsio]\nold = inopsio_old\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "old" in installed_entry_points()
    with pytest.raises(PluginError, match=r"plugin 'old' \(inopsio-old 0\.0\.1\) requires inopsio-core>=2\.0"):
        build_plugin_manager()


def test_plugin_registering_something_that_is_not_a_model_is_refused_naming_it() -> None:
    from inopsio.app import collect_models

    class NotAModel:
        INOPSIO_PLUGIN_NAME = "badmodel"

        @hookimpl
        def register_models(self, register: Any) -> None:
            register(dict)

    registry = build_plugin_manager(enabled=[], extra=[NotAModel()])
    with pytest.raises(PluginError, match=r"plugin 'badmodel', hook register_models"):
        collect_models(registry)


# --- route namespaces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/sample/notes", "/api/v1/tenant", "/health/rogue", "/api/v1/roguish/x", "/api/v2/rogue/x", "/"],
)
def test_plugin_route_outside_its_namespace_is_refused_naming_the_plugin(inopsio_settings: Settings, path: str) -> None:
    registry = build_plugin_manager(enabled=[], extra=[RoutePlugin("rogue", path)])
    with pytest.raises(PluginError) as excinfo:
        collect_routers(registry, inopsio_settings)
    message = str(excinfo.value)
    assert "'rogue'" in message
    assert "register_routes" in message
    assert "/api/v1/rogue" in message


def test_create_app_refuses_a_plugin_route_outside_its_namespace(inopsio_settings: Settings) -> None:
    with pytest.raises(PluginError, match=r"plugin 'rogue'.*outside the plugin's namespace"):
        create_app(inopsio_settings, plugins=[RoutePlugin("rogue", "/api/v1/sample/steal")])


@pytest.mark.parametrize("path", ["/api/v1/tidy/items", "/api/v1/tidy", "/tidy/page", "/tidy"])
def test_plugin_routes_inside_their_namespace_are_accepted(inopsio_settings: Settings, path: str) -> None:
    app = create_app(inopsio_settings, plugins=[RoutePlugin("tidy", path)])
    assert path in {route.path for route in app.routes}


# --- the CLI ----------------------------------------------------------------------------------


def test_plugins_command_lists_the_sample_plugin_with_its_version_and_hooks() -> None:
    result = CliRunner().invoke(main, ["plugins"], env={"INOPSIO_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    sample = next(i for i, line in enumerate(lines) if line.startswith("sample "))
    assert "0.1.0" in lines[sample]
    assert "inopsio-sample" in lines[sample]
    hooks = lines[sample + 1]
    for hook in ("register_models", "register_migrations", "register_routes", "on_tenant_created"):
        assert hook in hooks
    assert any(line.startswith("kernel.tenancy ") for line in lines)


def test_plugins_command_reports_an_uninstalled_plugin_instead_of_a_traceback() -> None:
    result = CliRunner().invoke(main, ["plugins"], env={"INOPSIO_PLUGINS": "nosuchplugin"})
    assert result.exit_code != 0
    assert "nosuchplugin" in result.output
    assert "Traceback" not in result.output


def test_plugins_command_reports_a_bad_setting_naming_the_variable() -> None:
    result = CliRunner().invoke(main, ["plugins"], env={"INOPSIO_PORT": "abc"})
    assert result.exit_code != 0
    assert "INOPSIO_PORT" in result.output


def test_kernel_commands_come_through_register_cli_commands_like_a_plugins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = _plugin_module(
        monkeypatch,
        tmp_path,
        "inopsio_greeter",
        """
        import click

        from inopsio import hookimpl

        @click.command()
        def greet():
            \"\"\"Say hello from a plugin.\"\"\"
            click.echo("hello from greeter")

        @hookimpl
        def register_cli_commands(register):
            register(greet)
        """,
    )
    _with_entry_points(monkeypatch, EntryPoint(name="greeter", value=module, group=ENTRY_POINT_GROUP))
    kernel_commands = {"serve", "worker", "migrate", "migrations", "tenant", "plugins", "events-catalog", "operator"}
    registry = build_plugin_manager()
    added = registry.collect("register_cli_commands")
    assert {command.name for plugin, command in added if plugin == "kernel.cli"} == kernel_commands
    assert [command.name for plugin, command in added if plugin == "greeter"] == ["greet"]

    help_text = CliRunner().invoke(main, ["--help"], env={"INOPSIO_PLUGINS": ""}).output
    listed = {line.split()[0] for line in help_text.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == kernel_commands | {"greet"}
    result = CliRunner().invoke(main, ["greet"], env={"INOPSIO_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    assert result.output == "hello from greeter\n"


def test_a_plugin_command_clashing_with_a_kernel_command_is_refused_naming_the_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = _plugin_module(
        monkeypatch,
        tmp_path,
        "inopsio_clash",
        """
        import click

        from inopsio import hookimpl

        @hookimpl
        def register_cli_commands(register):
            register(click.Command("serve"))
        """,
    )
    _with_entry_points(monkeypatch, EntryPoint(name="clash", value=module, group=ENTRY_POINT_GROUP))
    result = CliRunner().invoke(main, ["--help"], env={"INOPSIO_PLUGINS": ""})
    assert "plugin 'clash', hook register_cli_commands: the command 'serve' is already added by 'kernel.cli'" in (
        result.output
    )
    assert "Migrate the database, then serve" in result.output  # the kernel's commands are still there
