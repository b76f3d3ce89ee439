"""The ``Plugin`` base class and the ``InvocationContext`` a plugin receives on every call."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel

ProgressCallback = Callable[[float, str], None]


class InvocationContext:
    """What a plugin knows about the call it is serving.

    ``deadline`` is a ``time.monotonic()`` instant (or None): past it the host gives up on
    this attempt. A sync plugin that loops for long should poll ``cancelled`` or
    ``time_remaining()`` and stop early, since a thread cannot be interrupted from outside.

    ``workdir`` is the run's working directory, an absolute path: resolve relative paths
    against it, never against the process's current directory (several runs share one
    process). Served remotely, it is the server's own directory.

    ``attempt`` counts every attempt of the step, 1-based: across the primary plugin, its
    fallbacks and a person's retries, the number the progress view, the prompt and the
    result show. ``plugin_attempt`` is the attempt within this plugin's own retry budget
    (1 on a fallback's first try); it equals ``attempt`` until a fallback or a person's
    retry makes them differ.
    """

    __slots__ = ("_cancelled", "_logger", "_on_progress", "attempt", "deadline",
                 "plugin_attempt", "run_id", "step_id", "workdir")

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        attempt: int = 1,
        plugin_attempt: int | None = None,
        deadline: float | None = None,
        logger: logging.Logger | None = None,
        on_progress: ProgressCallback | None = None,
        workdir: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.attempt = attempt
        self.plugin_attempt = attempt if plugin_attempt is None else plugin_attempt
        self.deadline = deadline
        self.workdir = workdir if workdir is not None else os.getcwd()
        self._logger = logger
        self._on_progress = on_progress
        self._cancelled = False

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the step (created on first use: most plugins never log)."""
        if self._logger is None:
            self._logger = logging.getLogger(f"flowhost.plugin.{self.step_id}")
        return self._logger

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the call is, from 0.0 to 1.0, with an optional status message."""
        if self._on_progress is not None:
            self._on_progress(min(max(float(fraction), 0.0), 1.0), message)

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline, or None when the call has none."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 0.0)

    @property
    def cancelled(self) -> bool:
        """True once the host has given up on this call (timeout, Ctrl-C, run aborted)."""
        return self._cancelled

    def cancel(self) -> None:
        """Called by the host; plugins only read ``cancelled``."""
        self._cancelled = True  # a plain flag: reads and writes of it are atomic


class Plugin:
    """Subclass this, set ``name``, ``version``, ``Inputs``, ``Outputs``, and write ``invoke``.

    ``invoke`` may be a plain or an ``async`` method. It returns an ``Outputs`` instance (a
    plain dict that fits ``Outputs`` is accepted too).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.0.0"
    description: ClassVar[str] = ""
    idempotent: ClassVar[bool] = False
    Inputs: ClassVar[type[BaseModel]]
    Outputs: ClassVar[type[BaseModel]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Abstract intermediate bases may leave these out; concrete plugins are checked by
        # the host (and by flowhost_sdk.check_plugin_class) before use.
        if not cls.description and cls.__doc__:
            cls.description = cls.__doc__.strip().splitlines()[0]

    def invoke(self, inputs: Any, ctx: InvocationContext) -> BaseModel | Awaitable[BaseModel]:
        raise NotImplementedError(f"plugin {type(self).__name__} does not implement invoke()")

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        return cls.Inputs.model_json_schema()

    @classmethod
    def output_schema(cls) -> dict[str, Any]:
        return cls.Outputs.model_json_schema()


def check_plugin_class(obj: object) -> list[str]:
    """Every reason ``obj`` is not a usable plugin class; an empty list means it is one."""
    if not isinstance(obj, type) or not issubclass(obj, Plugin):
        return [f"{obj!r} is not a subclass of flowhost_sdk.Plugin"]
    problems: list[str] = []
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("class attribute `name` must be a non-empty string")
    for attr in ("Inputs", "Outputs"):
        model = getattr(obj, attr, None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            problems.append(f"class attribute `{attr}` must be a pydantic BaseModel subclass")
    if obj.invoke is Plugin.invoke:
        problems.append("method `invoke(self, inputs, ctx)` is not implemented")
    if not isinstance(obj.version, str):
        problems.append("class attribute `version` must be a string")
    return problems
