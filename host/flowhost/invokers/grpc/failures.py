"""What a failed call to a plugin server means, said for a person.

gRPC reports a failure as a status code and a line of details from its core; a user needs
to know whether the server is down or answers wrongly (TLS refused, not a plugin server, a
size limit) and what to do about it. The wording for a server asked for its plugins
(discovery, at check time) and for a call of a plugin (the invoker, mid-run) is kept here
together, with the reading of gRPC's details both rely on, so that the two stay consistent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import grpc

from flowhost_sdk import PluginError, protocol

if TYPE_CHECKING:
    from grpc import aio

    from flowhost.invokers.grpc.endpoint import Endpoint

Code = grpc.StatusCode


class RemoteUnavailable(Exception):
    """A plugin server cannot be reached or does not answer as a plugin server should.
    ``down``: no answer at all (not running, unreachable, too slow), which may pass; as
    opposed to an answer that is wrong (not a plugin server, TLS refused, bad schemas)."""

    def __init__(self, message: str, fix: str | None = None, *, down: bool = False) -> None:
        super().__init__(message)
        self.fix = fix
        self.down = down


def unreachable(endpoint: Endpoint, exc: grpc.RpcError, timeout: float
                ) -> tuple[str, str]:
    """Why a server could not be asked for its plugins, and what to do about it."""
    code, details = exc.code(), exc.details() or ""
    target = endpoint.target
    tls_table = f'[tls."{target.members[0].address}"] in flowhost.toml'
    start = (f"start its server (flowhost-plugin serve ... --listen {target.address}) or fix "
             "the URL")
    if target.balanced:  # none of them answered, or none was healthy
        start = ("start at least one of its servers (flowhost-plugin serve ... --listen "
                 "HOST:PORT), check that their health says SERVING, or fix the targets")
    if code is Code.UNIMPLEMENTED:
        return (f"{target.url} answers, but does not serve flowhost.v1.PluginService",
                "point the URL at a flowhost plugin server")
    if tls_failure(details):
        return (f"TLS with {target.url} failed: {details}",
                f"check ca, cert and key in {tls_table}")
    if code is Code.DEADLINE_EXCEEDED:
        return f"no answer from {target.url} within {timeout:g}s", start
    if code is Code.RESOURCE_EXHAUSTED and "larger than max" in details:
        return (f"the plugin list of {target.url} is larger than this host's message limit: "
                f"{details}", "raise max_message_bytes in the [grpc] table of flowhost.toml")
    message = f"cannot reach {target.url}: {code.name}: {details}"
    if "socket closed" in details.lower():  # connected, then dropped: often a TLS mismatch
        if target.tls:
            return message, (f"{start}; if it is running, it may want a client certificate: "
                             f"cert and key in {tls_table}")
        return message, f"{start}; if the server uses TLS, use grpcs://"
    return message, start


# How gRPC reports that no connection could be made or kept (not a server's own UNAVAILABLE).
CONNECTION_FAILURE = re.compile(
    r"failed to connect|connection refused|connect failed|socket closed|connection reset|"
    r"broken pipe|dns resolution failed|name resolution|no route to host|endpoint closing",
    re.IGNORECASE)


def no_answer(endpoint: Endpoint, exc: grpc.RpcError) -> bool:
    """Whether a failed call had no answer from a server (none running, none reachable, or
    too slow), rather than a wrong one."""
    code, details = exc.code(), exc.details() or ""
    if endpoint.target.tls and "socket closed" in details.lower():
        # A TLS server that accepts the connection and closes it at once is refusing the
        # handshake (a client certificate it wants, one it does not trust): an answer.
        return False
    return code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED) and not tls_failure(details)


def no_such_method(exc: aio.AioRpcError) -> bool:
    """Whether a failed call says the server does not have the method, rather than that a
    plugin failed with UNIMPLEMENTED (which it says with flowhost's trailers)."""
    if exc.code() is not Code.UNIMPLEMENTED:
        return False
    return not any(key in protocol.PLUGIN_ERROR_KEYS for key, _ in exc.trailing_metadata() or ())


def tls_failure(details: str) -> bool:
    lowered = details.lower()
    return any(word in lowered for word in ("handshake", "ssl", "certificate", "tls"))


def call_error(exc: aio.AioRpcError, label: str, endpoint: Endpoint) -> PluginError:
    """The SDK error a failed call to remote plugin ``label`` at ``endpoint`` stands for."""
    metadata = exc.trailing_metadata() or ()
    error = protocol.error_from_status(exc.code(), exc.details(), metadata)
    if any(key in protocol.PLUGIN_ERROR_KEYS for key, _ in metadata):
        return error  # the plugin's own error, as it would be in-process
    # The call itself failed (connection, deadline, size limit...), or a server said
    # only a status: say where.
    details = exc.details() or ""
    error.message = f"remote plugin {label}: {exc.code().name}: {details or 'no details'}"
    error.args = (error.message,)
    if error.hint is None and exc.code() is Code.UNAVAILABLE:
        address = endpoint.target.address
        if tls_failure(details):
            error.hint = f"Check the TLS settings for {address} in flowhost.toml"
        elif endpoint.target.balanced:
            error.hint = (f"Start at least one healthy server of {endpoint.target.url} "
                          "(flowhost-plugin serve ... --listen HOST:PORT)")
        elif CONNECTION_FAILURE.search(details):
            error.hint = (f"Start the plugin server on {address} "
                          f"(flowhost-plugin serve ... --listen {address})")
    return error
