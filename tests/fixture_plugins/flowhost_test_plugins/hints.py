"""A third-party hint rule, published in the entry-point group ``flowhost.hints``."""

from __future__ import annotations


def quota_hint(error_type: str, message: str) -> str | None:
    if "quota exceeded" in message.lower():
        return "Raise the quota: fixturectl quota --increase"
    return None
