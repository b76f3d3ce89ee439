"""Every check that can be made before the first step runs, reported all at once.

Unknown plugins and steps (with "did you mean"), unknown output fields (against the
producer's output schema), types the consumer's input schema rejects, missing required
inputs, unset environment variables, check kinds and arguments, and cycles. All passes are
linear in the size of the spec; suggestions are computed only for errors.

A remote plugin whose server does not answer is checked against the schemas it reported
last time, with a warning; when none are known, its step may still use it if another of
its plugins (the primary, a fallback) can be checked: what cannot be is named in a
warning. Warnings are logged (``flowhost.static``) and kept in ``Catalog.warnings``.

``check`` goes through the steps and builds the plan; the checks of a step are in
``flowhost.static_steps``, those of references and plugins in ``flowhost.static_references``,
and the step graph (levels, cycles) in ``flowhost.static_graph``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from flowhost.catalog import Catalog
from flowhost.plan import Plan, PlannedStep
from flowhost.problems import Problem, SpecError
from flowhost.redact import Redactor
from flowhost.source import PathKey, paused_gc
from flowhost.spec_loading import LoadedSpec
from flowhost.static_graph import ref_roots, step_levels
from flowhost.static_steps import StepChecker


def check(spec: LoadedSpec, catalog: Catalog, env: Mapping[str, str],
          known_ids: frozenset[str] = frozenset()) -> Plan:
    """Check ``spec`` completely and return its plan; raise SpecError with every problem."""
    checker = StepChecker(spec, catalog, env, known_ids)
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
        ref_roots(inputs, roots)
        for planned_fallback in fallbacks:
            if planned_fallback.inputs is not None:
                ref_roots(planned_fallback.inputs, roots)
        for planned_check in checks:
            ref_roots(planned_check.args, roots)
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
    levels = step_levels(planned, checker)
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


def check_file(path: str, overrides: list[str], catalog: Catalog,
               env: Mapping[str, str]) -> tuple[LoadedSpec, Plan]:
    """Load and check a spec file; every problem of both stages in one SpecError."""
    from flowhost.spec_loading import load_spec

    return check_loaded(lambda: load_spec(path, overrides), catalog, env)


def check_text(text: str, file: str, overrides: list[str], catalog: Catalog,
               env: Mapping[str, str]) -> tuple[LoadedSpec, Plan]:
    """``check_file`` for a spec given as text; ``file`` is the name messages show."""
    from flowhost.spec_loading import parse_spec

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
