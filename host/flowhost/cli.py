"""The ``flowhost`` command: parse flags, call the library, map outcomes to exit codes.

Imports are deferred into each command so that ``flowhost --help`` stays fast.
Exit codes: 0 success, 1 the workflow failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # `--flag=--` is the value "--", as in Python 3.12.3+ (CPython gh-109475); 3.11
        # drops it as if it ended the options, and the flag's value becomes an empty list.
        if arg_strings == ["--"] and action.option_strings and action.nargs is None:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


class _VersionAction(argparse.Action):
    """``--version``; the installed version is looked up only when asked for, because reading
    the distributions' metadata costs every other command tens of milliseconds."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS,
                 help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"flowhost {_version()}")
        parser.exit()


def _positive_int(text: str) -> int:
    from flowhost.problems import quote_name

    digits = text.strip().lstrip("+")
    if digits.isascii() and digits.isdigit() and len(digits.lstrip("0")) > _MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{quote_name(text)} is too large")
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote_name(text)} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


_MAX_DIGITS = 18  # 10**18 is below SQLite's largest integer, 2**63 - 1
MAX_LIMIT = 10**18


def _run_limit(text: str) -> int:
    """``--limit N``: at most N runs, so an N larger than any state dir holds means all."""
    digits = text.strip().lstrip("+")
    if digits.isascii() and digits.isdigit() and len(digits.lstrip("0")) > _MAX_DIGITS:
        return MAX_LIMIT
    return min(_positive_int(text), MAX_LIMIT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flowhost",
        description="Run workflows of plugin steps with validation, recovery and live progress.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser("run", help="run a workflow with live progress",
                              description="Run the workflow FILE: each step's plugin, its "
                              "checks and the recovery ladder,\nwith live progress; every "
                              "step is checkpointed in the state dir.",
                              epilog=_RUN_EXIT_CODES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("file", metavar="FILE", help="workflow spec (YAML or JSON)")
    _add_set(run)
    _add_run_flags(run, on_manual="when a step needs a human and none is at a terminal: "
                   "fail (the default: the step fails, its on_failure decides), abort (the "
                   "run stops, status aborted, as when a person aborts), skip the step, or "
                   "wait (exit 3; answer with `flowhost runs resolve`). On a terminal "
                   "flowhost asks instead")

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
                         help="import every plugin (call every remote one) and report the "
                         "broken ones")
    describe = plugin_commands.add_parser("describe", help="a plugin's input/output schemas")
    describe.add_argument("name", metavar="NAME")
    describe.add_argument("--json", action="store_true")
    _add_durable_commands(commands)
    from flowhost.commands.serve import add_serve

    add_serve(commands, _positive_int)
    return parser


_RUN_EXIT_CODES = """exit codes:
  0    success (also when steps failed under on_failure: continue or were skipped;
       the end of the output names them)
  1    failed, aborted or cancelled; or the state store failed
  2    bad input: the spec, a flag, a plugin that cannot be found; nothing ran
  3    waiting: a step waits for a person (flowhost runs resolve, then flowhost resume)
  130  interrupted (Ctrl-C, SIGTERM): resumable with flowhost resume"""


def _add_run_flags(parser: argparse.ArgumentParser, *, on_manual: str) -> None:
    """The flags ``run`` and ``resume`` share: how a run is carried out and reported."""
    parser.add_argument("--json-out", metavar="F", help="write the result JSON to file F")
    parser.add_argument("--max-parallel", metavar="N", type=_positive_int, default=8,
                        help="run at most N steps at once (default 8)")
    parser.add_argument("--no-progress", action="store_true",
                        help="plain log lines instead of the live view")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show more: the whole traceback of a plugin's unexpected error")
    parser.add_argument("--on-manual", choices=("fail", "abort", "skip", "wait"), default=None,
                        help=on_manual)
    parser.add_argument("--metrics-listen", metavar="H:P", default=None,
                        help="serve Prometheus metrics on http://H:P/metrics (and /healthz, "
                        "/readyz) until the run ends; port 0 picks a free port")
    parser.add_argument("--pushgateway", metavar="URL", default=None,
                        help="push the run's metrics to this Prometheus Pushgateway when it "
                        "ends (job flowhost, grouped by workflow)")
    _add_state(parser, cache=True)


def _add_state(parser: argparse.ArgumentParser, *, cache: bool = False) -> None:
    parser.add_argument("--state-dir", metavar="D", default=None,
                        help="state directory: checkpoints, run history, cache (default "
                        "$FLOWHOST_STORE, $FLOWHOST_STATE_DIR or ./.flowhost)")
    parser.add_argument("--store", metavar="URL", default=None, dest="state_store",
                        help="the state store as a URL instead: sqlite:///PATH/TO/DIR, or "
                        "postgresql://USER@HOST[:PORT]/DATABASE to share runs between hosts")
    if cache:
        parser.add_argument("--no-cache", action="store_true",
                            help="neither use nor fill the cache of idempotent steps")


def _add_durable_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``resume``, ``runs list|show|resolve`` and ``cache clear``: the local state dir."""
    resume = commands.add_parser(
        "resume", help="continue an interrupted or waiting run from its checkpoints",
        description="Continue a run from its checkpoints: finished steps are not run again.",
        epilog=_RUN_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    resume.add_argument("run_id", metavar="RUN_ID", nargs="?",
                        help="the run (default: the latest unfinished one)")
    _add_run_flags(resume, on_manual="as for `flowhost run`; also answers a waiting run's "
                   "open question (without it or a terminal, it stays waiting: exit 3)")
    resume.add_argument("--reload-spec", action="store_true",
                        help="go on with the edited spec file (checked first): finished steps "
                        "whose definition did not change keep their results; changed ones "
                        "and what depends on them run again. Also takes a failed or aborted "
                        "run: what did not succeed runs again")

    runs = commands.add_parser("runs", help="the runs of the state dir: list, show, resolve")
    run_commands = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND",
                                       parser_class=_Parser)
    run_commands.required = True
    listing = run_commands.add_parser("list", help="the latest runs, newest first")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", metavar="N", type=_run_limit, default=50,
                         help="at most N runs (default 50)")
    _add_state(listing)
    show = run_commands.add_parser("show", help="one run's result")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="the result JSON")
    _add_state(show)
    resolve = run_commands.add_parser(
        "resolve", help="answer a waiting run's manual intervention; then `flowhost resume`",
        description="Answer the question a waiting run asks about STEP (as `flowhost run` "
        "printed\nwhen it stopped, or `flowhost runs show`). The answer is recorded; "
        "`flowhost resume\nRUN_ID` applies it (with --server, the daemon goes on by itself).",
        epilog="exit codes:\n  0  the answer is recorded\n  1  the daemon or the state "
        "store failed\n  2  bad input: no such run or step, the step is not waiting, it "
        "was\n     answered already, or --outputs do not fit the plugin's outputs",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    resolve.add_argument("run_id", metavar="RUN_ID", help="the waiting run")
    resolve.add_argument("step", metavar="STEP", help="the id of the step that asks")
    resolve.add_argument("--action", choices=("retry", "skip", "abort"), required=True,
                         help="retry: the whole ladder again; skip: the step is skipped "
                         "(with --outputs, its dependents go on); abort: the run stops")
    resolve.add_argument("--outputs", metavar="JSON", default=None,
                         help="with --action skip: outputs (a JSON object) that stand in for "
                         "the step's, so the steps that depend on it can go on")
    _add_state(resolve)
    _add_client(commands, run_commands, listing, show, resolve)

    cache = commands.add_parser("cache", help="the cache of idempotent steps")
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="SUBCOMMAND",
                                          parser_class=_Parser)
    cache_commands.required = True
    clear = cache_commands.add_parser("clear", help="forget cached step results")
    clear.add_argument("--plugin", metavar="NAME", default=None,
                       help="only this plugin's results")
    _add_state(clear)


def _add_client(commands: argparse._SubParsersAction[_Parser],
                run_commands: argparse._SubParsersAction[_Parser],
                listing: argparse.ArgumentParser, show: argparse.ArgumentParser,
                resolve: argparse.ArgumentParser) -> None:
    """``submit``, ``runs watch|cancel``, and the daemon's side of ``runs list|show|resolve``
    (with ``--server`` or ``$FLOWHOST_SERVER``)."""
    from flowhost.commands.daemon_client import add_connection
    from flowhost.commands.daemon_runs import add_commands

    for parser in (listing, show, resolve):
        add_connection(parser, default_server=False)
    listing.add_argument("--status", metavar="S", default=None,
                         help="with --server: only runs with this status")
    listing.add_argument("--workflow", metavar="ID", default=None,
                         help="with --server: only runs of this workflow")
    resolve.add_argument("--comment", metavar="TEXT", default=None,
                         help="with --server: recorded with the decision")
    add_commands(commands, run_commands)


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", metavar="ID.FIELD=VALUE", action="append", default=[],
                        dest="overrides",
                        help="override one step input (JSON if it reads as JSON, else the text); "
                        "repeatable")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowhost")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    program = argv is None  # the `flowhost` process itself, not a caller that goes on
    if program:
        _short_lived()
    args = build_parser().parse_args(argv)
    from flowhost.problems import StorageError, UserInputError

    try:
        _check_args(args)
        command = _command(args)
        if program:  # what the command needs is imported: the cyclic GC may skip it
            gc.freeze()
            gc.enable()
        return command(args)
    except UserInputError as exc:
        print(f"flowhost: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as exc:  # not bad input: the state store failed
        print(f"flowhost: storage failure: {exc}", file=sys.stderr)
        return EXIT_FAILED
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


# How messages name the arguments by their dest; --set is checked with the spec, which says
# which --set is at fault.
_ARGUMENTS = {"file": "FILE", "run_id": "RUN_ID", "step": "STEP", "name": "NAME",
              "state_dir": "--state-dir", "json_out": "--json-out", "plugin": "--plugin",
              "outputs": "--outputs"}
_PATHS = ("state_dir", "json_out")
STATE_DIR_ENV = "FLOWHOST_STATE_DIR"


def _check_args(args: argparse.Namespace) -> None:
    """Refuse what no command can use, naming the argument: text that is not UTF-8 (the
    state dir records ids and paths as UTF-8 text), paths the system cannot look up."""
    from flowhost.problems import UserInputError, as_bytes, is_utf8

    for dest, label in _ARGUMENTS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and not is_utf8(value):
            raise UserInputError(f"{label} '{as_bytes(value)}': not valid UTF-8; flowhost "
                                 "keeps names, ids and paths as UTF-8 text. Give it in UTF-8 "
                                 "(check the encoding of the terminal or the script)")
    if hasattr(args, "state_dir") and not args.state_dir:
        from_env = os.environ.get(STATE_DIR_ENV, "")
        if not is_utf8(from_env):
            raise UserInputError(f"${STATE_DIR_ENV} '{as_bytes(from_env)}': not valid UTF-8; "
                                 "name a state dir whose path is UTF-8 text")
    for dest in _PATHS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and value:
            _check_path(_ARGUMENTS[dest], value)
    store = getattr(args, "state_store", None)
    if store:  # a URL names the store where a dir would: the library takes either
        if args.state_dir:
            raise UserInputError("give --store or --state-dir, not both")
        if not is_utf8(store):
            raise UserInputError(f"--store '{as_bytes(store)}': not valid UTF-8")
        args.state_dir = store


def _check_path(label: str, path: str) -> None:
    """A path too long, or one that loops through symbolic links, fails every use of it."""
    from flowhost.problems import UserInputError, shorten

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise UserInputError(f"{label} {shorten(path)}: the path, or a part of it, is too "
                                 f"long ({exc.strerror}); use a shorter name") from None
        if exc.errno == errno.ELOOP:
            raise UserInputError(f"{label} {shorten(path)}: a symbolic link on the path "
                                 f"loops ({exc.strerror}); point it at a real file or "
                                 "directory, or pass another path") from None
    except ValueError:  # a NUL byte
        raise UserInputError(f"{label}: the path holds a NUL character") from None


# Whether this process is the `flowhost` program (``_short_lived``), not a program that
# calls ``main`` and goes on: the commands may then freeze what lives until they end.
short_lived = False


def _short_lived() -> None:
    """A ``flowhost`` process keeps the modules it imports until it exits, and exits when
    its command is done: the cyclic GC need not scan them, neither while they are imported
    (paused until the command's modules are in, then they are frozen) nor at exit (frozen
    again: the final collection skips what the run left behind, tens of milliseconds)."""
    global short_lived
    short_lived = True
    gc.disable()
    atexit.register(gc.freeze)


Command = Callable[[argparse.Namespace], int]


def _command(args: argparse.Namespace) -> Command:
    """The function that carries out the command, its module imported."""
    if args.command == "run":
        from flowhost.commands.run import run_command

        return run_command
    if args.command == "validate":
        from flowhost.commands.inspect import validate_command

        return validate_command
    if args.command == "plan":
        from flowhost.commands.inspect import plan_command

        return plan_command
    if args.command == "resume":
        from flowhost.commands.resume import resume_command

        return resume_command
    if args.command == "serve":
        from flowhost.commands.serve import serve_command

        return serve_command
    if args.command == "submit":
        from flowhost.commands.daemon_runs import submit_command

        return submit_command
    if args.command == "runs":
        from flowhost.commands import daemon_runs

        if daemon_runs.remote(args):
            remote: dict[str, Command] = {
                "list": daemon_runs.list_command, "show": daemon_runs.show_command,
                "resolve": daemon_runs.resolve_command, "watch": daemon_runs.watch_command,
                "cancel": daemon_runs.cancel_command}
            return remote[args.runs_command]
        for flag in ("comment", "status", "workflow"):
            if getattr(args, flag, None):
                from flowhost.problems import UserInputError

                raise UserInputError(f"--{flag} goes to the daemon: give --server H:P (or "
                                     "$FLOWHOST_SERVER) with it")
    if args.command in ("runs", "cache"):
        from flowhost.commands import runs

        if args.command == "cache":
            return runs.cache_clear_command
        handlers: dict[str, Command] = {"list": runs.list_command, "show": runs.show_command,
                                        "resolve": runs.resolve_command}
        return handlers[args.runs_command]
    from flowhost.commands.plugins import describe_command, list_command

    return list_command if args.plugins_command == "list" else describe_command


if __name__ == "__main__":
    sys.exit(main())
