"""Plugin discovery: entry points in group ``flowhost.plugins``, loaded by name, lazily;
remote plugins from ``grpc://`` / ``grpcs://`` URLs and the ``[remote]`` table of
``flowhost.toml``.

Listing reads entry-point metadata only (through stevedore's on-disk cache) and imports no
plugin module; a workflow imports just the plugins it names, so a broken plugin never
breaks discovery nor a workflow that does not use it. A remote plugin is asked for its
descriptor (``ListPlugins``) when it is first used, within ``[grpc] connect_timeout``; with
a ``SchemaMemory`` (the run's state store: ``Catalog.for_context``) what each server says
is recorded, and a server that does not answer is described by what it said last time
(``Unreached``), or else ``RemoteDown`` says so and carries a stand-in that accepts
anything, for the static checks to use when the step can recover without it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowhost.problems import Problem, did_you_mean

if TYPE_CHECKING:  # imported where used: listing plugins needs neither, nor pydantic
    from flowhost.config import HostConfig
    from flowhost.context import RunContext
    from flowhost.invokers import Invoker, RemoteDescriptor, SchemaMemory
    from flowhost.invokers.grpc.endpoint import Endpoint
    from flowhost.invokers.grpc.failures import RemoteUnavailable

PLUGIN_GROUP = "flowhost.plugins"


@dataclass(frozen=True, slots=True)
class PluginEntry:
    """What is known about an installed plugin without importing it."""

    name: str
    target: str  # "module:Class", or the URL of a remote plugin
    distribution: str | None = None
    distribution_version: str | None = None
    transport: str = "local"
    # Targets of other installed entry points with the same name, which this one hides
    # (the first on sys.path wins, as for Python imports).
    shadows: tuple[str, ...] = ()


class PluginLoadError(Exception):
    """A plugin is unknown, fails to import, or is not a valid plugin class."""

    def __init__(self, name: str, reason: str, suggestion: str | None = None) -> None:
        super().__init__(f"plugin '{name}': {reason}")
        self.name = name
        self.reason = reason
        self.suggestion = suggestion


class RemoteDown(PluginLoadError):
    """A remote plugin whose server does not answer, and of which no schemas are known.
    ``stand_in`` calls it all the same, with schemas that accept anything: a step that can
    recover without it (a fallback) may use it, with a warning."""

    def __init__(self, name: str, reason: str, suggestion: str | None, stand_in: Invoker
                 ) -> None:
        super().__init__(name, reason, suggestion)
        self.stand_in = stand_in


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    from stevedore import NamedExtensionManager

    # Naming no plugin makes stevedore read the (cached) entry points without importing any.
    manager: Any = NamedExtensionManager(
        PLUGIN_GROUP, names=[], on_missing_entrypoints_callback=None
    )
    entry_points: list[importlib.metadata.EntryPoint] = manager.list_entry_points()
    return entry_points


_SECTION = re.compile(r"^\[(?P<group>[^\]]+)\]\s*$")


def _distributions_by_entry() -> dict[str, tuple[str, str]]:
    """Map ``name=target`` of each flowhost plugin entry point to (distribution, version).

    Reads each distribution's ``entry_points.txt`` as text and skips those without our
    group, which is much cheaper than parsing every file.
    """
    found: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        text = dist.read_text("entry_points.txt")
        if not text or PLUGIN_GROUP not in text:
            continue
        in_group = False
        for line in text.splitlines():
            section = _SECTION.match(line)
            if section:
                in_group = section.group("group").strip() == PLUGIN_GROUP
            elif in_group and "=" in line:
                name, _, target = line.partition("=")
                meta = dist.metadata  # parsed on each access: once per distribution
                found[f"{name.strip()}={target.strip()}"] = (meta["Name"], meta["Version"])
    return found


def _no_config_file(environ: Mapping[str, str] | None, cwd: Path | None) -> bool:
    """True when ``load_config`` would find no file (no ``$FLOWHOST_CONFIG``, no
    flowhost.toml in ``cwd``): the config is then empty, and listing need not import it."""
    if environ is not None and environ.get("FLOWHOST_CONFIG"):
        return False
    return cwd is None or not os.path.exists(os.path.join(cwd, "flowhost.toml"))


class Catalog:
    """Name → plugin. Local plugins come from entry points; remote ones from URLs and from
    ``[remote]`` in flowhost.toml, which wins over a local plugin of the same name."""

    def __init__(self, config: HostConfig | None = None, *,
                 environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                 schemas: SchemaMemory | None = None) -> None:
        """``config``, or the one ``environ`` and ``cwd`` name, read when first needed
        (none given: no config). ``schemas``: where remote plugins' descriptors are
        recorded when their servers answer, and read when they do not."""
        self._entries: dict[str, PluginEntry] | None = None
        self._invokers: dict[str, Invoker] = {}
        self._config = config
        self._environ, self._cwd = environ, cwd
        self.schemas = schemas
        self.warnings: list[Problem] = []  # what static checks could not check, and why
        # What each server hosts, or why it could not be asked (asked once per catalog).
        self._remote: dict[Endpoint, dict[str, RemoteDescriptor] | RemoteUnavailable] = {}

    @classmethod
    def for_context(cls, ctx: RunContext, *, remember: bool = True) -> Catalog:
        """The catalog a run in ``ctx`` checks against: its config, and its state store as
        the memory of what remote plugins reported. ``remember=False`` (``validate``,
        ``plan``) reads that memory but creates no state dir to keep it in."""
        from flowhost.store.schemas import StateDirSchemas

        return cls(ctx.config, schemas=StateDirSchemas(ctx.state_dir, ctx.busy_timeout,
                                                       create=remember,
                                                       store_url=ctx.store_url))

    @property
    def config(self) -> HostConfig:
        """The host config (``$FLOWHOST_CONFIG`` or ./flowhost.toml), read on first use."""
        if self._config is None:
            from flowhost.config import load_config

            self._config = load_config(environ=self._environ, cwd=self._cwd)
        return self._config

    def _remote_table(self) -> dict[str, str | list[str]]:
        """``[remote]`` of the host config."""
        if self._config is None and _no_config_file(self._environ, self._cwd):
            return {}
        return self.config.remote

    def entries(self, *, with_distributions: bool = False) -> dict[str, PluginEntry]:
        if self._entries is None or with_distributions:
            dists = _distributions_by_entry() if with_distributions else {}
            entries: dict[str, PluginEntry] = {}
            for ep in _entry_points():
                if ep.name in entries:  # first on sys.path wins, as Python imports do
                    first = entries[ep.name]
                    if ep.value != first.target and ep.value not in first.shadows:
                        entries[ep.name] = replace(first, shadows=(*first.shadows, ep.value))
                    continue
                dist = dists.get(f"{ep.name}={ep.value}")
                entries[ep.name] = PluginEntry(
                    name=ep.name,
                    target=ep.value,
                    distribution=dist[0] if dist else None,
                    distribution_version=dist[1] if dist else None,
                )
            for name, url in self._remote_table().items():
                shown = url if isinstance(url, str) else ", ".join(url)
                entries[name] = PluginEntry(name=name, target=shown, transport="grpc")
            self._entries = entries
        return self._entries

    def names(self) -> list[str]:
        return sorted(self.entries())

    def __contains__(self, name: str) -> bool:
        return name in self.entries()

    def get(self, name: str) -> Invoker:
        """The invoker for ``name``, importing its module on first use."""
        invoker = self._invokers.get(name)
        if invoker is None:
            invoker = self._load(name)
            self._invokers[name] = invoker
        return invoker

    def _load(self, name: str) -> Invoker:
        from flowhost.remote_targets import is_remote_url

        if is_remote_url(name):
            return self._load_remote(name, name)
        entry = self.entries().get(name)
        if entry is not None and entry.transport == "grpc":
            return self._load_remote(name, self._remote_table()[name])
        if entry is None:
            raise PluginLoadError(
                name,
                f"no plugin of that name is installed (entry-point group '{PLUGIN_GROUP}')",
                did_you_mean(name, self.entries()),
            )
        cls = _import_plugin_class(name, entry.target)
        from flowhost.invokers.local import LocalInvoker

        try:
            plugin = cls()
        except Exception as exc:
            raise PluginLoadError(
                name, f"cannot be instantiated: {type(exc).__name__}: {exc}"
            ) from None
        try:
            return LocalInvoker(plugin)
        except Exception as exc:
            raise PluginLoadError(
                name, f"its Inputs/Outputs schemas cannot be built: {type(exc).__name__}: {exc}"
            ) from None

    def _load_remote(self, name: str, url: str | list[str]) -> Invoker:
        """A GrpcInvoker, after asking the server for its plugins (blocking, at most
        ``[grpc] connect_timeout``; inside an event loop, call ``get`` from a thread). Of
        several servers (a list, a ``dns:///`` name) any one that is healthy answers: they
        serve the same plugins."""
        from flowhost.invokers.grpc.discovery import list_plugins
        from flowhost.invokers.grpc.endpoint import Endpoint
        from flowhost.invokers.grpc.failures import RemoteUnavailable
        from flowhost.invokers.grpc.invoker import GrpcInvoker
        from flowhost.remote_targets import is_remote_url, parse_remote_targets

        try:
            target, served_as = parse_remote_targets(url)
        except ValueError as exc:
            raise PluginLoadError(name, str(exc)) from None
        if served_as is None:
            if is_remote_url(name):
                raise PluginLoadError(name, "the URL does not say which plugin: end it with the "
                                      "plugin's name, grpc://HOST:PORT/NAME")
            served_as = name
        config = self.config
        if not target.tls and config.tls_for(target) is not None:
            raise PluginLoadError(name, f"flowhost.toml has TLS settings for "
                                  f"{target.members[0].address} but the URL says grpc:// "
                                  "(plaintext): use grpcs://")
        try:
            endpoint = Endpoint.create(target, config)
        except RemoteUnavailable as exc:
            raise PluginLoadError(name, str(exc)) from None
        served = self._remote.get(endpoint)
        if served is None:
            try:
                served = list_plugins(endpoint, config.grpc.connect_timeout)
            except RemoteUnavailable as exc:
                served = exc
            else:
                if self.schemas is not None:
                    self.schemas.record_schemas(target.url, served.values())
            self._remote[endpoint] = served
        if isinstance(served, RemoteUnavailable):
            if not served.down:
                raise PluginLoadError(name, str(served), served.fix)
            return self._unreached(name, endpoint, served_as, served)
        descriptor = served.get(served_as)
        if descriptor is None:
            raise PluginLoadError(
                name, f"the server at {target.url} does not serve '{served_as}'; it serves: "
                f"{', '.join(sorted(served)) or 'nothing'}", did_you_mean(served_as, served))
        return GrpcInvoker(descriptor, endpoint, name=name,
                           default_timeout=config.grpc.default_timeout)

    def _unreached(self, name: str, endpoint: Endpoint, served_as: str,
                   down: RemoteUnavailable) -> Invoker:
        """An invoker for a plugin whose server does not answer: described as it was last
        time, or else RemoteDown with a stand-in."""
        from flowhost.invokers import RemoteDescriptor, Unreached
        from flowhost.invokers.grpc.invoker import GrpcInvoker

        recorded = None
        if self.schemas is not None:
            recorded = self.schemas.recorded_schemas(endpoint.target.url, served_as)
        grpc_settings = self.config.grpc
        descriptor = recorded.descriptor if recorded is not None else RemoteDescriptor(
            served_as, "unknown", "", False, {}, {})
        invoker = GrpcInvoker(
            descriptor, endpoint, name=name, default_timeout=grpc_settings.default_timeout,
            unreached=Unreached(str(down), down.fix,
                                recorded.reported_at if recorded is not None else None),
            memory=self.schemas, connect_timeout=grpc_settings.connect_timeout)
        if recorded is None:
            raise RemoteDown(name, str(down), down.fix, invoker)
        return invoker


def _import_plugin_class(name: str, target: str) -> Any:
    """The class of entry point ``name`` = ``target`` (the one ``entries`` lists: with two
    packages offering the same name, stevedore loads both)."""
    from stevedore import NamedExtensionManager

    from flowhost_sdk import check_plugin_class

    failures: list[str] = []

    def on_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        if entry_point.value == target:
            failures.append(f"import of {target} failed: {type(exc).__name__}: {exc}")

    manager = NamedExtensionManager(
        PLUGIN_GROUP,
        names=[name],
        on_load_failure_callback=on_failure,
        on_missing_entrypoints_callback=None,
    )
    if failures:
        raise PluginLoadError(name, failures[0])
    loaded = [ext.plugin for ext in manager.extensions if ext.entry_point.value == target]
    if not loaded:
        raise PluginLoadError(name, "its entry point disappeared while loading")
    cls = loaded[0]
    problems = check_plugin_class(cls)
    if problems:
        raise PluginLoadError(name, "; ".join(problems))
    if cls.name != name:
        raise PluginLoadError(
            name,
            f"the entry point is named '{name}' but the class says name = '{cls.name}'",
        )
    return cls
