"""Generated command lines: every ``flowhost`` command with flag sets drawn from its own
flags, right and wrong values (numbers that are not, huge, negative; paths that are files,
directories, devices, too long, not UTF-8; unknown flags, flags twice, flags of other
commands), generated specs and ``--set`` values.

Each ends as a command should: exit 0, 1 (a workflow that failed, a daemon that is not
there), 2 (bad input: a ``flowhost: ...`` message, or argparse's usage error) or 3 (a run
waiting for a person), never a traceback or "internal error". Most run in-process
(``fuzzing.run_cli``), each in a fresh directory; ``flowhost serve`` stops once its settings
are checked (nothing is served); a few go through real ``flowhost`` processes, to see the
command as a user does.

Nothing here writes outside the example's own directory: the paths drawn are relative, or
ones that cannot be written (``/proc/...``, ``/dev/full``, ``/``); ``{here}`` in a value is the
example's directory.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from fuzzing import (
    ONE_IN_TEN,
    TWO_STEPS,
    Ending,
    assert_ends_well,
    budget,
    json_values,
    overrides,
    run_cli,
    runnable_specs,
    workdir,
)
from hypothesis import event, given
from hypothesis import strategies as st

from flowhost.daemon import server

pytestmark = pytest.mark.fuzz

CODES = (0, 1, 2, 3)
MEMORY_LIMIT = 4 * 1024**3  # bytes of address space of a real process
QUICK = ("workflow_id: quick\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"
         "  - {id: b, plugin: noop, inputs: {value: 2}}\n")
ASKS = ("workflow_id: asks\nsteps:\n  - {id: a, plugin: fail, inputs: {kind: intervention, "
        "message: needs a person}}\n  - {id: b, plugin: echo, inputs: {text: $a.never}}\n")
# What runs holds no `numbers` step (see fuzzing.runnable_specs)
FILES = {"quick.yaml": QUICK, "two.yaml": TWO_STEPS.replace(
             "plugin: numbers, inputs: {count: 1}", "plugin: noop, inputs: {value: 1}"),
         "asks.yaml": ASKS,
         "quick.json": '{"workflow_id": "j", "steps": [{"plugin": "echo", "inputs": '
                       '{"text": "hi"}}]}', "tokens": "alice:secret\n", "empty": ""}

# ------------------------------------------------------------------------- values
# Files that never end (read to a bound, or the memory fills: found here) and a path past
# PATH_MAX (said whole, twice: found here) among them.
paths = st.sampled_from([
    "", ".", "..", "/", "/dev/null", "/dev/zero", "/dev/full", "/proc/flowhost-nope/x",
    "missing/x", "quick.yaml", "tokens", "empty", ".flowhost", "st", "out.json",
    "sub/../out.json", "a" * 300, "b/" * 2100, "x\udcffy", "loop", "{here}/st", "-", "--json",
    " ", "~",
])
numbers = st.sampled_from([
    "0", "1", "-1", "2", "8", "x", "", "1e3", "1.5", "nan", "inf", "+5", " 3", "\u0663",
    "0x10", "99999999999999999999", "9" * 5000, "-0", "1_000",
])
# Where a client looks for a daemon, where a run serves its metrics: nothing answers there,
# and nothing is bound beyond this machine's loopback.
addresses = st.sampled_from([
    "127.0.0.1:0", "127.0.0.1:1", "[::1]:0", "[::1]:1", "localhost:0", "localhost:1",
    "127.0.0.1:99999", "x", ":", ":80", "127.0.0.1:", "h:p", "", "[::1", "a" * 300 + ":1",
])
listen_addresses = addresses | st.sampled_from(["0.0.0.0:0", "192.0.2.1:1", "[::]:0"])
run_ids = st.sampled_from([
    "{waiting}", "{waiting}", "{finished}", "{finished}", "", "nope", "20260101-000000-abcdef",
    "x" * 300, "../../x", "\udcff", "-", "a b", "%s",
])
urls = st.sampled_from([
    "http://127.0.0.1:1", "http://127.0.0.1:1/metrics/job/x", "nope", "", "ftp://x",
    "sqlite:///{here}/st", "sqlite://st", "sqlite:///proc/flowhost-nope",
    "postgresql://127.0.0.1:1/x", "weird://", "sqlite:///{here}/quick.yaml",
])
texts = st.text(max_size=12) | st.sampled_from(["", "-x", "--", "=", "a" * 3000])
SPECS = ["quick.yaml", "two.yaml", "asks.yaml", "quick.json", "gen.yaml", "gen.yaml"]
spec_files = st.one_of(st.sampled_from(SPECS), st.sampled_from(SPECS), st.sampled_from([
    "missing.yaml", ".", "/dev/null", "/dev/zero", "/dev/full", "-", "tokens", "loop",
    "b/" * 2100]))
Flag = tuple[str, st.SearchStrategy[str] | None]  # a flag, and its values (None: takes none)


def mostly(right: Sequence[str], wrong: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One of the ``right`` values two times in three: so that commands get past their
    flags often enough to do what they do."""
    return st.one_of(st.sampled_from(right), st.sampled_from(right), wrong)


SET = overrides.map(lambda found: found[0])
RUN_FLAGS: list[Flag] = [  # CONTRACT §6 lists --store too: /tmp/flowhost-bugs.md
    ("--json-out", mostly(["out.json", "sub/../out.json"], paths)),
    ("--max-parallel", mostly(["1", "2", "8"], numbers)), ("--no-progress", None),
    ("--on-manual", mostly(["fail", "abort", "skip", "wait"], st.sampled_from(["ask", ""]))),
    ("--state-dir", mostly(["st", ".flowhost", "{here}/st"], paths)), ("--no-cache", None),
    ("--metrics-listen", mostly(["127.0.0.1:0"], addresses)),
    ("--pushgateway", mostly(["http://127.0.0.1:1"], urls)),
    ("--set", mostly(["a.text=set", "a.text=$$x", "b.text=${a.text}!"], SET)),
]
CONNECTION: list[Flag] = [
    ("--server", addresses), ("--token-file", mostly(["tokens"], paths)),
    ("--tls-ca", paths), ("--tls-cert", paths), ("--tls-key", paths),
]
STATE: Flag = ("--state-dir", mostly([".flowhost", "{here}/.flowhost"], paths))
COMMANDS: dict[tuple[str, ...], tuple[list[st.SearchStrategy[str]], list[Flag]]] = {
    ("run",): ([spec_files], RUN_FLAGS),
    ("validate",): ([spec_files], [("--set", SET)]),
    ("plan",): ([spec_files], [("--json", None), ("--set", SET)]),
    ("resume",): ([run_ids], RUN_FLAGS),
    ("runs", "list"): ([], [("--json", None), ("--limit", mostly(["1", "50"], numbers)), STATE,
                            ("--status", texts), ("--workflow", texts), *CONNECTION]),
    ("runs", "show"): ([run_ids], [("--json", None), STATE, *CONNECTION]),
    ("runs", "resolve"): ([run_ids, mostly(["a"], st.sampled_from(["b", "", "zz"])), mostly(
        ["--action=retry", "--action=skip", "--action=abort"], st.just("--action=ask"))], [
        ("--outputs", mostly(['{"never": "given"}'], json_values | texts)),
        ("--comment", texts), STATE, *CONNECTION]),
    ("runs", "watch"): ([run_ids], CONNECTION),
    ("runs", "cancel"): ([run_ids], [("--reason", texts), *CONNECTION]),
    ("cache", "clear"): ([], [("--plugin", mostly(["echo"], texts)), STATE]),
    ("plugins", "list"): ([], [("--json", None), ("--check", None)]),
    ("plugins", "describe"): ([st.sampled_from(["echo", "noop", "nope", "", "broken-import",
                                                "grpc://127.0.0.1:1/x"])], [("--json", None)]),
    ("submit",): ([spec_files], [
        ("--set", SET), ("--wait", None), ("--request-id", texts), ("--no-progress", None),
        *CONNECTION]),
    ("serve",): ([], [
        ("--listen", mostly(["127.0.0.1:0"], listen_addresses)),
        ("--metrics-listen", mostly(["127.0.0.1:0"], listen_addresses)),
        ("--state-dir", mostly(["st"], paths)), ("--store", urls),
        ("--token-file", mostly(["tokens"], paths)), ("--tls-cert", paths),
        ("--tls-key", paths), ("--tls-client-ca", paths),
        ("--max-runs", mostly(["1", "4"], numbers)),
        ("--drain-timeout", mostly(["0", "2.5"], numbers)), ("--insecure", None)]),
}
CLIENTS = (("submit",), ("runs", "watch"), ("runs", "cancel"))
STRAYS = st.sampled_from(["--nope", "--json", "-x", "--", "--set", "--server", "extra",
                          "--help", "-h", "--version", "--state-dir=", "--max-parallel=2"])


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A command, its arguments, flags of its own in any order (some twice), now and then a
    stray one; the first flag's value sometimes glued on with ``=``."""
    words = draw(st.sampled_from(sorted(COMMANDS)))
    arguments, flags = COMMANDS[words]
    argv = [*words, *(draw(argument) for argument in arguments)]
    if words in CLIENTS:  # no daemon that may run on the default port: one that is not there
        argv[len(words):len(words)] = ["--server", "127.0.0.1:1"]
    if arguments and draw(ONE_IN_TEN):
        argv.pop()  # one argument missing
    for flag, choices in draw(st.lists(st.sampled_from(flags), max_size=5) if flags
                              else st.just([])):
        if choices is None:
            argv.append(flag)
        elif draw(st.booleans()):
            argv.append(f"{flag}={draw(choices)}")
        else:
            argv += [flag, draw(choices)]
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 0, 1, 2]))):
        argv.insert(draw(st.integers(len(words), len(argv))), draw(STRAYS))
    return argv


@dataclass(frozen=True)
class State:
    """A state dir made once per module: a finished run and one waiting for a person."""

    folder: Path
    finished: str
    waiting: str


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> State:
    where = tmp_path_factory.mktemp("state")
    for name, text in FILES.items():
        (where / name).write_text(text, encoding="utf-8")
    ids = []
    for argv in (["run", "quick.yaml"], ["run", "asks.yaml", "--on-manual", "wait"]):
        before = os.getcwd()
        os.chdir(where)
        try:
            ending = in_process([*argv, "--no-progress"])
        finally:
            os.chdir(before)
        assert ending.code in (0, 3), ending
        ids.append(ending.out.split("run_id: ", 1)[1].split()[0])
    return State(where / ".flowhost", *ids)


def prepare(where: Path, state: State, argv: Sequence[str], generated: str) -> list[str]:
    """The example's directory: its files (``gen.yaml`` the generated spec), a symbolic
    link that loops, a copy of the state dir; the placeholders of the arguments filled."""
    for name, text in FILES.items():
        (where / name).write_text(text, encoding="utf-8")
    (where / "gen.yaml").write_text(generated, encoding="utf-8", errors="surrogatepass")
    (where / "loop").symlink_to(where / "loop")
    shutil.copytree(state.folder, where / ".flowhost")
    filled = {"{here}": str(where), "{waiting}": state.waiting, "{finished}": state.finished}
    for key, value in filled.items():
        argv = [arg.replace(key, value) for arg in argv]
    return list(argv)


def checked_only(config: server.ServeConfig) -> int:
    """``flowhost serve`` up to the point where it would start serving."""
    config.checked()
    return 0


CLEAN = ("FLOWHOST_SERVER", "FLOWHOST_STORE", "FLOWHOST_STATE_DIR", "FLOWHOST_CONFIG")


def in_process(argv: Sequence[str]) -> Ending:
    with mock.patch.dict(os.environ), mock.patch.object(server, "serve", checked_only):
        for name in CLEAN:
            os.environ.pop(name, None)
        return run_cli(argv)


@budget(0.5)
@given(command_lines(), runnable_specs)
def test_generated_command_lines_end_well(state: State, argv: list[str], generated: str
                                          ) -> None:
    with workdir() as where:
        ending = in_process(prepare(where, state, argv, generated))
    words = argv[:2] if argv[0] in ("runs", "cache", "plugins") else argv[:1]
    event(f"{' '.join(words)}: exit {ending.code}")
    assert_ends_well(ending, CODES)


def memory_limit() -> None:
    """A command that would read without end fails instead of taking the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def real_argument(arg: str) -> bytes:
    """What a program gets from its command line: bytes, without NUL."""
    return os.fsencode(arg).replace(b"\0", b"")


@budget(0.02)
@given(command_lines(), runnable_specs)
def test_generated_command_lines_end_well_in_a_real_process(
        state: State, argv: list[str], generated: str) -> None:
    with workdir() as where:
        args = [real_argument(arg) for arg in prepare(where, state, argv, generated)]
        if args[0] == b"serve":  # a real one would serve: up to the check of its settings
            args = [b"-c", b"import sys; from flowhost.cli import main; sys.argv[0] = "
                    b"'flowhost'; import flowhost.daemon.server as s; s.serve = lambda c: "
                    b"(c.checked(), 0)[1]; sys.exit(main())", *args]
        else:
            args = [b"-m", b"flowhost", *args]
        env = {k: v for k, v in os.environ.items() if k not in CLEAN and k != "FLOWHOST_DEBUG"}
        done = subprocess.run([os.fsencode(sys.executable), *args], cwd=where, env=env,
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                              check=False, preexec_fn=memory_limit)
    ending = Ending(done.returncode, done.stdout.decode("utf-8", "replace"),
                    done.stderr.decode("utf-8", "replace"))
    assert_ends_well(ending, CODES)
