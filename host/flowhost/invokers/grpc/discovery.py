"""Asking a plugin server what it serves, and whether it is healthy.

The catalog describes a remote plugin by what the server's ListPlugins says, so that static
checks see its schemas as they see a local plugin's; ``flowhost plugins --check`` asks the
standard health service too. Both ask while plugins are loaded, not during a run's calls,
so they block (run them in a thread inside an event loop), each on a channel of its own.
``descriptors`` reads a ListPlugins answer, also for the invoker that asks again mid-run.
"""

from __future__ import annotations

import json

import grpc
import jsonschema
from grpc_health.v1 import health_pb2

from flowhost.invokers import RemoteDescriptor
from flowhost.invokers.grpc.endpoint import Endpoint
from flowhost.invokers.grpc.failures import RemoteUnavailable, no_answer, unreachable
from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

Code = grpc.StatusCode
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def list_plugins(endpoint: Endpoint, timeout: float) -> dict[str, RemoteDescriptor]:
    """The plugins a server hosts, by name (blocking: run it in a thread inside a loop)."""
    with endpoint.sync_channel() as channel:
        method = channel.unary_unary(
            protocol.LIST_PLUGINS, request_serializer=pb.ListPluginsRequest.SerializeToString,
            response_deserializer=pb.ListPluginsResponse.FromString)
        try:
            response: pb.ListPluginsResponse = method(pb.ListPluginsRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise RemoteUnavailable(*unreachable(endpoint, exc, timeout),
                                    down=no_answer(endpoint, exc)) from None
    return descriptors(endpoint, response)


def descriptors(endpoint: Endpoint, response: pb.ListPluginsResponse
                ) -> dict[str, RemoteDescriptor]:
    """The plugins of a ListPlugins answer, by name; RemoteUnavailable for a bad schema."""
    found: dict[str, RemoteDescriptor] = {}
    for plugin in response.plugins:
        schemas = []
        for what, text in (("input", plugin.input_schema_json),
                           ("output", plugin.output_schema_json)):
            try:
                schema = json.loads(text) if text else {}
                if not isinstance(schema, dict):
                    raise ValueError("not a JSON object")
                jsonschema.Draft202012Validator.check_schema(schema)
            except (ValueError, jsonschema.SchemaError) as exc:
                message = exc.message if isinstance(exc, jsonschema.SchemaError) else str(exc)
                raise RemoteUnavailable(
                    f"{endpoint.target.url} sent an invalid {what} schema for plugin "
                    f"'{plugin.name}': {message}") from None
            schemas.append(schema)
        found[plugin.name] = RemoteDescriptor(plugin.name, plugin.version, plugin.description,
                                              plugin.idempotent, schemas[0], schemas[1])
    return found


def check_health(endpoint: Endpoint, name: str, timeout: float) -> str:
    """The standard health status of plugin ``name`` on the server (of the whole server when
    it reports none per plugin): SERVING, NOT_SERVING, ..., NO_HEALTH_SERVICE or UNREACHABLE."""
    with endpoint.sync_channel() as channel:
        check = channel.unary_unary(
            HEALTH_CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        for service in (name, ""):
            try:
                reply = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() is Code.NOT_FOUND and service:
                    continue
                if exc.code() is Code.UNIMPLEMENTED:
                    return "NO_HEALTH_SERVICE"  # reachable, but breaks the protocol
                return "UNREACHABLE"
            status: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            return status
    return "UNKNOWN"
