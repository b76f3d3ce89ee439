"""The Python API (CONTRACT §11): what programs, the CLI and the daemon use to run workflows.

This is the one layer that may look at the calling process (its current directory and
environment, as the defaults of ``workdir`` and ``env``); everything below gets a
``RunContext`` instead, so several runs go on in one process without seeing each other's
files or variables.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from flowhost.catalog import Catalog
from flowhost.config import HostConfig
from flowhost.context import RunContext, make_context
from flowhost.engine import new_run_id
from flowhost.events import Event, RunFinished, SpecReloaded
from flowhost.execution import Execution, Outcome, record_run
from flowhost.handle import Run
from flowhost.intervene import Intervener, PolicyIntervener, QueuedIntervener
from flowhost.observers import Observer
from flowhost.plan import Plan
from flowhost.problems import Problem, SpecError, UserInputError
from flowhost.questions import settle
from flowhost.result import RunResult, fold
from flowhost.spec_loading import LoadedSpec
from flowhost.static import check_file, check_text
from flowhost.store import RunRecord, Store, read
from flowhost.store.checkpoint import Checkpoint
from flowhost.store.interface import Lease, StateStore
from flowhost.threads import run_main

OnManual = Literal["fail", "abort", "skip", "wait", "ask"]
PathLike = str | os.PathLike[str]
# ``["step.field=value", ...]`` as ``--set`` takes them, or ``{"step.field": value}``.
Overrides = Sequence[str] | Mapping[str, Any]


def as_overrides(given: Overrides) -> list[str]:
    """``--set`` texts; a mapping's values are written as JSON, so each keeps its type (the
    text "007" stays text, 3 stays a number)."""
    if isinstance(given, Mapping):
        return [f"{target}={json.dumps(value)}" for target, value in given.items()]
    if isinstance(given, str):
        return [given]
    return list(given)


def state_dir_of(store: str | None, state_dir: PathLike | None) -> PathLike | None:
    """Where the state is, as ``make_context(state_dir=…)`` takes it: ``store`` (a URL:
    ``sqlite:///PATH`` is ``state_dir=PATH``; ``postgresql://…``) or ``state_dir``."""
    if store is None:
        return state_dir
    if state_dir is not None:
        raise UserInputError("give the store or the state dir, not both")
    return store


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checked:
    """A spec that passed every static check: its plan, and its text and path as run."""

    spec: LoadedSpec
    plan: Plan
    text: str
    path: str  # absolute, or the name given with the text


def check_spec(spec: PathLike, ctx: RunContext, *, spec_name: str | None = None,
               overrides: Overrides = (), remember: bool = True) -> Checked:
    """Load and check ``spec`` (a path, or with ``spec_name`` the spec's text) for a run in
    ``ctx``; raises ``SpecError`` with every problem. Remote plugins that answer have their
    schemas kept in the state dir (``remember=False``: only if it exists already), so a
    later run can be checked while they are down."""
    catalog = Catalog.for_context(ctx, remember=remember)
    if spec_name is not None:
        text = os.fspath(spec)
        loaded, plan = check_text(text, spec_name, as_overrides(overrides), catalog, ctx.env)
        return Checked(loaded, plan, text, spec_name)
    path = os.fspath(spec)
    loaded, plan = check_file(path, as_overrides(overrides), catalog, ctx.env)
    try:  # the text as it was checked moments ago, kept with the run for resume
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read the spec again: {exc}") from None
    return Checked(loaded, plan, text, str(Path(path).absolute()))


def validate(spec: PathLike, *, spec_name: str | None = None, overrides: Overrides = (),
             workdir: PathLike | None = None, env: Mapping[str, str] | None = None,
             config: HostConfig | None = None) -> list[Problem]:
    """Every problem of ``spec`` (each with ``.file .line .step .field .message``); [] when
    it is valid."""
    ctx = make_context(workdir=workdir, env=env, config=config)
    try:
        check_spec(spec, ctx, spec_name=spec_name, overrides=overrides, remember=False)
    except SpecError as exc:
        return list(exc.problems)
    return []


def intervener_for(on_manual: OnManual | Intervener) -> Intervener:
    if not isinstance(on_manual, str):
        return on_manual
    if on_manual == "ask":
        return QueuedIntervener()
    if on_manual not in ("fail", "abort", "skip", "wait"):
        raise UserInputError(f"on_manual={on_manual!r}: choose fail, abort, skip, wait or ask")
    return PolicyIntervener(on_manual)


async def prepare_run(spec: PathLike, *, spec_name: str | None = None,
                      workdir: PathLike | None = None, env: Mapping[str, str] | None = None,
                      overrides: Overrides = (), state_dir: PathLike | None = None,
                      store: str | None = None,
                      config: HostConfig | None = None,
                      on_manual: OnManual | Intervener = "fail", max_parallel: int = 8,
                      use_cache: bool = True, report: Callable[[str], None] | None = None,
                      context: RunContext | None = None, checked: Checked | None = None) -> Run:
    """Check ``spec`` and record a new run, without starting it: ``Run.observe`` what you
    want to watch, then ``Run.start()``. ``start_run`` does both."""
    ctx = context or make_context(workdir=workdir, env=env, config=config,
                                  state_dir=state_dir_of(store, state_dir))
    if checked is None:
        checked = await _off_loop(check_spec, spec, ctx, spec_name=spec_name,
                                  overrides=overrides)
    if max_parallel < 1:
        raise UserInputError(f"max_parallel must be at least 1, got {max_parallel}")
    intervener = intervener_for(on_manual)
    state = open_store(ctx)
    try:
        record = record_run(state, ctx, checked.plan, checked.text, checked.path,
                            new_run_id(), as_overrides(overrides))
        lease = state.acquire(record, ctx.owner)
    except BaseException:
        state.close()
        raise
    assert lease is not None  # a run recorded a moment ago has no other owner
    execution = Execution(ctx, checked.plan, state, record, lease, intervener=intervener,
                          max_parallel=max_parallel, use_cache=use_cache,
                          report=report or _stderr)
    return Run(record.run_id, record.workflow_id, execution=execution)


async def start_run(spec: PathLike, *, observers: Sequence[Observer] = (),
                    **options: Any) -> Run:
    """Check ``spec``, record a new run and start it; the ``Run`` says its id at once.

    Options as for ``prepare_run``: ``workdir`` (relative paths of the run resolve there;
    default: the current directory), ``env`` (what ``${env.X}`` and ``${secret.X}`` may
    read; default: ``os.environ``), ``overrides`` (``"step.field=value"``, as ``--set``),
    ``state_dir`` (default ``.flowhost`` in ``workdir``), ``on_manual`` (who answers level
    3 of the ladder: ``fail``, ``abort``, ``skip``, ``wait``, or ``ask``: questions wait
    for ``Run.resolve``), ``max_parallel``, ``use_cache``. ``observers`` see every event as
    it is committed; one that raises is detached and reported, the run goes on."""
    run = await prepare_run(spec, **options)
    for observer in observers:
        run.observe(observer)
    run.start()
    return run


def run_workflow(spec: PathLike, **options: Any) -> RunResult:
    """``start_run`` and wait for the result, from code that is not async (it may be
    called from several threads at once; inside a running event loop it runs on a thread
    of its own)."""
    results: list[RunResult] = []

    async def whole() -> None:
        # The result goes out through ``results``, not as the task's value: asyncio.run
        # formats a finished task's repr on the way out, and a big result's costs ~10 ms.
        results.append(await (await start_run(spec, **options)).result())

    _blocking(whole)
    return results[0]


# -- the runs of a state dir ---------------------------------------------------------------

def open_store(ctx: RunContext, *, create: bool = True) -> StateStore:
    """The state store of ``ctx``: PostgreSQL at its store URL, or SQLite in its state
    dir (``create=False``: only one that holds runs already)."""
    if ctx.store_url is not None:
        from flowhost.store.postgres import PostgresStore

        return PostgresStore.open(ctx.store_url, busy_timeout=ctx.busy_timeout, create=create)
    return Store.open(ctx.state_dir, busy_timeout=ctx.busy_timeout, create=create)


def pick_run(store: StateStore, run_id: str | None) -> RunRecord:
    """The run ``run_id``, or the newest unfinished one no process runs."""
    if run_id:
        return store.run(run_id)
    record = store.latest_resumable()
    if record is None:
        busy = next(iter(store.runs(statuses=("running", "interrupted", "waiting"),
                                    limit=1)), None)
        if busy is not None and store.owned(busy):
            raise UserInputError(f"run {busy.run_id} is being run by another process (pid "
                                 f"{busy.pid}); wait for it to end, or stop it, then resume")
        raise UserInputError(f"no unfinished run to resume in {store.path}. `flowhost runs "
                             "list` shows the runs of this state dir (--state-dir picks "
                             "another)")
    return record


@dataclass(slots=True)
class Stored:
    """A run as its state dir holds it, for ``resume`` to look at before it goes on."""

    store: StateStore
    record: RunRecord
    lease: Lease
    events: list[Event]
    point: Checkpoint
    ctx: RunContext  # in the run's own working directory


def take_run(run_id: str | None, *, env: Mapping[str, str] | None = None,
             state_dir: PathLike | None = None, workdir: PathLike | None = None,
             config: HostConfig | None = None, reopen: bool = False) -> Stored:
    """Open the state dir and take ownership of a run (refused while another process has
    it), for ``resume_run``; the caller closes ``store`` unless it resumes. ``reopen``: a
    run that failed or was aborted may be taken too (``reload_spec`` goes on with it)."""
    where = make_context(workdir=workdir, env=env, state_dir=state_dir, config=config)
    store = open_store(where, create=False)
    try:
        record = pick_run(store, run_id)
        lease = store.acquire(record, where.owner)
        if lease is None:
            raise UserInputError(
                f"run {record.run_id} is being run by another process (pid {record.pid}); "
                "wait for it to end, or stop it, then resume")
        # answers recorded while another process had it, and defaults whose time is up
        events = settle(store, record, store.events(record))
        point = read(events)
        if point.done and not (reopen and point.status in REOPENABLE):
            store.release(lease)
            again = (f"; once the spec is fixed, `flowhost resume {record.run_id} "
                     "--reload-spec` runs what did not succeed"
                     if point.status in REOPENABLE else "")
            raise UserInputError(
                f"run {record.run_id} already finished ({point.status}): nothing to resume. "
                f"`flowhost runs show {record.run_id}` shows its result{again}")
        ctx = make_context(workdir=record.cwd, env=where.env, state_dir=where.location,
                           config=config)
    except BaseException:
        store.close()
        raise
    return Stored(store, record, lease, events, point, ctx)


REOPENABLE = frozenset({"failed", "aborted"})  # ended, but worth going on once fixed


def reload_spec(stored: Stored) -> tuple[Plan, SpecReloaded]:
    """Let ``stored`` go on with its edited spec file (checked first: a spec that does not
    check changes nothing): the spec is recorded with the run, and the results it takes
    back — changed steps, what depends on them, what had not succeeded in a run that had
    ended — are journaled as a ``SpecReloaded``, so those steps run again."""
    from flowhost import resumption
    from flowhost.execution import secret_values
    from flowhost.redact import Redactor

    ended = stored.point.done
    plan, text, reloaded = resumption.reload_plan(stored.record, stored.ctx, stored.point,
                                                  ended)
    secrets = list(secret_values(plan, stored.ctx.env).values())
    masked = Redactor(secrets).text(text) if secrets else text
    store = stored.store
    if masked == stored.record.spec_text and not (reloaded.rerun or reloaded.removed):
        return plan, reloaded  # the file is the spec the run has: nothing to record
    stored.record = store.replace_spec(stored.record, spec_text=masked,
                                       spec_redacted=masked != text,
                                       total_steps=len(plan.steps))
    store.append(stored.record, [reloaded])
    stored.events = store.events(stored.record)
    stored.point = read(stored.events)
    return plan, reloaded


async def resume_run(run_id: str | None = None, *, observers: Sequence[Observer] = (),
                     **options: Any) -> Run:
    """Continue an interrupted or waiting run from its checkpoints (the newest unfinished
    one without ``run_id``): finished steps never run again, steps in flight run again,
    decisions given meanwhile apply. A run still waiting for a decision, or aborted by
    one, comes back as a ``Run`` that is already done. Options as for ``prepare_resume``."""
    run = await prepare_resume(run_id, **options)
    for observer in observers:
        run.observe(observer)
    run.start()
    return run


async def prepare_resume(run_id: str | None = None, *, env: Mapping[str, str] | None = None,
                         state_dir: PathLike | None = None, workdir: PathLike | None = None,
                         config: HostConfig | None = None,
                         on_manual: OnManual | Intervener = "fail", max_parallel: int = 8,
                         use_cache: bool = True, report: Callable[[str], None] | None = None,
                         stored: Stored | None = None, plan: Plan | None = None) -> Run:
    """``resume_run`` without starting it (observe it first, then ``Run.start()``)."""
    from flowhost import resumption

    if stored is None:  # (in this thread: the store's connection belongs to it)
        stored = take_run(run_id, env=env, state_dir=state_dir, workdir=workdir,
                          config=config)
    store, record, point = stored.store, stored.record, stored.point
    try:
        if plan is None:
            plan = await _off_loop(resumption.load_run_plan, record, stored.ctx)
        pattern = plan.workflow.pattern
        if point.waiting:
            park(stored)
            return _finished(stored, "waiting", fold(stored.events, pattern=pattern),
                             stored.events)
        abort = resumption.abort_decision(point, plan)
        if abort is not None:
            ended = resumption.abort_events(record, plan, point, abort)
            store.append(record, ended)
            everything = [*stored.events, *ended]
            how: Literal["aborted", "failed"] = (
                "aborted" if abort.action == "abort" else "failed")
            return _finished(stored, how, fold(everything, pattern=pattern), everything,
                             note=f"Run {record.run_id} {how} at step '{abort.step_id}', "
                             f"as decided by {abort.by}.")
        going_on = resumption.continuation(record, plan, point, stored.events)
        if going_on.decided:
            store.append(record, going_on.decided)
        execution = Execution(stored.ctx, plan, store, record, stored.lease,
                              intervener=intervener_for(on_manual), max_parallel=max_parallel,
                              use_cache=use_cache, report=report or _stderr,
                              earlier=going_on.earlier)
    except BaseException:
        store.release(stored.lease)
        store.close()
        raise
    return Run(record.run_id, record.workflow_id, execution=execution,
               note=going_on.summary(record, plan))


def park(stored: Stored) -> None:
    """Record that a run with open questions waits for them (its process may have died
    while it asked): the state dir then says ``waiting``, as a run that stopped to wait."""
    if stored.point.waiting and stored.point.status != "waiting":
        record = stored.record
        parked = RunFinished(run_id=record.run_id, status="waiting", duration_s=0.0,
                             workflow_id=record.workflow_id)
        stored.store.append(record, [parked])
        stored.events = [*stored.events, parked]
        stored.point = read(stored.events)


def _finished(stored: Stored, status: Literal["waiting", "aborted", "failed"],
              result: RunResult, events: Sequence[Event], note: str | None = None) -> Run:
    stored.store.release(stored.lease)
    stored.store.close()
    return Run(stored.record.run_id, stored.record.workflow_id,
               done=Outcome(status, result, None, events), note=note)


# -- plumbing --------------------------------------------------------------------------------

async def _off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Blocking work (importing plugins, asking remote ones for their schemas) off the
    event loop, so that other runs of the same loop go on meanwhile."""
    return await asyncio.to_thread(function, *args, **kwargs)


def _blocking(whole: Callable[[], Coroutine[Any, Any, None]]) -> None:
    # run_main: a plugin's asyncio.to_thread that never returns must not keep the caller
    # waiting after the run ended (asyncio.run waits for every thread of its executor)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run_main(whole())
        return
    with ThreadPoolExecutor(1, thread_name_prefix="flowhost-run") as pool:
        pool.submit(run_main, whole()).result()


def _stderr(message: str) -> None:
    import sys

    print(f"flowhost: {message}", file=sys.stderr, flush=True)
