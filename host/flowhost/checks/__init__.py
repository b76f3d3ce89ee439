"""The validation check kinds of a step's ``validation`` and the workflow's ``final_validation``.

A check in the spec is a one-key mapping ``{kind: args}``. The built-in kinds are
``files_exist``, ``python_syntax``, ``importable``, ``http_ok``, ``command`` and ``output``;
more come from the entry-point group ``flowhost.validators`` (the entry point's name is the
kind, its object a class implementing :class:`Check`). Entry points are listed from metadata
alone and imported only when a spec uses their kind; a built-in name always wins.

``parse_check_args`` validates args statically (``flowhost validate``), when string values
may still hold unresolved ``${...}`` references, so paths and urls are plain ``str`` fields.
``run_check`` never raises for a failing check: a bad kind or args, a broken validator or a
crash inside a check all come back as ``CheckResult(passed=False, ...)``, with every message
and detail string passed through ``CheckContext.redact``.

``test_results`` (the counts of a pytest summary in a ``command``'s output) are explained in
``flowhost.checks.pytest_summary``. One module per job: ``base`` (context, protocol, errors),
``registry`` (kind → check, entry points), ``running`` (args validation, ``run_check``),
``files``, ``process``, ``http``, ``output`` (the built-in kinds) and ``pytest_summary``.
"""

from flowhost.checks.base import (
    ENTRY_POINT_GROUP,
    Check,
    CheckArgsError,
    CheckContext,
    CheckError,
    CheckLoadError,
    UnknownCheckKind,
)
from flowhost.checks.files import FilesExistArgs, PythonSyntaxArgs
from flowhost.checks.formatting import OUTPUT_TAIL_LINES
from flowhost.checks.http import HttpOkArgs
from flowhost.checks.output import JsonType, OutputArgs
from flowhost.checks.process import CommandArgs, ImportableArgs
from flowhost.checks.pytest_summary import parse_pytest_summary
from flowhost.checks.registry import get_check, known_kinds
from flowhost.checks.running import parse_check_args, run_check

__all__ = [
    "ENTRY_POINT_GROUP",
    "OUTPUT_TAIL_LINES",
    "Check",
    "CheckArgsError",
    "CheckContext",
    "CheckError",
    "CheckLoadError",
    "CommandArgs",
    "FilesExistArgs",
    "HttpOkArgs",
    "ImportableArgs",
    "JsonType",
    "OutputArgs",
    "PythonSyntaxArgs",
    "UnknownCheckKind",
    "get_check",
    "known_kinds",
    "parse_check_args",
    "parse_pytest_summary",
    "run_check",
]
