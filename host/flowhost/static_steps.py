"""The static checks of a step's own parts: its inputs against its plugin's input schema,
its fallbacks' inputs, its ``needs`` and its validation checks, each problem said where it
is in the spec. ``flowhost.static.check`` asks them of every step in turn, and a chain has
thousands of steps: hence the shortcuts (``_known_fit``) and the empty lists not looped over.
"""

from __future__ import annotations

from typing import Any

from flowhost import schema as js
from flowhost.invokers import Invoker
from flowhost.plan import PlannedCheck, PlannedFallback
from flowhost.problems import did_you_mean
from flowhost.refs import CDict, Compiled, Const, Ref, iter_refs
from flowhost.source import PathKey
from flowhost.spec import CheckSpec, Step
from flowhost.static_references import ReferenceChecker


class StepChecker(ReferenceChecker):
    """Checks the parts of one step at a time, on top of the references and plugins of
    ``ReferenceChecker``; what ``flowhost.static.check`` runs."""

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


def _dotted(base: str, where: PathKey) -> str:
    return ".".join([base, *(str(p) for p in where)])
