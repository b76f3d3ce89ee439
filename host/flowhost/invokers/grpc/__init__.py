"""Invoke a plugin served over gRPC (``flowhost.v1.PluginService``) as if it were imported.

``ListPlugins`` gives the plugin's name, version, idempotency and JSON Schemas, so static
checks and the ladder treat it exactly like a local plugin. Calls go over one ``grpc.aio``
channel per target (and event loop), shared by every step and run of the process; each
carries the step's timeout as its deadline. A target that may be several servers (a list
in ``[remote]``, or a ``dns:///`` name) gets gRPC's own ``round_robin`` policy with
client-side health checking (``healthCheckConfig``): calls go in turn to the servers whose
``grpc.health.v1`` Watch says SERVING, and one that stops (or is not reached) is left out
until it serves again; the channel re-resolves a DNS name when a connection closes, which
servers cause with a maximum connection age, so new replicas get calls.

A call is ``InvokeStream``, whose progress updates become the plugin's ``ctx.progress()``,
unless the server answered UNIMPLEMENTED to it (a server written from the first .proto):
then ``Invoke``, and the pool remembers that the server has no stream for a while, so the
extra round trip is made once. A failed call comes out as the SDK error the status code
and metadata stand for (``flowhost_sdk.protocol``); outputs are checked against the
plugin's declared output schema, since the host has no pydantic model for them.

The parts, each its own module: ``endpoint`` (a target, its TLS files and its channel
options), ``channels`` (the process's channels), ``discovery`` (ListPlugins and health
checks, blocking), ``failures`` (what a failed call means, in words for a person) and
``invoker`` (``GrpcInvoker``). This package imports none of them, nor grpc: whoever uses a
remote plugin imports the module it needs.
"""

import os

# grpc's core logs handshake failures and the like on stderr; the host reports them itself.
# Set here, in the package, since Python runs this before any of its modules imports grpc.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
