"""Short, readable check messages: shortened text, plurals, listings, output tails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OUTPUT_TAIL_LINES = 40


def short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listing(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return short(lines[-1].strip()) if lines else ""


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, redact) for v in value]
    return value
