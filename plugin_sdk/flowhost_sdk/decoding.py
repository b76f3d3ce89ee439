"""Requests parsed in their handler: bytes that are not the method's message (a corrupt wire
format, a string field that is not UTF-8) are INVALID_ARGUMENT, the caller's mistake.

grpc.aio parses a request with the handler's ``request_deserializer`` before the handler
runs; a ``DecodeError`` there ends the call UNKNOWN, which a client takes for a transient
failure (and retries), and logs a traceback per call. So each handler is registered without
a deserializer (its request arrives as bytes) and parses it itself.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

Parse = Callable[[bytes], Any]
Context = aio.ServicerContext[Any, Any]


def parsed_in_handler(handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
                      ) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """``handlers`` (method name → handler, as a generated ``add_…_to_server`` registers
    them) with each async unary-request handler parsing its own request."""
    return {name: _parsing(handler) for name, handler in handlers.items()}


def _parsing(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    parse = handler.request_deserializer
    if parse is None or handler.request_streaming:
        return handler
    serialize = handler.response_serializer
    if not handler.response_streaming:
        behavior = handler.unary_unary
        if not inspect.iscoroutinefunction(behavior):
            return handler

        async def unary(data: bytes, context: Context) -> Any:
            return await behavior(await _parse(parse, data, context), context)

        return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serialize)
    streaming = handler.unary_stream
    if inspect.isasyncgenfunction(streaming):
        async def generated(data: bytes, context: Context) -> AsyncIterator[Any]:
            async for response in streaming(await _parse(parse, data, context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(generated, response_serializer=serialize)
    if inspect.iscoroutinefunction(streaming):  # writes with context.write
        async def written(data: bytes, context: Context) -> None:
            await streaming(await _parse(parse, data, context), context)

        return grpc.unary_stream_rpc_method_handler(written, response_serializer=serialize)
    return handler


async def _parse(parse: Parse, data: bytes, context: Context) -> Any:
    try:
        return parse(data)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid protobuf message of this method: "
                            f"{str(exc)[:300]}")
        raise  # unreachable: abort() raises


def add_parsing_in_handler(add_to_server: Callable[[Any, Any], None], servicer: Any,
                           server: aio.Server) -> None:
    """``add_to_server(servicer, server)`` (a generated ``add_…Servicer_to_server``), with
    its handlers parsing their own requests (``parsed_in_handler``)."""
    captured: dict[str, Mapping[str, grpc.RpcMethodHandler[Any, Any]]] = {}

    class _Capture:
        def add_generic_rpc_handlers(self, generic: Any) -> None:
            pass  # the same handlers come to add_registered_method_handlers

        def add_registered_method_handlers(
                self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
        ) -> None:
            captured[service] = handlers

    add_to_server(servicer, _Capture())
    for service, handlers in captured.items():
        parsing = parsed_in_handler(handlers)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service,
                                                                               parsing),))
        server.add_registered_method_handlers(service, parsing)
