"""Observers of a run (the progress view, a program's callback, later metrics and streams)
see its events but cannot break it: one that raises is reported once and detached, and the
run goes on. Only the checkpoint is a dependency of the run; everything else watches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from flowhost.events import Event

Observer = Callable[[Event], None]


class Guarded:
    """``observer``, called until it first raises; then ``report`` is told, once."""

    __slots__ = ("_observer", "_report", "detached")

    def __init__(self, observer: Observer, report: Callable[[str], None]) -> None:
        self._observer: Observer | None = observer
        self._report = report
        self.detached: str | None = None  # why, once it is

    def __call__(self, event: Event) -> None:
        observer = self._observer
        if observer is None:
            return
        try:
            observer(event)
        except Exception as exc:
            self._observer = None
            name = getattr(observer, "__qualname__", None) or type(observer).__name__
            self.detached = (f"observer {name} failed on {type(event).__name__} and was "
                             f"detached ({type(exc).__name__}: {exc}); the run goes on")
            with contextlib.suppress(Exception):  # nowhere left to say it: the run goes on
                self._report(self.detached)
