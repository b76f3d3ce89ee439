"""``flowhost serve``: the daemon (``flowhost.daemon``), its settings from the flags, else
from ``[serve]`` in ``flowhost.toml`` ($FLOWHOST_CONFIG, or the one of this directory),
else the defaults."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any


def add_serve(commands: argparse._SubParsersAction[Any], positive_int: object) -> None:
    serve = commands.add_parser(
        "serve", help="the daemon: run submitted workflows behind the HostService gRPC API")
    serve.add_argument("--listen", metavar="H:P", default=None,
                       help="where to serve the API (default 127.0.0.1:50051)")
    serve.add_argument("--metrics-listen", metavar="H:P", default=None,
                       help="where to serve Prometheus metrics, /healthz and /readyz (default "
                       "127.0.0.1:9464; when another process has the default, the daemon "
                       "goes on without metrics)")
    serve.add_argument("--state-dir", metavar="D", default=None,
                       help="the daemon's state: runs, their working directories, the cache "
                       "(default [serve] state_dir, $FLOWHOST_STATE_DIR or ./.flowhost)")
    serve.add_argument("--store", metavar="URL", default=None,
                       help="the state store as a URL: sqlite:///PATH/TO/DIR, or "
                       "postgresql://USER@HOST[:PORT]/DATABASE (the runs' working "
                       "directories then go in the state dir of this host)")
    serve.add_argument("--token-file", metavar="F", default=None,
                       help="clients must send one of its tokens (one token, or lines "
                       "name:token; the name is who resolved_by records)")
    serve.add_argument("--tls-cert", metavar="F", default=None, help="serve TLS: certificate")
    serve.add_argument("--tls-key", metavar="F", default=None, help="its private key")
    serve.add_argument("--tls-client-ca", metavar="F", default=None,
                       help="mutual TLS: clients need a certificate from this CA")
    serve.add_argument("--max-runs", metavar="N", type=positive_int, default=None,
                       help="runs executing at once, each in a worker process (default 4); "
                       "more wait in a queue, in the order they came")
    serve.add_argument("--drain-timeout", metavar="S", type=float, default=None,
                       help="on SIGTERM, seconds running steps get to finish before they are "
                       "checkpointed as interrupted (default 20)")
    serve.add_argument("--insecure", action="store_true", default=None,
                       help="allow a non-loopback --listen without TLS and authentication")


def serve_command(args: argparse.Namespace) -> int:
    from flowhost.api import state_dir_of
    from flowhost.config import load_config
    from flowhost.context import DEFAULT_STATE_DIR, STATE_DIR_ENV, store_location
    from flowhost.daemon.server import (
        DEFAULT_DRAIN_TIMEOUT,
        DEFAULT_LISTEN,
        DEFAULT_MAX_RUNS,
        DEFAULT_METRICS_LISTEN,
        ServeConfig,
        serve,
    )

    config = load_config(environ=os.environ, cwd=Path.cwd())
    settings = config.serve

    def pick(flag: object, setting: object, default: object) -> object:
        return flag if flag is not None else setting if setting is not None else default

    store = args.store or (settings.store if args.state_dir is None else None)
    state = state_dir_of(store, args.state_dir) if store else args.state_dir
    # a PostgreSQL store keeps the runs; their working directories stay on this host, in
    # the state dir ([serve] state_dir, $FLOWHOST_STATE_DIR or ./.flowhost)
    directory, store_url = store_location(os.fspath(state)) if state else (None, None)
    state_dir = Path(directory or settings.state_dir or os.environ.get(STATE_DIR_ENV)
                     or DEFAULT_STATE_DIR).absolute()

    def path(flag: str | None, setting: Path | None) -> Path | None:
        chosen = flag if flag is not None else setting
        return Path(chosen).absolute() if chosen is not None else None

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    serve_config = ServeConfig(
        state_dir=state_dir,
        store_url=store_url,
        listen=str(pick(args.listen, settings.listen, DEFAULT_LISTEN)),
        metrics_listen=str(pick(args.metrics_listen, settings.metrics_listen,
                                DEFAULT_METRICS_LISTEN)),
        metrics_required=args.metrics_listen is not None or settings.metrics_listen is not None,
        token_file=path(args.token_file, settings.token_file),
        tls_cert=path(args.tls_cert, settings.tls_cert),
        tls_key=path(args.tls_key, settings.tls_key),
        tls_client_ca=path(args.tls_client_ca, settings.tls_client_ca),
        max_runs=int(pick(args.max_runs, settings.max_runs, DEFAULT_MAX_RUNS)),  # type: ignore[call-overload]
        drain_timeout=float(pick(args.drain_timeout, settings.drain_timeout,  # type: ignore[arg-type]
                                 DEFAULT_DRAIN_TIMEOUT)),
        insecure=bool(args.insecure or settings.insecure),
        env_allow=tuple(settings.env_allow),
        config_path=config.path.absolute() if config.path is not None else None)
    return serve(serve_config)
