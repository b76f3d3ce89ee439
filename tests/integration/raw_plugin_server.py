"""A plugin server written WITHOUT flowhost_sdk, as one would in another language: nothing
but the code protoc generates from protos/flowhost/v1/plugin.proto, grpcio, the standard
health service and its own JSON handling and status codes (protos/README.md).

    python raw_plugin_server.py GENERATED_DIR    # prints "raw-plugin-server: serving on H:P"

Plugins: ``upper`` (text -> upper-case text and its length), ``flaky-db`` (always a
transient error with a hint), ``liar`` (returns outputs its own schema rejects).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

sys.path.insert(0, sys.argv[1])
import plugin_pb2
import plugin_pb2_grpc

UPPER_IN = {"type": "object", "properties": {"text": {"type": "string"}},
            "required": ["text"], "additionalProperties": False}
UPPER_OUT = {"type": "object", "properties": {"text": {"type": "string"},
                                              "length": {"type": "integer"}},
             "required": ["text", "length"]}
EMPTY = {"type": "object", "properties": {}}
LIAR_OUT = {"type": "object", "properties": {"count": {"type": "integer"}},
            "required": ["count"]}

PLUGINS = {
    "upper": ("1.0.0", "Upper-cases a text", UPPER_IN, UPPER_OUT, True),
    "flaky-db": ("0.1.0", "Needs a database that is never there", EMPTY, EMPTY, False),
    "liar": ("0.0.1", "Returns what its schema forbids", EMPTY, LIAR_OUT, False),
}


class RawPluginService(plugin_pb2_grpc.PluginServiceServicer):
    def ListPlugins(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return plugin_pb2.ListPluginsResponse(plugins=[
            plugin_pb2.PluginDescriptor(
                name=name, version=version, description=description,
                input_schema_json=json.dumps(inputs), output_schema_json=json.dumps(outputs),
                idempotent=idempotent)
            for name, (version, description, inputs, outputs, idempotent) in PLUGINS.items()])

    def Invoke(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.plugin not in PLUGINS:
            context.set_trailing_metadata((("flowhost-error-kind", "permanent"),))
            context.abort(grpc.StatusCode.NOT_FOUND, f"no plugin {request.plugin!r} here")
        try:
            inputs = json.loads(request.inputs_json.decode("utf-8"))
            if not isinstance(inputs, dict):
                raise ValueError("inputs must be a JSON object")
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad inputs_json: {exc}")
        if request.plugin == "upper":
            text = inputs.get("text")
            if not isinstance(text, str):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "field 'text' must be a string")
            outputs: dict[str, Any] = {"text": text.upper(), "length": len(text)}
        elif request.plugin == "flaky-db":
            context.set_trailing_metadata((
                ("flowhost-error-kind", "transient"),
                ("flowhost-hint", "Start the database: pg_ctl start"),
            ))
            context.abort(grpc.StatusCode.UNAVAILABLE, "database connection refused")
        else:
            outputs = {"count": "many"}
        return plugin_pb2.InvokeResponse(outputs_json=json.dumps(outputs).encode("utf-8"))


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    plugin_pb2_grpc.add_PluginServiceServicer_to_server(RawPluginService(), server)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    for name in ["", *PLUGINS]:
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    assert "flowhost_sdk" not in sys.modules and "flowhost" not in sys.modules
    print(f"raw-plugin-server: serving on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
