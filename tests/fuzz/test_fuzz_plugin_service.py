"""Generated requests to a real ``flowhost-plugin serve`` (a subprocess on a free loopback
port, one for the whole module, always stopped) hosting async and sync plugins, with a small
message limit and few worker threads, so that oversize messages and full pools come cheap.

``flowhost.v1.PluginService`` calls with generated fields: plugin names it serves, does not,
empty, long, odd; ``inputs_json`` that fits, that is not JSON, not UTF-8, not an object, NaN,
numbers past a double, nested past any parser, the wrong fields and types; run and step ids
of any text; attempts of any int32; bytes that are no protobuf message; messages past the
limit; bursts of calls at once, more than it has threads for.

Each answer is one the contract names (CONTRACT §3): OK; INVALID_ARGUMENT for inputs the
plugin's schema refuses; NOT_FOUND for a plugin it does not serve; FAILED_PRECONDITION or
UNAVAILABLE for what the ``fail`` plugin raises; RESOURCE_EXHAUSTED past the message limit
or with every thread busy; UNIMPLEMENTED for the optional InvokeStream of a server without
it — never UNKNOWN or INTERNAL. An OK answer's outputs are the plugin's Outputs as JSON.
After each test the server still answers its health check SERVING (once its threads are
free again) and logs no exception of a handler.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzzing import ONE_IN_TEN, budget, json_values
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
    stream,
    text_for_proto,
    unary,
    unexpected_exceptions,
    wait_serving,
)
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st
from plugin_servers import Served, start_server

from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

pytestmark = pytest.mark.fuzz

PLUGINS = ["echo", "sync-echo", "noop", "fail"]
MAX_MESSAGE = 1024 * 1024
WORKERS = 4
INPUTS: dict[str, list[bytes]] = {  # inputs each plugin takes
    "echo": [b'{"text": "hi"}', b'{"text": "", "data": {"a": [1, 2.5, null]}, "tags": ["x"]}'],
    "sync-echo": [b'{"text": "hi"}'],
    "noop": [b"{}", b'{"value": 41}'],
    "fail": [b'{"kind": "transient"}', b'{"kind": "permanent", "hint": "do this"}',
             b'{"kind": "intervention", "message": "a person, please"}'],
}
OUTPUT_FIELDS = {"echo": {"text", "length", "data", "tags"}, "sync-echo": {"text", "thread"},
                 "noop": {"value"}}


@dataclass
class Target:
    served: Served
    channel: grpc.Channel

    def call(self, method: str, data: bytes, timeout: float = 30) -> Answer:
        how = stream if method == "InvokeStream" else unary
        return how(self.channel, f"/{protocol.SERVICE}/{method}", data, timeout=timeout)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The server the fuzzing talks to; at the end its log holds no exception of a
    handler."""
    root = tmp_path_factory.mktemp("plugin-server")
    served = start_server(*PLUGINS, "--max-message-bytes", str(MAX_MESSAGE), "--max-workers",
                          str(WORKERS), log=root / "server.log", cwd=Path(__file__).parent)
    channel = grpc.insecure_channel(served.address, options=CHANNEL_OPTIONS)
    try:
        yield Target(served, channel)
        assert not unexpected_exceptions(served.stderr()), served.stderr()[-5000:]
    finally:
        channel.close()
        served.stop()


def still_serving(target: Target) -> None:
    for name in ["", *PLUGINS]:
        assert wait_serving(target.channel, name) == "SERVING", name
    listing = target.call("ListPlugins", b"")
    assert listing.code is Code.OK, str(listing)
    names = [p.name for p in pb.ListPluginsResponse.FromString(listing.responses[0]).plugins]
    assert sorted(names) == sorted(PLUGINS)


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Request:
    method: str
    data: bytes
    allowed: frozenset[Code]
    plugin: str = ""
    what: str = ""


inputs_jsons = st.one_of(
    json_values.map(str.encode),
    st.sampled_from([b"", b"{", b"\xff{}", b'{"text": "\xed\xa0\x80"}', b"[]", b"null", b"1",
                     b'{"text": NaN}', b'{"text": "a", "data": {"x": Infinity}}',
                     b'{"value": 1e999}', b'{"value": 99999999999999999999999999}',
                     b'{"value": "1"}', b'{"text": 5}', b'{"kind": "other"}',
                     b'{"text": "a", "text": "b"}', b"[" * 10_000 + b"]" * 10_000,
                     b'{"text": "' + b"x" * 500_000 + b'"}', b'{"text": "a"}\x00',
                     b'\xef\xbb\xbf{"text": "bom"}']),
)


@st.composite
def invoke_requests(draw: st.DrawFn) -> Request:
    ours = draw(st.sampled_from([True, True, True, False]))
    plugin = draw(st.sampled_from(PLUGINS)) if ours else draw(
        st.one_of(any_text, st.sampled_from(["ECHO", "echo ", "grpc://x/echo", "noop\x00"])))
    right = ours and draw(st.sampled_from([True, True, False]))
    inputs = draw(st.sampled_from(INPUTS[plugin])) if right else draw(inputs_jsons)
    request = pb.InvokeRequest(
        plugin=plugin, inputs_json=inputs, run_id=draw(any_text), step_id=draw(any_text),
        attempt=draw(st.sampled_from([1, 1, 2, 0, -1, 2**31 - 1, -(2**31)])))
    allowed = {Code.OK, Code.INVALID_ARGUMENT} if ours else {Code.NOT_FOUND}
    if plugin == "fail":
        allowed |= {Code.UNAVAILABLE, Code.FAILED_PRECONDITION}
    if plugin == "sync-echo":
        allowed |= {Code.RESOURCE_EXHAUSTED}  # every thread busy
    method = draw(st.sampled_from(["Invoke", "Invoke", "InvokeStream"]))
    if method == "InvokeStream":
        allowed |= {Code.UNIMPLEMENTED}  # optional (CONTRACT §3)
    what = "right inputs" if right else "generated inputs"
    return Request(method, request.SerializeToString(), frozenset(allowed), plugin, what)


@st.composite
def odd_requests(draw: st.DrawFn) -> Request:
    """Bytes that are no message; a message past the server's limit; ListPlugins."""
    method = draw(st.sampled_from(["Invoke", "ListPlugins", "InvokeStream"]))
    if draw(ONE_IN_TEN):
        return Request(method, oversize(MAX_MESSAGE), frozenset({Code.RESOURCE_EXHAUSTED}),
                       what="oversize")
    if method == "ListPlugins" and draw(st.booleans()):
        return Request(method, b"", frozenset({Code.OK}), what="list")
    # bytes that happen to be an InvokeRequest are answered as that request would be
    return Request(method, draw(garbage), frozenset(
        {Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.UNIMPLEMENTED}), what="garbage")


requests = st.sampled_from(["invoke", "invoke", "invoke", "odd"]).flatmap(
    lambda kind: invoke_requests() if kind == "invoke" else odd_requests())


def send(target: Target, request: Request) -> Answer:
    answer = target.call(request.method, request.data)
    assert_answer(answer, request.allowed, (request.method, request.what, request.data[:300]))
    if answer.code is Code.OK and request.method in ("Invoke", "InvokeStream"):
        outputs = _outputs(request.method, answer)
        assert set(outputs) == OUTPUT_FIELDS[request.plugin], outputs
    return answer


def _outputs(method: str, answer: Answer) -> dict[str, Any]:
    if method == "Invoke":
        data = pb.InvokeResponse.FromString(answer.responses[0]).outputs_json
    else:  # the stream's last update is the result
        data = pb.InvokeUpdate.FromString(answer.responses[-1]).result.outputs_json
    found: dict[str, Any] = json.loads(data)
    return found


# ------------------------------------------------------------------------------ tests
@budget(0.4)
@given(request=requests)
def test_generated_requests_get_the_right_status(target: Target, request: Request) -> None:
    answer = send(target, request)
    event(f"{request.method} {request.what}: {answer.code.name}")


@settings(budget(0.05), phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(calls=st.lists(requests, min_size=20, max_size=120))
def test_bursts_of_calls_at_once(target: Target, calls: list[Request]) -> None:
    answers = burst([lambda r=request: send(target, r) for request in calls])
    event(f"burst: {sorted({a.code.name for a in answers})}")
    still_serving(target)


def test_the_server_serves_after_the_fuzzing(target: Target) -> None:
    still_serving(target)


@not_protobuf
def test_a_message_that_is_not_protobuf_is_invalid_argument(target: Target,
                                                            data: bytes) -> None:
    assert target.call("Invoke", data).code is Code.INVALID_ARGUMENT


def test_a_number_past_a_double_is_invalid_argument(target: Target) -> None:
    request = pb.InvokeRequest(plugin="echo", inputs_json=text_for_proto(
        '{"text": "a", "data": {"x": 1e999}}').encode())
    assert target.call("Invoke", request.SerializeToString()).code is Code.INVALID_ARGUMENT
