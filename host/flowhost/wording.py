"""Small helpers for the words flowhost prints, shared by views that must stay light."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 check``, ``2 checks``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
