"""A checked workflow, ready to run: compiled references, dependencies, order and groups."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowhost.invokers import Invoker
from flowhost.redact import Redactor
from flowhost.refs import Compiled
from flowhost.spec import Fallback, RetryPolicy, Step, Workflow


@dataclass(slots=True)
class PlannedCheck:
    kind: str
    args: Compiled


@dataclass(slots=True)
class PlannedFallback:
    spec: Fallback
    inputs: Compiled | None  # None: the primary's inputs, as far as the fallback takes them
    invoker: Invoker


@dataclass(slots=True)
class PlannedStep:
    id: str
    step: Step
    index: int  # 1-based, in display order
    invoker: Invoker
    inputs: Compiled
    deps: tuple[str, ...]
    retry: RetryPolicy
    timeout: float | None
    cache: bool
    fallbacks: list[PlannedFallback] = field(default_factory=list)
    checks: list[PlannedCheck] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    level: int = 0


@dataclass(slots=True)
class Plan:
    workflow: Workflow
    steps: dict[str, PlannedStep]  # in display order
    levels: list[list[str]]  # groups that can run in parallel, in execution order
    final_checks: list[PlannedCheck]
    secret_names: frozenset[str]
    # values masked like secrets though no reference names them: the daemon's own tokens
    masked: tuple[str, ...] = ()

    def redactor(self, env: dict[str, str]) -> Redactor:
        return Redactor([*(env[name] for name in self.secret_names if name in env),
                         *self.masked])
