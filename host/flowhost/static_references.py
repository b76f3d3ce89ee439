"""What every static check of a step stands on: the plugins the spec names, each loaded once
(one whose server does not answer is left to ``flowhost.unreachable``), and its references,
each resolved against the producer's output schema and matched against the type the
consumer's input schema wants. What is the same for many steps (a plugin's inputs, a field
read, a type match) is worked out once, so that checking a spec stays linear in its size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flowhost import schema as js
from flowhost.catalog import Catalog, PluginLoadError, RemoteDown
from flowhost.invokers import Invoker
from flowhost.problems import Problem, did_you_mean, quote, requote
from flowhost.refs import (
    CDict,
    CList,
    Compiled,
    Const,
    Ref,
    RefSyntaxError,
    Template,
    compile_value,
)
from flowhost.source import PathKey
from flowhost.spec_loading import LoadedSpec
from flowhost.unreachable import Unanswered

# The name the warnings have always been logged under (see flowhost.static).
log = logging.getLogger("flowhost.static")


class ReferenceChecker:
    """The problems found so far, the plugins loaded, and the checks of references and
    values; ``flowhost.static_steps.StepChecker`` adds those of a step's parts."""

    def __init__(self, spec: LoadedSpec, catalog: Catalog, env: Mapping[str, str],
                 known_ids: frozenset[str] = frozenset()) -> None:
        self.spec = spec
        self.workflow = spec.workflow
        self.catalog = catalog
        self.env = env
        self.problems: list[Problem] = []
        self.by_id = {step.id: step for step in self.workflow.steps}
        self.ids = self.by_id.keys() | known_ids
        self.invokers: dict[str, Invoker | None] = {}
        self.secret_names: set[str] = set()
        self.remote = Unanswered(spec)  # remote plugins whose servers did not answer
        # What is the same for every step using a plugin, or reading the same field: keyed by
        # the id of the schema (or invoker), which the entry holds so that the id stays its.
        self._input_fields: dict[int, tuple[Invoker, _InputFields]] = {}
        self._fields: dict[tuple[int, tuple[str, ...]], tuple[js.Schema, js.Schema | None,
                                                              js.NoSuchField | None]] = {}
        self._types: dict[tuple[int, int], tuple[js.Schema, js.Schema,
                                                 frozenset[str] | None]] = {}
        self._matches: dict[tuple[int, int, int, int], tuple[js.Schema, js.Schema, js.Schema,
                                                             js.Schema, bool]] = {}
        # (producer's plugin, path read, id of the target) -> (target, root): references
        # check_value had nothing to say about (see _known_fit)
        self._fits: dict[tuple[str, tuple[str, ...], int], tuple[js.Schema | None,
                                                                 js.Schema]] = {}

    def add(self, message: str, path: PathKey, step: str | None = None,
            field: str | None = None, fix: str | None = None) -> None:
        self.problems.append(self.spec.problem(message, path=path, step=step, field=field,
                                               fix=fix))

    # -- plugins -----------------------------------------------------------------------
    def invoker(self, name: str, path: PathKey, step: str,
                field: str = "plugin") -> Invoker | None:
        """The plugin ``name`` (``field`` names where the step asks for it: ``plugin``, or
        ``fallback.N.plugin``), loaded once; a problem said where it was asked for."""
        if name not in self.invokers:
            try:
                loaded = self.invokers[name] = self.catalog.get(name)
            except RemoteDown as exc:
                self.invokers[name] = None
                self.remote.down[name] = exc  # whether a step may do without it: per step
            except PluginLoadError as exc:
                self.invokers[name] = None
                fix = exc.suggestion or (
                    "install it, or run `flowhost plugins list` to see what is installed"
                    if "no plugin" in exc.reason else "run `flowhost plugins list --check`"
                )
                self.add(f"plugin '{name}': {exc.reason}", path, step, field, fix)
            else:
                self.remote.loaded(name, loaded, path, step)
        elif self.invokers[name] is None and name not in self.remote.down:
            self.add(f"plugin '{name}' is not usable (see above)", path, step, field)
        return self.invokers[name]

    def load_plugins(self) -> None:
        """Every plugin first, so references can be checked against any producer."""
        invokers = self.invokers
        for index, step in enumerate(self.workflow.steps):
            if invokers.get(step.plugin) is None:  # not loaded yet, or not usable (say again)
                self.invoker(step.plugin, ("steps", index, "plugin"), step.id)
            for j, fallback in enumerate(step.fallback) if step.fallback else ():
                self.invoker(fallback.plugin, ("steps", index, "fallback", j, "plugin"),
                             step.id, f"fallback.{j}.plugin")
            if self.remote.down:
                self.problems += self.remote.step(index, step, invokers)

    def report_warnings(self) -> None:
        for warning in self.remote.warnings(self.invokers):
            self.catalog.warnings.append(warning)
            log.warning("warning: %s", warning)

    # -- references --------------------------------------------------------------------
    def compile(self, value: Any, path: PathKey, step: str | None, field: str) -> Compiled:
        try:
            return compile_value(value)
        except RefSyntaxError as exc:
            self.add(str(exc), path, step, field)
            return Const(None)

    def ref_schema(self, ref: Ref, path: PathKey, step: str | None, field: str,
                   primary_inputs: js.Schema | None, own_step: str | None) -> js.Schema | None:
        """Check one reference; return the schema of the referenced value (None = unknown)."""
        root = ref.root
        if root in ("env", "secret"):
            if root == "secret":
                self.secret_names.add(ref.path[0])
            if ref.path[0] not in self.env:
                self.add(f"{ref.text}: environment variable {ref.path[0]} is not set", path,
                         step, field, f"export {ref.path[0]}=… before running")
            return {"type": "string"}
        if root == "inputs":
            if primary_inputs is None:
                self.add(f"{ref.text}: $inputs can only be used in a fallback's inputs", path,
                         step, field)
                return None
            return self._walk(ref, primary_inputs, path, step, field, None)
        if root not in self.ids:
            self.add(f"{ref.text}: unknown step '{root}'", path, step, field,
                     did_you_mean(root, self.ids) or f"steps are: {', '.join(sorted(self.ids))}")
            return None
        if root == step and own_step is None:
            self.add(f"{ref.text}: a step cannot use its own outputs as inputs", path, step,
                     field)
            return None
        producer = self.by_id.get(root)
        if producer is None:  # a step too malformed to load: reported already
            return None
        invoker = self.invokers.get(producer.plugin)
        if invoker is None:
            return None
        found = self._walk(ref, invoker.output_schema, path, step, field, producer.plugin)
        for fallback in producer.fallback:
            alternative = self.invokers.get(fallback.plugin)
            if alternative is not None:
                self._walk(ref, alternative.output_schema, path, step, field, fallback.plugin,
                           root)
        if self.remote.down:
            self.remote.read(producer.plugin, ref)
            for fallback in producer.fallback:
                self.remote.read(fallback.plugin, ref)
        return found

    def _walk(self, ref: Ref, schema: js.Schema, path: PathKey, step: str | None, field: str,
              plugin: str | None, fallback_of: str | None = None) -> js.Schema | None:
        """The schema of the field ``ref`` reads in the outputs of ``plugin`` (the fallback
        of step ``fallback_of``), or in the primary's inputs (``plugin`` None)."""
        key = (id(schema), ref.path)
        known = self._fields.get(key)
        if known is None or known[0] is not schema:
            try:
                known = (schema, js.field_schema(schema, ref.path, schema), None)
            except js.NoSuchField as exc:
                known = (schema, None, exc)
            self._fields[key] = known
        _, found, missing = known
        if missing is not None:
            what = "primary's inputs" if plugin is None else f"outputs of {plugin}" + (
                f" (fallback of step '{fallback_of}')" if fallback_of is not None else "")
            self.add(f"{ref.text}: the {what} have no field '{missing.part}'", path, step,
                     field, did_you_mean(missing.part, missing.known)
                     or (f"known fields: {', '.join(missing.known)}" if missing.known else None))
        return found

    def json_types(self, schema: js.Schema, root: js.Schema) -> frozenset[str] | None:
        """``js.json_types``, once for each schema."""
        key = (id(schema), id(root))
        known = self._types.get(key)
        if known is None or known[0] is not schema or known[1] is not root:
            known = self._types[key] = (schema, root, js.json_types(schema, root))
        return known[2]

    def input_fields(self, invoker: Invoker) -> _InputFields:
        """The inputs of ``invoker``, once for each plugin."""
        known = self._input_fields.get(id(invoker))
        if known is None or known[0] is not invoker:
            known = self._input_fields[id(invoker)] = (invoker, _InputFields(invoker.input_schema))
        return known[1]

    def check_value(self, compiled: Compiled, target: js.Schema | None, root: js.Schema,
                    path: PathKey, step: str | None, field: str,
                    primary_inputs: js.Schema | None = None) -> None:
        """Type-check a compiled value against the consumer's schema for it."""
        if isinstance(compiled, Ref):  # the common case first
            produced = self.ref_schema(compiled, path, step, field, primary_inputs, None)
            if produced is not None and target is not None:
                self._type_match(compiled, produced, target, root, path, step, field)
            return
        if isinstance(compiled, Const):
            if target is not None:
                error = js.literal_error(compiled.value, target, root)
                if error:
                    self.add(f"value {quote(compiled.value)} is rejected: "
                             f"{requote(error, compiled.value)}", path, step, field)
            return
        if isinstance(compiled, Template):
            for ref in compiled.parts:
                if isinstance(ref, Ref):
                    self.ref_schema(ref, path, step, field, primary_inputs, None)
            if target is not None:
                accepts = js.json_types(target, root)
                if not js.accepts(accepts, frozenset({"string"})) and not (
                    accepts and accepts & {"integer", "number", "boolean"}
                ):
                    self.add(f"a text with interpolations is a string, but the input expects "
                             f"{_types(accepts)}", path, step, field)
            return
        if isinstance(compiled, CList):
            item = None
            if target is not None:
                schema = js.deref(target, root)
                item = js.deref(schema.get("items", {}), root) if "items" in schema else None
            for i, value in enumerate(compiled.items):
                self.check_value(value, item, root, (*path, i), step, f"{field}.{i}",
                                 primary_inputs)
            return
        if isinstance(compiled, CDict):
            props: dict[str, js.Schema] = {}
            if target is not None:
                props = js.deref(target, root).get("properties") or {}
            for key, value in compiled.items:
                sub = js.deref(props[key], root) if key in props else None
                self.check_value(value, sub, root, (*path, key), step, f"{field}.{key}",
                                 primary_inputs)

    def _type_match(self, ref: Ref, produced: js.Schema, target: js.Schema, root: js.Schema,
                    path: PathKey, step: str | None, field: str) -> None:
        produced_root = self._producer_root(ref)
        key = (id(produced), id(produced_root), id(target), id(root))
        known = self._matches.get(key)
        if known is None or known[0] is not produced or known[1] is not produced_root or (
                known[2] is not target or known[3] is not root):
            have = self.json_types(produced, produced_root)
            want = self.json_types(target, root)
            known = self._matches[key] = (produced, produced_root, target, root,
                                          js.accepts(want, have))
        if not known[4]:
            have = self.json_types(produced, produced_root)
            want = self.json_types(target, root)
            self.add(f"{ref.text} is {_types(have)}, but the input expects {_types(want)}",
                     path, step, field)

    def _producer_root(self, ref: Ref) -> js.Schema:
        if ref.root in self.by_id:
            invoker = self.invokers.get(self.by_id[ref.root].plugin)
            if invoker is not None:
                return invoker.output_schema
        return {}


class _InputFields:
    """What ``inputs`` needs of a plugin's input schema: the same for each step using it."""

    def __init__(self, root: js.Schema) -> None:
        self.root = root
        self.properties, self.required, self.open_ended = js.input_fields(root, root)
        # the (dereferenced) schema of each input
        self.targets = {name: js.deref(schema, root) for name, schema in self.properties.items()}


def _types(types: frozenset[str] | None) -> str:
    if not types:
        return "any value"
    names = sorted(types)
    return names[0] if len(names) == 1 else " or ".join(names)
