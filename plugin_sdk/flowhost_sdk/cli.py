"""The ``flowhost-plugin`` command: serve plugin classes over gRPC.

    flowhost-plugin serve my_pkg.scaffold:Scaffolder [more:Classes ...] --listen HOST:PORT
        [--tls-cert F --tls-key F [--tls-client-ca F]] [--max-message-bytes N]
        [--max-workers N] [--grace S] [--max-connection-age S [--max-connection-age-grace S]]

Prints a ready line with the real port once it listens (``--listen 127.0.0.1:0`` picks a
free one), serves until SIGTERM or SIGINT, then stops gracefully and exits 0. Bad arguments,
a plugin that cannot be loaded or an address that cannot be bound exit 2 with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from flowhost_sdk import protocol
from flowhost_sdk.plugin import Plugin, check_plugin_class
from flowhost_sdk.server import (
    DEFAULT_GRACE,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTION_AGE,
    DEFAULT_MAX_WORKERS,
    PluginServer,
    ServeError,
    serve_async,
    split_address,
)

log = logging.getLogger("flowhost_sdk.cli")
PLUGIN_GROUP = "flowhost.plugins"


def load_plugin(target: str) -> type[Plugin]:
    """``module:Class``, or the name of an installed plugin (entry point group
    ``flowhost.plugins``); raises ServeError."""
    if ":" not in target:
        found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == target]
        if not found:
            raise ServeError(f"{target!r} is neither module:Class nor the name of an installed "
                             f"plugin (entry point group '{PLUGIN_GROUP}')")
        target = found[0].value
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # an import error of any kind: say which target
        raise ServeError(f"cannot load {target}: {type(exc).__name__}: {exc}") from None
    problems = check_plugin_class(obj)
    if problems:
        raise ServeError(f"{target}: {'; '.join(problems)}")
    plugin: type[Plugin] = obj
    return plugin


def _byte_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value < 1024:
        raise argparse.ArgumentTypeError(f"must be at least 1024, got {value}")
    return value


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of threads") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float | None:
    """A positive number of seconds; 0 means no limit (None)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 2**31 / 1000:
        raise argparse.ArgumentTypeError(f"must be between 0 (no limit) and "
                                         f"{2**31 // 1000}, got {text}")
    return value or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowhost-plugin", description="Serve flowhost plugins over gRPC.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("serve", help="serve plugin classes until SIGTERM/SIGINT")
    run.add_argument("targets", nargs="+", metavar="module:Class",
                     help="plugin classes to serve (or names of installed plugins)")
    run.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                     help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 = any free "
                     "port, printed on the ready line)")
    run.add_argument("--tls-cert", metavar="F", help="server certificate (PEM): serve TLS")
    run.add_argument("--tls-key", metavar="F", help="the certificate's private key (PEM)")
    run.add_argument("--tls-client-ca", metavar="F",
                     help="CA (PEM) that client certificates must chain to: mutual TLS")
    run.add_argument("--max-message-bytes", type=_byte_count,
                     default=protocol.DEFAULT_MAX_MESSAGE_BYTES, metavar="N",
                     help="largest request or response (default 16 MiB)")
    run.add_argument("--max-workers", type=_worker_count, default=DEFAULT_MAX_WORKERS,
                     metavar="N",
                     help="calls to sync plugins that run at once, one thread each, counting "
                     "calls whose client gave up but that still run; one more is refused with "
                     f"RESOURCE_EXHAUSTED (default {DEFAULT_MAX_WORKERS}; async plugins are "
                     "not limited)")
    run.add_argument("--grace", type=float, default=DEFAULT_GRACE, metavar="S",
                     help=f"seconds calls in flight get to finish on stop (default "
                     f"{DEFAULT_GRACE:g})")
    run.add_argument("--max-connection-age", type=_seconds,
                     default=DEFAULT_MAX_CONNECTION_AGE, metavar="S",
                     help="close each client connection once it is S seconds old (+-10 %%), "
                     "after the calls on it: clients then reconnect and re-resolve, so a "
                     "replica started later gets calls too (default "
                     f"{DEFAULT_MAX_CONNECTION_AGE:g}; 0 = never)")
    run.add_argument("--max-connection-age-grace", type=_seconds, default=None, metavar="S",
                     help="how long calls on an aged connection may still run before it is "
                     "cut (default: no limit, a call is never cut)")
    run.add_argument("--log-level", default="INFO",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, os.getcwd())  # module:Class in the current folder, as `python -m` does
    try:
        plugins = [load_plugin(target) for target in args.targets]
        if (args.tls_cert is None) != (args.tls_key is None):
            raise ServeError("--tls-cert and --tls-key go together")
        host, _ = split_address(args.listen)
        if args.tls_cert is None and host not in ("127.0.0.1", "localhost", "[::1]", "::1"):
            log.warning("serving on %s without TLS: anyone who can reach it can call the "
                        "plugins (use --tls-cert/--tls-key, and --tls-client-ca)", args.listen)

        def announce(server: PluginServer) -> None:
            print(server.ready_line(), flush=True)

        asyncio.run(serve_async(plugins, args.listen, tls_cert=args.tls_cert,
                                tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                                max_message_bytes=args.max_message_bytes,
                                max_workers=args.max_workers, grace=args.grace,
                                max_connection_age=args.max_connection_age,
                                max_connection_age_grace=args.max_connection_age_grace,
                                ready=announce))
    except ServeError as exc:
        print(f"flowhost-plugin: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
