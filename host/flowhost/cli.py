"""The ``flowhost`` command: parse flags, call the library, map outcomes to exit codes.

Imports are deferred into each command so that ``flowhost --help`` stays fast.
Exit codes: 0 success, 1 the workflow failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flowhost",
        description="Run workflows of plugin steps with validation, recovery and live progress.",
    )
    parser.add_argument("--version", action="version", version=f"flowhost {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser("run", help="run a workflow with live progress")
    run.add_argument("file", metavar="FILE", help="workflow spec (YAML or JSON)")
    _add_set(run)
    run.add_argument("--json-out", metavar="F", help="write the result JSON to file F")
    run.add_argument("--max-parallel", metavar="N", type=_positive_int, default=8,
                     help="run at most N steps at once (default 8)")
    run.add_argument("--no-progress", action="store_true",
                     help="plain log lines instead of the live view")
    run.add_argument("--on-manual", choices=("abort", "skip", "wait"), default=None,
                     help="when a step needs a human and none is at a terminal: abort (the "
                     "step fails; default), skip it, or wait (exit 3; answer with "
                     "`flowhost runs resolve`). On a terminal flowhost asks instead")

    validate = commands.add_parser("validate", help="check a workflow without running it")
    validate.add_argument("file", metavar="FILE")
    _add_set(validate)

    plan = commands.add_parser("plan", help="show the execution order and parallel groups")
    plan.add_argument("file", metavar="FILE")
    _add_set(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    plugins = commands.add_parser("plugins", help="list and describe installed plugins")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND",
                                             parser_class=_Parser)
    plugin_commands.required = True
    listing = plugin_commands.add_parser("list", help="installed plugins, from metadata only")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--check", action="store_true",
                         help="import every plugin and report the broken ones")
    describe = plugin_commands.add_parser("describe", help="a plugin's input/output schemas")
    describe.add_argument("name", metavar="NAME")
    describe.add_argument("--json", action="store_true")
    return parser


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", metavar="ID.FIELD=VALUE", action="append", default=[],
                        dest="overrides",
                        help="override one step input (value parsed as YAML); repeatable")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowhost")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flowhost.problems import UserInputError

    try:
        if args.command == "run":
            from flowhost.commands.run import run_command

            return run_command(args)
        if args.command == "validate":
            from flowhost.commands.inspect import validate_command

            return validate_command(args)
        if args.command == "plan":
            from flowhost.commands.inspect import plan_command

            return plan_command(args)
        from flowhost.commands.plugins import describe_command, list_command

        return list_command(args) if args.plugins_command == "list" else describe_command(args)
    except UserInputError as exc:
        print(f"flowhost: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("flowhost: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get("FLOWHOST_DEBUG"):
            raise
        print(f"flowhost: internal error: {type(exc).__name__}: {exc}\n"
              "Set FLOWHOST_DEBUG=1 to see the traceback, and please report it.",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
