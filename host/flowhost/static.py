"""Every check that can be made before the first step runs, reported all at once.

Unknown plugins and steps (with "did you mean"), unknown output fields (against the
producer's output schema), types the consumer's input schema rejects, missing required
inputs, unset environment variables, check kinds and arguments, and cycles. All passes are
linear in the size of the spec; suggestions are computed only for errors.

A remote plugin whose server does not answer is checked against the schemas it reported
last time, with a warning; when none are known, its step may still use it if another of
its plugins (the primary, a fallback) can be checked: what cannot be is named in a
warning. Warnings are logged (``flowhost.static``) and kept in ``Catalog.warnings``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowhost import schema as js
from flowhost.catalog import Catalog, PluginLoadError, RemoteDown
from flowhost.invokers import Invoker
from flowhost.plan import Plan, PlannedCheck, PlannedFallback, PlannedStep
from flowhost.problems import Problem, SpecError, did_you_mean, quote, requote
from flowhost.redact import Redactor
from flowhost.refs import (
    CDict,
    CList,
    Compiled,
    Const,
    Ref,
    RefSyntaxError,
    Template,
    compile_value,
    iter_refs,
)
from flowhost.source import paused_gc
from flowhost.spec import CheckSpec, LoadedSpec, Step
from flowhost.unreachable import Unanswered

PathKey = tuple[str | int, ...]
log = logging.getLogger(__name__)


class _Checker:
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

    # -- steps -------------------------------------------------------------------------
    def inputs(self, inputs: dict[str, Any], invoker: Invoker | None, path: PathKey,
               step: Step, primary_inputs: js.Schema | None = None) -> Compiled:
        compiled = self.compile(inputs, path, step.id, "inputs")
        if invoker is None:
            for ref, inside, _ in iter_refs(compiled):
                self.ref_schema(ref, (*path, *inside), step.id, _dotted("inputs", inside),
                                primary_inputs, None)
            return compiled
        fields = self.input_fields(invoker)
        root, properties, targets = fields.root, fields.properties, fields.targets
        if not fields.required <= inputs.keys():
            for name in sorted(fields.required - set(inputs)):
                self.add(f"required input '{name}' of {invoker.name} is missing", path,
                         step.id, f"inputs.{name}")
        # (The items of a CDict as they are: their names are the inputs' keys, all distinct.)
        items = compiled.items if isinstance(compiled, CDict) else [
            (k, Const(v)) for k, v in inputs.items()]
        known_fit = self._known_fit
        for name, value in items:
            if name not in properties and not fields.open_ended:
                self.add(f"{invoker.name} has no input '{name}'", (*path, name), step.id,
                         f"inputs.{name}",
                         did_you_mean(name, properties)
                         or f"its inputs are: {', '.join(properties) or '(none)'}")
                continue
            target = targets.get(name)
            if type(value) is not Ref:
                self.check_value(value, target, root, (*path, name), step.id,
                                 f"inputs.{name}", primary_inputs)
            elif not known_fit(value, target, root, step.id):
                said = len(self.problems)
                self.check_value(value, target, root, (*path, name), step.id,
                                 f"inputs.{name}", primary_inputs)
                if len(self.problems) == said:
                    self._fitted(value, target, root)
        return compiled

    def _known_fit(self, ref: Ref, target: js.Schema | None, root: js.Schema,
                   step: str) -> bool:
        """Whether ``ref`` (in an input of ``step`` whose schema is ``target``, in the
        consumer's ``root``) reads the field of the same plugin's outputs, for the same
        target, as a reference ``check_value`` had nothing to say about: then it would say
        nothing of this one either, and need not be asked (it costs several times more, and a
        chain asks it for every step). False when unsure."""
        producer = self.by_id.get(ref.root)  # None for env, secret and inputs
        if producer is None or producer.fallback or ref.root == step or self.remote.down:
            return False  # (what check_value says then depends on more than the key below)
        known = self._fits.get((producer.plugin, ref.path, id(target)))
        return known is not None and known[0] is target and known[1] is root

    def _fitted(self, ref: Ref, target: js.Schema | None, root: js.Schema) -> None:
        """``check_value`` found nothing to say about ``ref``: for ``_known_fit``."""
        producer = self.by_id.get(ref.root)
        if producer is not None:
            self._fits[(producer.plugin, ref.path, id(target))] = (target, root)

    def fallbacks(self, step: Step, invoker: Invoker | None, base: PathKey
                  ) -> list[PlannedFallback]:
        """The step's fallbacks that are usable, their inputs checked."""
        fallbacks = []
        for j, fallback in enumerate(step.fallback):
            alternative = self.invokers.get(fallback.plugin)
            primary = invoker.input_schema if invoker is not None else {}
            where: PathKey = (*base, "fallback", j)
            compiled: Compiled | None = None
            if fallback.inputs is not None:
                compiled = self.inputs(fallback.inputs, alternative, (*where, "inputs"), step,
                                       primary)
            elif alternative is not None:
                self.inherited_inputs(step, alternative, where)
            if alternative is not None:
                fallbacks.append(PlannedFallback(fallback, compiled, alternative))
        return fallbacks

    def needs(self, step: Step, base: PathKey, deps: dict[str, None]) -> None:
        """Add the steps in the step's ``needs`` to ``deps``; a problem for each that is
        not another step."""
        for j, need in enumerate(step.needs):
            if need not in self.ids:
                self.add(f"needs unknown step '{need}'", (*base, "needs", j), step.id,
                         "needs", did_you_mean(need, self.ids))
            elif need == step.id:
                self.add("a step cannot need itself", (*base, "needs", j), step.id, "needs")
            else:
                deps[need] = None

    def inherited_inputs(self, step: Step, fallback: Invoker, where: PathKey) -> None:
        """A fallback without ``inputs`` gets the primary's: they must cover what it needs."""
        fields = self.input_fields(fallback)
        for name in sorted(fields.required - set(step.inputs)):
            self.add(f"fallback {fallback.name} requires input '{name}', which the step's "
                     "inputs do not give", where, step.id, f"fallback.{where[-1]}.inputs",
                     f"give the fallback its own `inputs:` (e.g. {name}: $inputs.<field>)")
        for name, value in step.inputs.items():
            if name in fields.properties:
                self.check_value(self.compile(value, where, step.id, "inputs"),
                                 fields.targets[name], fields.root, where, step.id,
                                 f"inputs.{name} (for fallback {fallback.name})")

    def checks(self, specs: list[CheckSpec], path: PathKey, step: str | None) -> list[
        PlannedCheck
    ]:
        if not specs:
            return []
        from flowhost import checks as check_kinds  # imported by the first spec with checks

        planned = []
        for i, check in enumerate(specs):
            where: PathKey = (*path, i)
            field = f"{path[-1]}.{i}.{check.kind}"
            try:
                check_kinds.parse_check_args(check.kind, check.args)
            except check_kinds.CheckArgsError as exc:
                self.add(str(exc), where, step, field)
            except check_kinds.CheckError as exc:  # unknown kind, or its validator is broken
                self.add(str(exc), where, step, field)
                continue
            else:
                self.output_field(check, where, step, field)
            compiled = self.compile(check.args, where, step, field)
            for ref, _, _ in iter_refs(compiled):
                self.ref_schema(ref, where, step, field, None, step)
            planned.append(PlannedCheck(check.kind, compiled))
        return planned

    def output_field(self, check: CheckSpec, path: PathKey, step: str | None,
                     field: str) -> None:
        """The ``field`` of an ``output`` check must exist like a reference would: in the
        step's own outputs, or (in final_validation) as ``step_id.field``."""
        name = check.args.get("field") if isinstance(check.args, dict) else None
        if check.kind != "output" or not isinstance(name, str) or "$" in name or not name:
            return
        parts = tuple(name.split("."))
        text = f"output field '{name}'"
        ref = Ref(step, parts, text) if step is not None else Ref(parts[0], parts[1:], text)
        self.ref_schema(ref, path, step, f"{field}.field", None, step)


class _InputFields:
    """What ``inputs`` needs of a plugin's input schema: the same for each step using it."""

    def __init__(self, root: js.Schema) -> None:
        self.root = root
        self.properties, self.required, self.open_ended = js.input_fields(root, root)
        # the (dereferenced) schema of each input
        self.targets = {name: js.deref(schema, root) for name, schema in self.properties.items()}


def _dotted(base: str, where: PathKey) -> str:
    return ".".join([base, *(str(p) for p in where)])


def _types(types: frozenset[str] | None) -> str:
    if not types:
        return "any value"
    names = sorted(types)
    return names[0] if len(names) == 1 else " or ".join(names)


def check(spec: LoadedSpec, catalog: Catalog, env: Mapping[str, str],
          known_ids: frozenset[str] = frozenset()) -> Plan:
    """Check ``spec`` completely and return its plan; raise SpecError with every problem."""
    checker = _Checker(spec, catalog, env, known_ids)
    workflow = spec.workflow
    steps = workflow.steps
    invokers = checker.invokers
    checker.load_plugins()

    planned: dict[str, PlannedStep] = {}
    order: Iterable[int] = range(len(steps))
    if any(step.number is not None for step in steps):
        order = sorted(order, key=lambda i: (steps[i].number is None, steps[i].number or 0, i))
    ids = checker.ids
    for display, index in enumerate(order, start=1):
        step = steps[index]
        base: PathKey = ("steps", index)
        invoker = invokers.get(step.plugin)
        inputs = checker.inputs(step.inputs, invoker, ("steps", index, "inputs"), step)
        # (Each loop over a list that is mostly empty is asked first whether it has anything:
        # a chain is thousands of steps, and each empty loop costs.)
        fallbacks = checker.fallbacks(step, invoker, base) if step.fallback else []
        checks = checker.checks(step.validation, (*base, "validation"), step.id) if (
            step.validation) else []
        roots: dict[str, None] = {}  # of the references, in order
        _ref_roots(inputs, roots)
        for planned_fallback in fallbacks:
            if planned_fallback.inputs is not None:
                _ref_roots(planned_fallback.inputs, roots)
        for planned_check in checks:
            _ref_roots(planned_check.args, roots)
        deps: dict[str, None] = {}
        for root in roots:  # a loop, not a comprehension: that is one more call a step
            if root in ids and root != step.id:
                deps[root] = None
        if step.needs:
            checker.needs(step, base, deps)
        if invoker is None:
            continue
        planned[step.id] = PlannedStep(  # by position: keywords cost ~0.3 us a step
            step.id,  # id
            step,
            display,  # index
            invoker,
            inputs,
            tuple(deps),
            workflow.retry_for(step),  # retry
            workflow.timeout_for(step),  # timeout
            workflow.cache_for(step, invoker.idempotent),  # cache
            fallbacks,
            checks,
        )
    final = checker.checks(workflow.final_validation, ("final_validation",), None)
    levels = _levels(planned, checker)
    checker.report_warnings()
    if checker.problems:
        raise SpecError(_masked(checker.problems, checker.secret_names, env))
    return Plan(workflow=workflow, steps=planned, levels=levels, final_checks=final,
                secret_names=frozenset(checker.secret_names))


def _masked(problems: list[Problem], names: Iterable[str],
            env: Mapping[str, str]) -> list[Problem]:
    """``problems`` with the values of the secrets the spec reads masked: a message quotes
    the value it rejects, and that may be a secret's (given by ``--set``, or as a literal)."""
    redactor = Redactor(env[name] for name in names if env.get(name))
    if not redactor:
        return problems
    return [dataclasses.replace(problem, message=redactor.text(problem.message),
                                fix=problem.fix and redactor.text(problem.fix))
            for problem in problems]


def _ref_roots(compiled: Compiled, roots: dict[str, None]) -> None:
    """Add the root of each reference in ``compiled`` to ``roots`` (as ``iter_refs`` finds
    them, without its generators)."""
    if isinstance(compiled, Ref):
        roots[compiled.root] = None
    elif isinstance(compiled, CDict):
        for _, value in compiled.items:
            if type(value) is Ref:  # the common case, without one more call
                roots[value.root] = None
            elif not isinstance(value, Const):
                _ref_roots(value, roots)
    elif isinstance(compiled, CList):
        for item in compiled.items:
            if not isinstance(item, Const):
                _ref_roots(item, roots)
    elif isinstance(compiled, Template):
        for part in compiled.parts:
            if isinstance(part, Ref):
                roots[part.root] = None


def _levels(planned: dict[str, PlannedStep], checker: _Checker) -> list[list[str]]:
    """Kahn's algorithm: the groups of steps that can run together, or the cycles."""
    indegree: dict[str, int] = {}
    for sid, ps in planned.items():
        degree = 0
        for dep in ps.deps:
            if dep in planned:
                degree += 1
                planned[dep].dependents.append(sid)
        indegree[sid] = degree
    current = [sid for sid, degree in indegree.items() if degree == 0]
    levels: list[list[str]] = []
    done = 0
    while current:
        levels.append(current)
        done += len(current)
        following = []
        for sid in current:
            for dependent in planned[sid].dependents:
                indegree[dependent] -= 1
                if indegree[dependent] == 0:
                    planned[dependent].level = len(levels)
                    following.append(dependent)
        current = following
    if done < len(planned):
        stuck = {sid for sid, degree in indegree.items() if degree > 0}
        positions = {step.id: i for i, step in enumerate(checker.workflow.steps)}
        for cycle in _cycles(planned, stuck):
            first = cycle[0]
            checker.add("dependency cycle: " + " → ".join([*cycle, first]),
                        ("steps", positions[first]), first, None,
                        "remove one of these references or `needs`")
    return levels


def _cycles(planned: dict[str, PlannedStep], stuck: set[str]) -> list[list[str]]:
    cycles: list[list[str]] = []
    seen: set[str] = set()
    for start in sorted(stuck, key=lambda s: planned[s].index):
        if start in seen:
            continue
        path: list[str] = []
        position: dict[str, int] = {}
        node = start
        # Follow a stuck dependency until a node repeats: that loop is a cycle.
        while node not in position and node not in seen:
            position[node] = len(path)
            path.append(node)
            node = next(d for d in planned[node].deps if d in stuck)
        if node in position:
            cycles.append(path[position[node]:])
        seen.update(path)
    return cycles


def check_file(path: str, overrides: list[str], catalog: Catalog,
               env: Mapping[str, str]) -> tuple[LoadedSpec, Plan]:
    """Load and check a spec file; every problem of both stages in one SpecError."""
    from flowhost.spec import load_spec

    return check_loaded(lambda: load_spec(path, overrides), catalog, env)


def check_text(text: str, file: str, overrides: list[str], catalog: Catalog,
               env: Mapping[str, str]) -> tuple[LoadedSpec, Plan]:
    """``check_file`` for a spec given as text; ``file`` is the name messages show."""
    from flowhost.spec import parse_spec

    return check_loaded(lambda: parse_spec(text, file, overrides), catalog, env)


def check_loaded(load: Callable[[], LoadedSpec], catalog: Catalog,
                 env: Mapping[str, str]) -> tuple[LoadedSpec, Plan]:
    """Load a spec with ``load`` and check it: the problems of the valid part of a spec
    that does not load are reported with those of loading, in one SpecError."""
    with paused_gc():
        return _check_loaded(load, catalog, env)


def _check_loaded(load: Callable[[], LoadedSpec], catalog: Catalog,
                  env: Mapping[str, str]) -> tuple[LoadedSpec, Plan]:
    try:
        spec = load()
    except SpecError as exc:
        if exc.partial is None:
            raise
        try:
            check(exc.partial, catalog, env, exc.known_ids)
        except SpecError as more:
            raise SpecError([*exc.problems, *more.problems]) from None
        raise
    return spec, check(spec, catalog, env)
