"""The process's channels to plugin servers: one per endpoint and event loop.

A channel carries any number of calls at once, and opening one costs a connection (a TLS
handshake, a health watch on each of several servers), so every step and run of the
process shares it; a channel belongs to the loop it was opened on, hence one per loop.
The pool also remembers, per endpoint, that a server has no InvokeStream, so the extra
round trip to find that out is made once in a while and not on every call.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from grpc import aio

from flowhost.invokers.grpc.endpoint import Endpoint
from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

InvokeCall = Callable[..., Awaitable[pb.InvokeResponse]]
ListCall = Callable[..., Awaitable[pb.ListPluginsResponse]]
StreamCall = Callable[..., "aio.UnaryStreamCall[Any, pb.InvokeUpdate]"]
# How long a server that answered UNIMPLEMENTED to InvokeStream is called with Invoke before
# it is asked again (it may have been upgraded meanwhile: a daemon lives for weeks).
NO_STREAM_SECONDS = 600.0


class ChannelPool:
    """One ``grpc.aio`` channel per endpoint and event loop, opened on first use.

    A channel belongs to the loop it was opened on; the CLI runs one loop per run, a daemon
    one loop for all runs. A channel is closed when its loop shuts down (``asyncio.run``
    closes asynchronous generators, and one of those holds it), or by ``close()``.
    """

    def __init__(self) -> None:
        self._open: dict[Endpoint, weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _Open]] = {}
        self._no_stream: dict[Endpoint, float] = {}  # -> until when (monotonic)

    async def invoke_call(self, endpoint: Endpoint) -> InvokeCall:
        """The Invoke method on the endpoint's channel for the running loop."""
        return (await self._opened(endpoint)).call

    async def list_call(self, endpoint: Endpoint) -> ListCall:
        """The ListPlugins method on the endpoint's channel for the running loop."""
        return (await self._opened(endpoint)).listing

    async def stream_call(self, endpoint: Endpoint) -> StreamCall | None:
        """The InvokeStream method on the endpoint's channel for the running loop; None
        while the server is known not to have it."""
        until = self._no_stream.get(endpoint)
        if until is not None:
            if time.monotonic() < until:
                return None
            del self._no_stream[endpoint]
        return (await self._opened(endpoint)).stream

    def without_stream(self, endpoint: Endpoint) -> None:
        """The server answered UNIMPLEMENTED to InvokeStream: use Invoke for a while."""
        self._no_stream[endpoint] = time.monotonic() + NO_STREAM_SECONDS

    async def _opened(self, endpoint: Endpoint) -> _Open:
        loop = asyncio.get_running_loop()
        per_loop = self._open.get(endpoint)
        if per_loop is None:
            per_loop = self._open[endpoint] = weakref.WeakKeyDictionary()
        found = per_loop.get(loop)
        if found is not None:
            return found
        target = None
        if endpoint.looks_up_names():  # in a thread: a slow DNS must not stall the loop
            target = await asyncio.to_thread(endpoint.channel_target)
            found = per_loop.get(loop)  # another call may have opened it meanwhile
            if found is not None:
                return found
        channel = endpoint.aio_channel(target)
        call: InvokeCall = channel.unary_unary(
            protocol.INVOKE, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeResponse.FromString)
        stream: StreamCall = channel.unary_stream(
            protocol.INVOKE_STREAM, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeUpdate.FromString)
        listing: ListCall = channel.unary_unary(
            protocol.LIST_PLUGINS, request_serializer=pb.ListPluginsRequest.SerializeToString,
            response_deserializer=pb.ListPluginsResponse.FromString)
        # The loop finalizes asynchronous generators when it shuts down: this one closes
        # the channel then. It is kept here, since dropping it would close the channel now.
        closer = self._close_at_shutdown(endpoint, channel)
        opened = per_loop[loop] = _Open(channel, call, stream, listing, closer)  # before awaits
        await closer.__anext__()
        return opened

    async def _close_at_shutdown(self, endpoint: Endpoint, channel: aio.Channel
                                 ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            per_loop = self._open.get(endpoint)
            if per_loop is not None:  # forget it, so the finished loop can be collected
                per_loop.pop(asyncio.get_running_loop(), None)
            await channel.close()

    def channels(self) -> list[aio.Channel]:
        """The channels open on the running loop."""
        loop = asyncio.get_running_loop()
        return [per_loop[loop].channel for per_loop in self._open.values() if loop in per_loop]

    async def close(self) -> None:
        """Close every channel opened on the running loop."""
        loop = asyncio.get_running_loop()
        for per_loop in self._open.values():
            found = per_loop.pop(loop, None)
            if found is not None:
                await found.closer.aclose()


@dataclass(slots=True)
class _Open:
    channel: aio.Channel
    call: InvokeCall
    stream: StreamCall
    listing: ListCall
    closer: AsyncGenerator[None, None]


CHANNELS = ChannelPool()  # the process's channels
