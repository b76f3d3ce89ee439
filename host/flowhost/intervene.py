"""Level 3 of the ladder: who decides what happens to a step the ladder could not save.

``TerminalIntervener`` asks the person at the terminal (retry / skip / abort), one prompt at
a time, without stopping the branches of the run that can go on. ``PolicyIntervener``
answers for runs without a terminal (``--on-manual fail|abort|skip|wait``);
``QueuedIntervener`` lets a program answer (the Python API; the daemon's workers use
``flowhost.daemon.asking``). A step's ``manual.timeout`` bounds every wait for a person: then
its ``manual.default`` applies, decided by "timeout".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO

from flowhost.events import Decided

# A decision, or "wait": leave it to someone later (the run stops as waiting).
Choice = Decided | Literal["wait"]
Default = Literal["abort", "skip", "fail"]
BY_TIMEOUT = "timeout"  # who decided, when nobody answered within the step's manual.timeout


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    plugin: str
    attempt: int
    error_type: str
    message: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class InterventionRequest:
    step_id: str
    label: str  # "3/8: Setup caching"
    plugin: str
    error: str
    error_type: str
    hint: str | None
    attempts: tuple[AttemptSummary, ...]
    output_schema: dict[str, Any] = field(default_factory=dict)
    # The step's manual.timeout (None: no bound) and the default it brings, counted from
    # ``asked_at``: the time of the question's InterventionRequested (whose ``seq`` it is).
    timeout_s: float | None = None
    default: Default = "fail"
    asked_at: float = 0.0
    seq: int = 0

    @property
    def deadline(self) -> float | None:
        """When (unix time) the default applies, if nobody answers before."""
        return None if self.timeout_s is None else self.asked_at + self.timeout_s


@dataclass(frozen=True, slots=True)
class Resolution:
    """An answer. ``abort`` stops the whole run; ``fail`` fails the step only (its
    ``on_failure`` decides: ``--on-manual fail``, a ``manual.default``)."""

    action: Choice
    outputs: dict[str, Any] | None = None
    by: str = "user"
    comment: str = ""
    at: float | None = None  # when it was decided, if not as the ladder receives it


def timed_out(request: InterventionRequest) -> Resolution:
    """What applies once nobody answered ``request`` within its timeout (decided at the
    deadline, as any process applying it later records it)."""
    return Resolution(request.default, by=BY_TIMEOUT, at=request.deadline)


def seconds_left(request: InterventionRequest) -> float | None:
    """How long the question may still wait for a person (None: without a bound)."""
    deadline = request.deadline
    return None if deadline is None else max(deadline - time.time(), 0.0)


class Intervener(Protocol):
    async def resolve(self, request: InterventionRequest) -> Resolution: ...


Policy = Literal["fail", "abort", "skip", "wait"]


class PolicyIntervener:
    """No human at hand: the same answer every time. ``fail``: the step fails and its
    ``on_failure`` applies; ``abort``: the run stops, as when a person aborts it."""

    def __init__(self, action: Policy) -> None:
        self.action = action

    async def resolve(self, request: InterventionRequest) -> Resolution:
        return Resolution(self.action, by="policy")


class QueuedIntervener:
    """Questions wait until a program answers them (``flowhost.Run.resolve``), or until the
    step's ``manual.timeout`` is up (then its ``manual.default`` applies); meanwhile the
    other branches of the run go on."""

    def __init__(self) -> None:
        self.pending: dict[str, InterventionRequest] = {}
        self._answers: dict[str, asyncio.Future[Resolution]] = {}

    async def resolve(self, request: InterventionRequest) -> Resolution:
        answer: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        self.pending[request.step_id] = request
        self._answers[request.step_id] = answer
        try:
            # shielded: the timeout must not cancel the future an answer is set on
            return await asyncio.wait_for(asyncio.shield(answer), seconds_left(request))
        except TimeoutError:
            if answer.done():  # answered at the very moment the time was up: it counts
                return answer.result()
            return timed_out(request)
        finally:
            self.pending.pop(request.step_id, None)
            self._answers.pop(request.step_id, None)

    def answer(self, step_id: str, resolution: Resolution) -> None:
        """Answer the open question of ``step_id``; KeyError when there is none."""
        answer = self._answers[step_id]
        if not answer.done():
            answer.set_result(resolution)


def outputs_problem(outputs: Any, schema: dict[str, Any]) -> str | None:
    """Why ``outputs`` cannot stand in for the plugin's outputs (every reason at once: the
    missing fields with their types, then each wrong value), or None."""
    if not isinstance(outputs, dict):
        fields = output_fields(schema)
        return "outputs must be a JSON object" + (f" with {fields}" if fields else "")
    if not schema:
        return None
    import jsonschema

    missing: list[str] = []
    wrong: list[str] = []
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(outputs),
                        key=lambda e: list(map(str, e.absolute_path))):
        if error.validator == "required" and not error.absolute_path:
            # (one error per missing field, each naming the whole list)
            missing += [name for name in error.validator_value if isinstance(name, str)
                        and name not in outputs and name not in missing]
            continue
        where = ".".join(str(p) for p in error.absolute_path)
        wrong.append(f"{where + ': ' if where else ''}{error.message}")
    types = _field_types(schema)
    problems = []
    if missing:
        problems.append("missing " + ", ".join(
            f"{name} ({types[name]})" if types.get(name) else name for name in missing))
    problems += wrong
    return "; ".join(problems) if problems else None


def output_fields(schema: dict[str, Any]) -> str:
    """The fields of an output schema with their JSON types ("path (string, required), …")."""
    required = set(schema.get("required") or ())
    return ", ".join(f"{name} ({kind}{', required' if name in required else ''})"
                     for name, kind in _field_types(schema).items())


def _field_types(schema: dict[str, Any]) -> dict[str, str]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {str(name): _json_type(field) for name, field in properties.items()}


def _json_type(field: Any) -> str:
    if not isinstance(field, dict):
        return "any"
    kind = field.get("type")
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list):
        return " or ".join(map(str, kind))
    options = field.get("anyOf") or field.get("oneOf")
    if isinstance(options, list) and options:
        return " or ".join(_json_type(option) for option in options)
    return "object" if "$ref" in field else "any"


class TerminalIntervener:
    """Asks on the terminal. While a prompt is open, other branches keep running; their
    progress is held back (``hold``/``release``) so it does not overwrite the question. A
    step's ``manual.timeout`` bounds the prompt: then its ``manual.default`` applies."""

    def __init__(self, *, hold: Callable[[], None] = lambda: None,
                 release: Callable[[], None] = lambda: None,
                 read: Callable[[str], str] | None = None, out: TextIO | None = None) -> None:
        self._hold = hold
        self._release = release
        self._read = read or input
        self._out = out or sys.stdout
        self._lock = asyncio.Lock()
        self._aborted = False
        # A line being read for a prompt that gave up: the next prompt takes it over (a
        # second read would race the first for the person's next line).
        self._reading: concurrent.futures.Future[str] | None = None

    async def resolve(self, request: InterventionRequest) -> Resolution:
        async with self._lock:  # one question at a time
            if self._aborted:
                # The person aborted the run while this question waited its turn: the run
                # is stopping, and nobody should be asked about it again.
                raise asyncio.CancelledError("the run was aborted")
            self._hold()
            try:
                left = seconds_left(request)
                if left is not None and left <= 0:  # its time ran out while others asked
                    self._say(_describe(request))
                    resolution = self._gave_up(request)
                else:
                    try:
                        async with asyncio.timeout(left):
                            resolution = await self._ask(request)
                    except TimeoutError:
                        resolution = self._gave_up(request)
            finally:
                self._release()
            self._aborted = resolution.action == "abort"
            return resolution

    def _gave_up(self, request: InterventionRequest) -> Resolution:
        meaning = {"fail": "the step fails and its on_failure decides",
                   "skip": "the step is skipped", "abort": "the run stops"}[request.default]
        self._say(f"\n   No answer within {request.timeout_s:g}s: applying the step's "
                  f"manual.default, {request.default} ({meaning}).")
        return timed_out(request)

    async def _ask(self, request: InterventionRequest) -> Resolution:
        self._say(_describe(request))
        if request.timeout_s is not None:
            self._say(f"   (without an answer within {request.timeout_s:g}s of the question, "
                      f"{request.default} applies)")
        while True:
            answer = (await self._input("Choose [r]etry, [s]kip or [a]bort: ")).strip().lower()
            if answer in {"r", "retry"}:
                return Resolution("retry")
            if answer in {"a", "abort"}:
                return Resolution("abort")
            if answer in {"s", "skip"}:
                outputs = await self._outputs(request)
                if outputs != "back":
                    return Resolution("skip", outputs=outputs)
                continue
            self._say("Please answer r, s or a.")

    async def _outputs(
        self, request: InterventionRequest
    ) -> dict[str, Any] | Literal["back"] | None:
        """Outputs to stand in for the step (None: none), or "back" to choose again."""
        fields = output_fields(request.output_schema)
        if fields:
            self._say(f"   {request.plugin}'s outputs: {fields}")
        while True:
            text = (await self._input(
                "Outputs for the steps that depend on it, as JSON (Enter for none, "
                "'back' to choose again): ")).strip()
            if not text:
                return None
            if text == "back":
                return "back"
            try:
                outputs = json.loads(text)
            except json.JSONDecodeError as exc:
                self._say(f"Not valid JSON: {exc}")
                continue
            problem = outputs_problem(outputs, request.output_schema)
            if problem is None:
                assert isinstance(outputs, dict)
                return outputs
            self._say(f"These outputs do not fit {request.plugin}'s output schema: {problem}")

    async def _input(self, prompt: str) -> str:
        from flowhost.threads import shared_executor

        reading = self._reading
        if reading is not None and reading.done():
            # A line typed after its prompt gave up answered nothing: dropped.
            reading.exception()
            reading = None
        if reading is None:
            reading = self._reading = shared_executor().submit(self._read, prompt)
        else:  # the read still waiting prints no prompt of its own
            self._out.write(prompt)
            self._out.flush()
        try:
            # (a future of the thread, not of this event loop: `resume` asks in a new
            # loop per question)
            return await asyncio.shield(asyncio.wrap_future(reading))
        except EOFError:
            return "abort"  # the terminal closed: nobody will answer
        finally:
            if reading.done():
                self._reading = None

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def _describe(request: InterventionRequest) -> str:
    lines = [
        "",
        f"⚠️  Manual intervention required for step {request.label} ({request.plugin})",
        f"   Error: {request.error_type}: {request.error}",
    ]
    if request.attempts:
        lines.append("   Attempts:")
        # Numbered in order: each plugin's own count restarts (fallbacks, a retry decision).
        lines += [f"     {n}. {a.plugin}: {a.error_type}: {a.message} ({a.duration_s:.2f}s)"
                  for n, a in enumerate(request.attempts, 1)]
    lines.append(f"   Action: {request.hint}" if request.hint else
                 "   Action: review the error and fix it by hand")
    return "\n".join(lines)
