"""Generated requests to a real daemon: ``flowhost serve`` as a subprocess on a free loopback
port with its own state dir and a token file, one for the whole module, always stopped.

Every RPC of ``flowhost.v1.HostService`` with generated fields: specs (right, wrong, not
YAML, not JSON in ``spec_json``, past the daemon's 2 MiB), overrides as ``--set`` takes them,
request ids said again, spec names with newlines and NULs; run ids of runs it has, runs it
never had, empty, long; steps, actions, ``outputs_json`` that is not JSON, not UTF-8, not an
object; ``after_seq`` and page sizes below and above their range, page tokens it never gave;
tokens that are not the daemon's; requests whose bytes are no protobuf message at all, and
messages past the 4 MiB the daemon takes; bursts of them at once.

Each answer is the status the contract names for it (CONTRACT §8) — OK, INVALID_ARGUMENT,
NOT_FOUND, FAILED_PRECONDITION, UNAUTHENTICATED, RESOURCE_EXHAUSTED past the size limit, and
DEADLINE_EXCEEDED for a watch of a run that has not ended — never UNKNOWN or INTERNAL; the
daemon logs no exception of a handler; after each test it still answers its health check
SERVING, every run accepted is one ``GetRun`` knows, and its RSS stays within a generous
bound of what it was after warming up (``MEMORY_BOUND``).
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzzing import (
    ONE_IN_TEN,
    budget,
    json_values,
    runnable_specs,
    set_values,
    targets,
)
from grpc_fuzzing import (
    CHANNEL_OPTIONS,
    Answer,
    Code,
    any_text,
    assert_answer,
    burst,
    garbage,
    not_protobuf,
    oversize,
    rss_kib,
    serving,
    stream,
    text_for_proto,
    unary,
    unexpected_exceptions,
)
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st
from test_daemon_support import Daemon, start_daemon

from flowhost._proto import host_pb2 as pb
from flowhost.daemon.service import encode_page_token

pytestmark = pytest.mark.fuzz

SERVICE = "/flowhost.v1.HostService/"
TOKENS = {"alice": "alice-token-1", "bob": "bob-token-2"}
MAX_REQUEST = 4 * 1024 * 1024  # flowhost.daemon.server.MAX_REQUEST_BYTES
# RSS growth allowed over the warmed-up daemon's: the store's caches, gRPC's buffers, and a
# few KiB per run it has accepted (bench/daemon.py measures those).
MEMORY_BOUND_KIB = 200 * 1024
MEMORY_PER_RUN_KIB = 64
QUICK = "workflow_id: quick\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"
ASKS = ("workflow_id: asks\nsteps:\n  - {id: a, plugin: fail, inputs: {kind: intervention, "
        "message: needs a person}}\n  - {id: b, plugin: echo, inputs: {text: $a.never}}\n")
ALLOWED_ENV = "FLOWHOST_FUZZ_SHOWN"
HIDDEN_VALUE = "h1dd3n-v4lue-of-the-daemon"  # in its environment, not in env_allow
USES_ENV = ("workflow_id: env\nsteps:\n  - {id: a, plugin: echo, inputs: {text: "
            "'${env.FLOWHOST_FUZZ_SHOWN} ${env.FLOWHOST_FUZZ_HIDDEN}'}}\n")
FINAL = ("success", "failed", "aborted", "cancelled")


@dataclass
class Target:
    daemon: Daemon
    channel: grpc.Channel
    runs: list[str] = field(default_factory=list)  # every run it accepted
    waiting: list[str] = field(default_factory=list)  # runs submitted to wait for a person
    baseline_kib: int = 0

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {TOKENS['alice']}"),)

    def call(self, method: str, data: bytes, *, timeout: float = 30,
             metadata: tuple[tuple[str, str], ...] | None = None) -> Answer:
        how = stream if method == "WatchRun" else unary
        return how(self.channel, SERVICE + method, data, timeout=timeout,
                   metadata=self.metadata if metadata is None else metadata)

    def result(self, run_id: str) -> dict[str, Any]:
        answer = self.call("GetRun", pb.GetRunRequest(run_id=run_id).SerializeToString())
        assert answer.code is Code.OK, (str(answer), run_id)
        found: dict[str, Any] = json.loads(pb.GetRunResponse.FromString(
            answer.responses[0]).result_json)
        return found


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The daemon the fuzzing talks to; at the end its log holds no exception of a
    handler."""
    yield from _daemon(tmp_path_factory.mktemp("daemon"))


def _daemon(root: Path) -> Iterator[Target]:
    (root / "tokens").write_text("".join(f"{n}:{t}\n" for n, t in TOKENS.items()))
    (root / "flowhost.toml").write_text(f'[serve]\nenv_allow = ["{ALLOWED_ENV}"]\n')
    served = start_daemon(root / "state", "--max-runs", "2", "--token-file",
                          str(root / "tokens"), "--metrics-listen", "127.0.0.1:0",
                          log=root / "daemon.log", cwd=root,
                          env={ALLOWED_ENV: "shown", "FLOWHOST_FUZZ_HIDDEN": HIDDEN_VALUE})
    channel = grpc.insecure_channel(served.address, options=CHANNEL_OPTIONS)
    try:
        found = Target(served, channel)
        for text in (QUICK, ASKS):  # warm: the checker, a worker, the store
            found.runs.append(_submit(found, text))
        found.waiting.append(found.runs[-1])
        _wait_until(found, found.runs[0], FINAL)
        _wait_until(found, found.runs[1], ("waiting",))
        found.baseline_kib = rss_kib(served.proc.pid)
        yield found
        assert not unexpected_exceptions(served.stderr()), served.stderr()[-5000:]
    finally:
        channel.close()
        served.stop(signal.SIGTERM)


def _submit(target: Target, text: str) -> str:
    answer = target.call("SubmitRun", pb.SubmitRunRequest(spec_yaml=text).SerializeToString())
    assert answer.code is Code.OK, str(answer)
    return str(pb.SubmitRunResponse.FromString(answer.responses[0]).run_id)


def _wait_until(target: Target, run_id: str, statuses: tuple[str, ...]) -> None:
    if statuses == FINAL:  # its watch ends with the run
        answer = target.call("WatchRun", pb.WatchRunRequest(run_id=run_id).SerializeToString(),
                             timeout=60)
        assert answer.code is Code.OK, str(answer)
        return
    for _ in range(1200):  # a waiting run's watch goes on: its status, then
        if target.result(run_id)["status"] in statuses:
            return
        time.sleep(0.05)
    raise AssertionError(f"{run_id} never became {statuses}")


def still_serving(target: Target) -> None:
    """After a test: health SERVING, every accepted run known, memory within its bound."""
    assert serving(target.channel) == "SERVING"
    assert serving(target.channel, "flowhost.v1.HostService") == "SERVING"
    for run_id in target.runs[-20:]:
        target.result(run_id)
    rss = rss_kib(target.daemon.proc.pid)
    bound = target.baseline_kib + MEMORY_BOUND_KIB + MEMORY_PER_RUN_KIB * len(target.runs)
    assert rss <= bound, (f"daemon RSS {rss} KiB, more than {bound} KiB (it was "
                          f"{target.baseline_kib} KiB after warming up, with "
                          f"{len(target.runs)} runs since)")


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Request:
    """One call: its method, its bytes, the codes it may end with, and what to remember of
    an OK answer (``kind``: 'submit', 'asks' for a run that will wait)."""

    method: str
    data: bytes
    allowed: frozenset[Code]
    kind: str = ""
    what: str = ""


def _allowed(*codes: Code) -> frozenset[Code]:
    return frozenset(codes)


spec_texts = st.one_of(
    runnable_specs, st.just(QUICK), st.just(ASKS), st.just(USES_ENV), any_text,
    st.sampled_from(["steps: [1, 2", "{", "workflow_id: w\nsteps: []\n", "\t", "---\n...\n"]),
)
json_specs = st.one_of(
    json_values,
    st.just(json.dumps({"workflow_id": "j", "steps": [
        {"id": "a", "plugin": "echo", "inputs": {"text": "hi"}}]})),
    st.sampled_from(['{"workflow_id": "j", "steps": [', '{"a": NaN}', "[1e999]", "",
                     '{"workflow_id": "j", "workflow_id": "k", "steps": []}']),
)
override_maps = st.one_of(
    st.just({}), st.just({}),
    st.dictionaries(targets.map(text_for_proto), set_values.map(text_for_proto), max_size=3),
    st.just({f"a.x{n}": "1" for n in range(1001)}),
)


@st.composite
def submit_requests(draw: st.DrawFn) -> Request:
    which = draw(st.sampled_from(["spec_yaml", "spec_yaml", "spec_json", "none", "large"]))
    fields: dict[str, Any] = {
        "overrides": draw(override_maps),
        "request_id": draw(st.one_of(st.just(""), st.sampled_from(["again-1", "again-2"]),
                                     any_text, st.just("r" * 513))),
        "spec_name": draw(st.one_of(st.just(""), st.sampled_from(["wf.json", "a\nb", "a\0b"]),
                                    any_text)),
    }
    if which == "spec_yaml":
        fields["spec_yaml"] = text_for_proto(draw(spec_texts))
    elif which == "spec_json":
        fields["spec_json"] = text_for_proto(draw(json_specs))
    elif which == "large":  # past MAX_SPEC_BYTES, within the message limit
        fields["spec_yaml"] = QUICK + "# " + "x" * (2 * 1024 * 1024) + "\n"
    kind = "asks" if fields.get("spec_yaml") == ASKS else "submit"
    return Request("SubmitRun", pb.SubmitRunRequest(**fields).SerializeToString(),
                   _allowed(Code.OK, Code.INVALID_ARGUMENT), kind, which)


def pick(pool: list[str], index: int) -> str:
    """One of the runs the daemon has now: drawn as a number, so that what hypothesis draws
    does not depend on how many there are (it checks that drawing is repeatable)."""
    return pool[index % len(pool)]


@st.composite
def run_requests(draw: st.DrawFn, known: list[str]) -> Request:
    """GetRun, WatchRun, CancelRun of a run it has, or of one it never had."""
    method = draw(st.sampled_from(["GetRun", "WatchRun", "CancelRun"]))
    ours = draw(st.booleans()) and bool(known)
    run_id = pick(known, draw(st.integers(0, 10**6))) if ours else draw(any_text)
    allowed = {Code.OK} if ours else {Code.NOT_FOUND}
    if not run_id:
        allowed = {Code.INVALID_ARGUMENT}
    if method == "GetRun":
        data = pb.GetRunRequest(run_id=run_id).SerializeToString()
    elif method == "CancelRun":
        data = pb.CancelRunRequest(run_id=run_id, reason=draw(any_text)).SerializeToString()
    else:
        after = draw(st.sampled_from([0, 0, 1, 3, -1, 10**6, 2**62, 2**63 - 1, -(2**63)]))
        data = pb.WatchRunRequest(run_id=run_id, after_seq=after).SerializeToString()
        if after < 0:
            allowed = {Code.INVALID_ARGUMENT} | ({Code.NOT_FOUND} if not ours else set())
        elif ours:
            allowed |= {Code.DEADLINE_EXCEEDED}  # a run that has not ended is followed live
    return Request(method, data, frozenset(allowed), what=f"{method} {'ours' if ours else ''}")


def huge_token(digits: str) -> str:
    """A page token of the daemon's form holding a number past any run's."""
    return base64.urlsafe_b64encode(f"r1:{digits}".encode()).decode().rstrip("=")


@st.composite
def list_requests(draw: st.DrawFn) -> Request:
    token = draw(st.one_of(
        st.just(""), st.just(""), st.sampled_from([encode_page_token(n) for n in (1, 2, 10**6)]),
        any_text, st.sampled_from(["cjE6", "cjE6LTU", "=", "r1:5"]),
        st.sampled_from(["9" * 19, "9" * 30, "9" * 5000]).map(huge_token)))
    request = pb.ListRunsRequest(
        status=draw(st.one_of(st.sampled_from(["", "", *FINAL, "waiting", "queued"]), any_text)),
        workflow_id=draw(st.one_of(st.sampled_from(["", "", "quick", "asks"]), any_text)),
        page_size=draw(st.sampled_from([0, 0, 1, 2, 1000, 0, 0, 1, 2, 1000, 1001, -1,
                                        2**31 - 1, -(2**31)])),
        page_token=token)
    return Request("ListRuns", request.SerializeToString(),
                   _allowed(Code.OK, Code.INVALID_ARGUMENT))


outputs_jsons = st.one_of(
    st.just(b""), st.just(b'{"never": "given"}'), st.just(b'{"never": "given"}'),
    json_values.map(str.encode),
    st.sampled_from([b"{", b"\xff{}", b"[]", b"null", b'"x"', b'{"never": 3}', b"[" * 200 +
                     b"]" * 200, b'{"never": "' + b"x" * 100_000 + b'"}',
                     b'{"never": "given", "extra": 1}']),
)


@st.composite
def resolve_requests(draw: st.DrawFn, waiting: list[str], known: list[str]) -> Request:
    """An answer to a question: mostly to a run that waits (or waited), with an action it
    takes, outputs with a skip only; now and then anything."""
    pool = waiting or known
    run_id = pick(pool, draw(st.integers(0, 10**6))) if draw(st.booleans()) else draw(any_text)
    action = draw(st.one_of(st.sampled_from(["retry", "skip", "abort"]),
                            st.sampled_from(["retry", "skip", "abort"]), any_text))
    outputs = draw(outputs_jsons) if action == "skip" or draw(ONE_IN_TEN) else b""
    comment = draw(st.one_of(st.just(""), st.just("checked"), any_text, st.just("c" * 10_001)))
    request = pb.ResolveInterventionRequest(
        run_id=run_id, step_id=draw(st.one_of(st.sampled_from(["a", "a", "b"]), any_text)),
        action=action, outputs_json=outputs, comment=comment)
    return Request("ResolveIntervention", request.SerializeToString(), _allowed(
        Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION))


@st.composite
def odd_requests(draw: st.DrawFn) -> Request:
    """Bytes that are no message; a message past the daemon's limit."""
    method = draw(st.sampled_from(["SubmitRun", "GetRun", "WatchRun", "ListRuns",
                                   "ResolveIntervention", "CancelRun"]))
    if draw(ONE_IN_TEN):
        return Request(method, oversize(MAX_REQUEST), _allowed(Code.RESOURCE_EXHAUSTED),
                       what="oversize")
    # Bytes that happen to be a message are answered as that message would be.
    return Request(method, draw(garbage), _allowed(
        Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION,
        Code.DEADLINE_EXCEEDED), what="garbage")


def requests(target: Target) -> st.SearchStrategy[Request]:
    kinds = {"submit": submit_requests(), "run": run_requests(target.runs),
             "list": list_requests(), "resolve": resolve_requests(target.waiting, target.runs),
             "odd": odd_requests()}
    return st.sampled_from(["submit", "submit", "run", "run", "list", "resolve", "resolve",
                            "odd"]).flatmap(kinds.__getitem__)


def send(target: Target, request: Request) -> Answer:
    # a watch of a run that has not ended follows it: a short deadline ends the call
    timeout = 1.0 if request.method == "WatchRun" else 60.0
    answer = target.call(request.method, request.data, timeout=timeout)
    assert_answer(answer, request.allowed, (request.method, request.what, request.data[:300]))
    assert HIDDEN_VALUE not in answer.details
    assert not any(HIDDEN_VALUE.encode() in data for data in answer.responses)
    if answer.code is Code.OK and request.method == "SubmitRun":
        reply = pb.SubmitRunResponse.FromString(answer.responses[0])
        if reply.created:
            target.runs.append(reply.run_id)
            if request.kind == "asks":
                target.waiting.append(reply.run_id)
    if answer.code in (Code.OK, Code.DEADLINE_EXCEEDED) and request.method == "WatchRun":
        seqs = [pb.RunEvent.FromString(data).seq for data in answer.responses]
        first = pb.WatchRunRequest.FromString(request.data).after_seq + 1
        assert seqs == list(range(first, first + len(seqs))), seqs  # no gap, nothing twice
    return answer


# ------------------------------------------------------------------------------ tests
@budget(0.5)
@given(data=st.data())
def test_generated_requests_get_the_right_status(target: Target, data: st.DataObject) -> None:
    request = data.draw(requests(target))
    answer = send(target, request)
    event(f"{request.method} {request.what}: {answer.code.name}")


@settings(budget(0.05), phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking:
@given(data=st.data())  # a burst that fails is shown as it was, the daemon's state being what it is
def test_bursts_of_calls_at_once(target: Target, data: st.DataObject) -> None:
    calls = data.draw(st.lists(requests(target), min_size=20, max_size=100))
    answers = burst([lambda r=request: send(target, r) for request in calls])
    event(f"burst: {sorted({a.code.name for a in answers})}")
    still_serving(target)


tokens = st.one_of(
    st.sampled_from(["", "Bearer", "Bearer ", f"Bearer {TOKENS['alice']}x",
                     f"bearer {TOKENS['bob']}", f"Bearer  {TOKENS['alice']} ",
                     f"Basic {TOKENS['alice']}", TOKENS["alice"], f"Bearer {TOKENS['alice'][:-1]}",
                     "Bearer alice:alice-token-1"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)


@budget(0.1)
@given(authorization=tokens, method=st.sampled_from([
    "SubmitRun", "GetRun", "WatchRun", "ListRuns", "ResolveIntervention", "CancelRun"]))
def test_calls_without_a_token_of_the_daemon_are_unauthenticated(
        target: Target, authorization: str, method: str) -> None:
    scheme, _, given_token = authorization.partition(" ")
    right = scheme.lower() == "bearer" and given_token.strip() in TOKENS.values()
    metadata = (("authorization", authorization),) if authorization else ()
    answer = target.call(method, pb.GetRunRequest(run_id="nope").SerializeToString(),
                         timeout=10, metadata=metadata)
    if right:  # the request reached its handler: field 1 "nope" (a run id, a status, a spec)
        assert answer.code in (Code.OK, Code.NOT_FOUND, Code.INVALID_ARGUMENT), str(answer)
    else:
        assert answer.code is Code.UNAUTHENTICATED, (str(answer), authorization)


def test_the_daemon_serves_after_the_fuzzing(target: Target) -> None:
    """Last: health and memory (its figures printed: pytest -s shows them)."""
    still_serving(target)
    print(f"\nthe daemon: RSS {target.baseline_kib / 1024:.1f} MiB after warming up, "
          f"{rss_kib(target.daemon.proc.pid) / 1024:.1f} MiB after the fuzzing, "
          f"{len(target.runs)} runs accepted")


# What the fuzzing found (each ended UNKNOWN, with the exception logged), now fixed.
@not_protobuf
def test_a_message_that_is_not_protobuf_is_invalid_argument(target: Target,
                                                            data: bytes) -> None:
    assert target.call("GetRun", data).code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize("number", ["9" * 30, "9" * 5000])
def test_a_page_token_of_a_huge_number_is_invalid_argument(target: Target,
                                                           number: str) -> None:
    request = pb.ListRunsRequest(page_token=huge_token(number))
    answer = target.call("ListRuns", request.SerializeToString())
    assert answer.code is Code.INVALID_ARGUMENT, str(answer)


def test_outputs_nested_too_deep_are_invalid_argument(target: Target) -> None:
    request = pb.ResolveInterventionRequest(run_id=target.waiting[0], step_id="a",
                                            action="skip", outputs_json=b"[" * 100_000)
    answer = target.call("ResolveIntervention", request.SerializeToString())
    assert answer.code is Code.INVALID_ARGUMENT, str(answer)


def test_an_after_seq_at_the_int64_end_ends_the_watch(target: Target) -> None:
    request = pb.WatchRunRequest(run_id=target.runs[0], after_seq=2**63 - 1)
    answer = target.call("WatchRun", request.SerializeToString(), timeout=10)
    assert answer.code is Code.OK and not answer.responses, str(answer)
