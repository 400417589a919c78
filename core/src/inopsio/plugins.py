"""Finding, loading and validating plugins, and calling their hooks.

The plugin manager is built per app by :func:`build_plugin_manager`, never at import time. The
kernel's own features are registered first, as default plugins, through the same hooks.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import time
import types
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import Distribution, EntryPoint, entry_points
from typing import Any

import pluggy
from packaging.requirements import Requirement
from packaging.version import Version

from inopsio import __version__, hookspecs

ENTRY_POINT_GROUP = "inopsio"
KERNEL_PLUGINS = (
    "inopsio.tenancy.plugin",
    "inopsio.identity.plugin",
    "inopsio.events.plugin",
    "inopsio.realtime.plugin",
    "inopsio.webhooks.plugin",
    "inopsio.mail.plugin",
    "inopsio.quotas.plugin",
    "inopsio.platform.plugin",
    "inopsio.jobs.plugin",
    "inopsio.observability.plugin",
    "inopsio.health",
    "inopsio.automation_routes",
    "inopsio.web.plugin",
    "inopsio.cli",
)
KERNEL = "kernel"

log = logging.getLogger("inopsio.plugins")


class PluginError(RuntimeError):
    """A plugin cannot be loaded; the message names the plugin and the problem."""


@dataclass(frozen=True)
class PluginInfo:
    """What the kernel knows about one loaded plugin."""

    name: str
    module: str
    version: str
    distribution: str | None
    is_kernel: bool
    hooks: tuple[str, ...] = field(default=())


def installed_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _check_core_compatibility(name: str, dist: Distribution | None) -> None:
    if dist is None:
        return
    for raw in dist.requires or []:
        req = Requirement(raw)
        is_core = req.name.replace("_", "-").lower() == "inopsio-core"
        if is_core and req.specifier and not req.specifier.contains(Version(__version__), prereleases=True):
            raise PluginError(
                f"plugin {name!r} ({dist.metadata['Name']} {dist.version}) requires inopsio-core"
                f"{req.specifier}, but {__version__} is installed"
            )


def _load_entry_point(ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:
        dist = f" from {ep.dist.metadata['Name']} {ep.dist.version}" if ep.dist else ""
        raise PluginError(
            f"plugin {ep.name!r}{dist} failed to import ({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc


class PluginRegistry:
    """The plugin manager of one app plus what it knows about each plugin.

    Every hook is called through pluggy's own hook caller, so hook wrappers and tracing see each
    call. Hooks that name the plugin behind what it returns (``collect``) or that must be awaited
    (``call_async``) call one plugin at a time, through ``pm.subset_hook_caller`` with every other
    implementer removed; plugins that only wrap the hook stay, so their wrappers see each call.
    """

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
        self.pm = pm
        self.infos = infos

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugin_names(self, *, include_kernel: bool = False) -> list[str]:
        return [n for n, i in self.infos.items() if include_kernel or not i.is_kernel]

    def name_of(self, plugin: object) -> str:
        name = self.pm.get_name(plugin)
        assert name is not None
        return name

    def module_of(self, name: str) -> str:
        """The module (tenants switch modules on and off) a registered plugin belongs to."""
        return KERNEL if self.infos[name].is_kernel else name

    def _switched_off(self, disabled: Iterable[str]) -> list[str]:
        """The plugins of the ``disabled`` modules (the kernel's cannot be switched off)."""
        disabled = set(disabled)
        return [n for n, i in self.infos.items() if not i.is_kernel and n in disabled]

    def for_modules(self, hook_name: str, disabled: Iterable[str]) -> Any:
        """A caller for ``hook_name`` that skips the plugins of the ``disabled`` modules."""
        remove = [self.pm.get_plugin(n) for n in self._switched_off(disabled)]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=[p for p in remove if p is not None])

    def implementers(self, hook_name: str) -> list[str]:
        """The plugins implementing ``hook_name`` (not only wrapping it), the kernel's first."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return [impl.plugin_name for impl in impls if not (impl.wrapper or impl.hookwrapper)]

    def _one_plugin(self, hook_name: str, plugin_name: str, implementers: list[str], skipped: list[str]) -> Any:
        """Pluggy's caller of ``hook_name`` that reaches ``plugin_name`` (and the wrappers not skipped)."""
        others = [n for n in implementers if n != plugin_name] + skipped
        return self.pm.subset_hook_caller(hook_name, remove_plugins=[self.pm.get_plugin(n) for n in others])

    def collect(self, hook_name: str, validate: Any = None, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a ``register_x(register, ...)`` hook; return ``(plugin name, item)`` pairs in order.

        ``validate(plugin_name, item)`` may raise ``ValueError``; it becomes a ``PluginError``
        naming the plugin.
        """
        items: list[tuple[str, Any]] = []
        implementers = self.implementers(hook_name)
        # One call per plugin, each with its own ``register``, so every item is attributed to its plugin.
        for plugin_name in implementers:

            def register(*args: Any, _plugin: str = plugin_name, **kw: Any) -> None:
                item = args[0] if len(args) == 1 and not kw else (args, kw)
                if validate is not None:
                    try:
                        validate(_plugin, item)
                    except ValueError as exc:
                        raise PluginError(f"plugin {_plugin!r}, hook {hook_name}: {exc}") from exc
                items.append((_plugin, item))

            try:
                self._one_plugin(hook_name, plugin_name, implementers, [])(register=register, **kwargs)
            except PluginError:
                raise
            except (TypeError, ValueError) as exc:
                # An item the plugin could not even build (an EventType without its permission, ...).
                raise PluginError(f"plugin {plugin_name!r}, hook {hook_name}: {type(exc).__name__}: {exc}") from exc
        return items

    async def call_async(
        self, hook_name: str, *, reverse: bool = False, disabled: Iterable[str] = (), **kwargs: Any
    ) -> list[Any]:
        """Call a hook whose implementations may be coroutines, awaiting each plugin's in turn.

        Plugins are called in registration order (the kernel first), or the reverse with ``reverse``;
        the plugins of the ``disabled`` modules (a tenant's switched-off ones) are not called at all,
        nor are their wrappers. An exception stops the call and propagates.
        """
        skipped = self._switched_off(disabled)
        implementers = self.implementers(hook_name)
        order = [n for n in implementers if n not in skipped]
        results = []
        for plugin_name in reversed(order) if reverse else order:
            for result in self._one_plugin(hook_name, plugin_name, implementers, skipped)(**kwargs):
                results.append(await result if inspect.isawaitable(result) else result)
        return results


def _resolve(plugin: object | str) -> tuple[object, str]:
    if isinstance(plugin, str):
        module = importlib.import_module(plugin)
        return module, plugin
    if isinstance(plugin, types.ModuleType):
        return plugin, plugin.__name__
    return plugin, type(plugin).__module__ + "." + type(plugin).__qualname__


def build_plugin_manager(
    enabled: Sequence[str] | None = None,
    extra: Sequence[object] = (),
    *,
    load_entry_points: bool = True,
    trace: bool = False,
) -> PluginRegistry:
    """Register the kernel's plugins, then installed ones (all, or those named in ``enabled``).

    ``extra`` are plugin objects or module names registered besides the installed ones (tests,
    embedding). Raises :class:`PluginError` naming the plugin on any problem.
    """
    pm = pluggy.PluginManager("inopsio")
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}

    def register(obj: object, name: str, module: str, version: str, dist: str | None, is_kernel: bool) -> None:
        if name in infos:
            raise PluginError(f"plugin {name!r} is registered twice")
        try:
            pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({module}): {exc}") from exc
        infos[name] = PluginInfo(name, module, version, dist, is_kernel)

    for module_name in KERNEL_PLUGINS:
        module, _ = _resolve(module_name)
        register(module, f"{KERNEL}.{module_name.split('.')[1]}", module_name, __version__, "inopsio-core", True)

    if load_entry_points:
        available = installed_entry_points()
        wanted = list(available) if enabled is None else list(enabled)
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise PluginError(
                f"INOPSIO_PLUGINS names plugin(s) that are not installed: {', '.join(unknown)} "
                f"(installed: {', '.join(sorted(available)) or 'none'})"
            )
        for name in wanted:
            ep = available[name]
            _check_core_compatibility(name, ep.dist)
            obj = _load_entry_point(ep)
            dist_name = ep.dist.metadata["Name"] if ep.dist else None
            version = ep.dist.version if ep.dist else "0"
            register(obj, name, ep.value, version, dist_name, False)

    for plugin in extra:
        obj, module_name = _resolve(plugin)
        name = getattr(obj, "INOPSIO_PLUGIN_NAME", None) or module_name.split(".")[0].removeprefix("inopsio_")
        version = str(getattr(obj, "__version__", "0"))
        register(obj, name, module_name, version, None, False)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        offender = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise PluginError(f"plugin {offender!r}: {exc}") from exc

    for name in list(infos):
        plugin_obj = pm.get_plugin(name)
        hooks = tuple(sorted(h.name for h in (pm.get_hookcallers(plugin_obj) or [])))
        info = infos[name]
        infos[name] = PluginInfo(info.name, info.module, info.version, info.distribution, info.is_kernel, hooks)

    if trace:
        trace_hook_calls(pm)
    return PluginRegistry(pm, infos)


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Log every hook call through pluggy's call monitoring: the hook, the plugins it reached, its time.

    An async hook's time runs until its coroutine is done (the kernel awaits it right after the call).
    """
    started = threading.local()  # a stack per thread: a hook implementation may call another hook

    def before(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, object]) -> None:
        started.__dict__.setdefault("stack", []).append(time.perf_counter())

    def after(outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, object]) -> None:
        start = started.stack.pop()
        plugins = ", ".join(i.plugin_name for i in hook_impls if not (i.wrapper or i.hookwrapper)) or "(none)"
        if outcome.exception is not None:
            _log_hook_call(hook_name, plugins, start, f"raised {type(outcome.exception).__name__}")
            return
        result = outcome.get_result()
        if isinstance(result, list) and any(inspect.isawaitable(r) for r in result):
            outcome.force_result(
                [_awaited_then_logged(r, hook_name, plugins) if inspect.isawaitable(r) else r for r in result]
            )
            return
        _log_hook_call(hook_name, plugins, start, "done")

    pm.add_hookcall_monitoring(before, after)


def _log_hook_call(hook_name: str, plugins: str, start: float, outcome: str) -> None:
    log.info(
        "hook %s plugin %s %s in %.2f ms",
        hook_name,
        plugins,
        outcome,
        (time.perf_counter() - start) * 1000,
        extra={"hook": hook_name, "plugin": plugins},
    )


async def _awaited_then_logged(awaitable: Awaitable[Any], hook_name: str, plugins: str) -> Any:
    start = time.perf_counter()
    try:
        result = await awaitable
    except BaseException as exc:
        _log_hook_call(hook_name, plugins, start, f"raised {type(exc).__name__}")
        raise
    _log_hook_call(hook_name, plugins, start, "done")
    return result
