"""Remote plugins whose servers did not answer a static check, and what that leaves unchecked.

A plugin described by what its server reported last time (``Unreached`` with a time) is
checked as any other, with a warning that says so. One of unknown schemas (``RemoteDown``)
is used, through its stand-in that accepts anything, by a step that has another plugin
which can be checked (the primary, a fallback): the warning names what could not be
checked, the inputs it is given and what other steps read of its outputs. A step with no
such other plugin is refused, as any plugin that cannot be loaded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flowhost.invokers import Invoker, Unreached, unreached
from flowhost.problems import Problem

if TYPE_CHECKING:
    from flowhost.catalog import RemoteDown
    from flowhost.refs import Ref
    from flowhost.spec import Step
    from flowhost.spec_loading import LoadedSpec

PathKey = tuple[str | int, ...]


def plugin_field(path: PathKey) -> str:
    """``plugin``, or ``fallback.N.plugin``, of a path ``("steps", i, ...)``."""
    return ".".join(str(part) for part in path[2:])


class Unanswered:
    def __init__(self, spec: LoadedSpec) -> None:
        self.spec = spec
        self.down: dict[str, RemoteDown] = {}  # of unknown schemas: decided per step
        self._stood_in: dict[str, tuple[PathKey, list[str]]] = {}  # -> first use, steps
        self._refused: set[str] = set()
        self._known: dict[str, tuple[PathKey, str, Unreached]] = {}
        self._read: dict[str, dict[str, None]] = {}  # plugin -> references to its outputs

    def loaded(self, name: str, invoker: Invoker, path: PathKey, step: str) -> None:
        how = unreached(invoker)
        if how is not None:
            self._known[name] = (path, step, how)

    def step(self, index: int, step: Step, invokers: dict[str, Invoker | None]
             ) -> list[Problem]:
        """Let the step use its plugins that are down when another of them can be checked
        (their stand-ins go into ``invokers``); the problems of those it cannot use."""
        wanted: list[tuple[str, PathKey]] = [(step.plugin, ("steps", index, "plugin"))]
        wanted += [(fallback.plugin, ("steps", index, "fallback", j, "plugin"))
                   for j, fallback in enumerate(step.fallback)]
        down = [(name, path) for name, path in wanted if name in self.down]
        if not down:
            return []
        others = any(name not in self.down and invokers.get(name) is not None
                     for name, _ in wanted)
        problems = []
        for name, path in down:
            exc = self.down[name]
            if others:
                invokers[name] = exc.stand_in
                self._stood_in.setdefault(name, (path, []))[1].append(step.id)
                continue
            if name in self._refused:
                message, fix = f"plugin '{name}' is not usable (see above)", None
            else:
                self._refused.add(name)
                message = f"plugin '{name}': {exc.reason}"
                fix = f"{exc.suggestion or 'start its server'}; a step with a fallback " \
                      "would run without it"
            problems.append(self.spec.problem(message, path=path, step=step.id,
                                              field=plugin_field(path), fix=fix))
        return problems

    def read(self, plugin: str, ref: Ref) -> None:
        """``ref`` reads the outputs of ``plugin``: unchecked when it is down."""
        if plugin in self.down:
            self._read.setdefault(plugin, {})[ref.text] = None

    def warnings(self, invokers: dict[str, Invoker | None]) -> list[Problem]:
        found = []
        for name, (path, step, how) in self._known.items():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(how.reported_at or 0))
            invoker = invokers.get(name)
            version = f", version {invoker.version}" if invoker is not None else ""
            found.append(self.spec.problem(
                f"plugin '{name}' cannot be reached ({how.reason}); checked against the "
                f"schemas it reported on {when}{version}", path=path, step=step,
                field=plugin_field(path), fix=how.fix))
        for name, (path, steps) in self._stood_in.items():
            if name in self._refused:
                continue  # an error already
            refs = list(self._read.get(name, ()))
            read = f", nor what is read of its outputs: {', '.join(refs)}" if refs else ""
            exc = self.down[name]
            found.append(self.spec.problem(
                f"plugin '{name}' cannot be reached ({exc.reason}) and no schemas it "
                f"reported are known, so these are not checked: the inputs step"
                f"{'s' if len(steps) > 1 else ''} {', '.join(map(repr, steps))} give it"
                f"{read}. If it does not answer at run time either, the step retries it, "
                "then falls back", path=path, step=steps[0], field=plugin_field(path),
                fix=exc.suggestion))
        return found
