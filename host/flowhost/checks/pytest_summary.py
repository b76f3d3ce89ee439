"""The counts of a pytest summary line, for the ``test_results`` of a ``command`` check.

``test_results`` (from a pytest summary line in a ``command``'s output) follows pytest's JUnit
XML report: ``passed`` counts passed and xpassed tests, ``failed`` counts failed tests and
errors (``errors`` alone is kept too), ``skipped`` counts skipped and xfailed tests, and
``total = passed + failed + skipped``. Deselected tests, warnings, reruns and subtests are
not tests and are not counted.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ITEM = r"(?:no tests ran|\d+ [a-z]+(?: [a-z]+)?)"
_SUMMARY = re.compile(
    rf"^[= \t]*(?P<body>{_ITEM}(?:, {_ITEM})*) in \d+(?:\.\d+)?\s*s(?:econds)?\b[^=\n]*[= \t]*$",
    re.MULTILINE,
)
_COUNT = re.compile(r"(\d+) ([a-z]+(?: [a-z]+)?)")
_PYTEST_WORDS = frozenset(
    {"passed", "failed", "error", "errors", "skipped", "deselected", "xfailed", "xpassed"}
    | {"warning", "warnings", "rerun", "subtests passed", "subtests failed", "subtests skipped"}
)


def parse_pytest_summary(text: str) -> dict[str, int] | None:
    """The counts of the last pytest summary line in ``text`` (see the module doc), or None.

    Understands ``=== 3 failed, 21 passed, 1 skipped in 0.52s ===``, the ``-q`` form
    ``21 passed in 0.30s``, ``no tests ran``, errors, xfailed/xpassed and colored output.
    """
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    for match in reversed(list(_SUMMARY.finditer(text))):
        body = match["body"]
        counts: dict[str, int] = {}
        for number, word in _COUNT.findall(body):
            counts[word] = counts.get(word, 0) + int(number)
        if "no tests ran" not in body and not counts.keys() & _PYTEST_WORDS:
            continue  # "copied 3 files in 0.2s" is no pytest summary
        errors = counts.get("error", 0) + counts.get("errors", 0)
        passed = counts.get("passed", 0) + counts.get("xpassed", 0)
        failed = counts.get("failed", 0) + errors
        skipped = counts.get("skipped", 0) + counts.get("xfailed", 0)
        return {
            "total": passed + failed + skipped,
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "errors": errors,
        }
    return None
