"""Whether an address can be listened on, told before gRPC tries: gRPC's own refusal is a
C-core log line and a message that does not say the port is taken."""

from __future__ import annotations

import contextlib
import errno
import socket


def busy_port_message(address: str) -> str | None:
    """"HOST:PORT is in use …, e.g. --listen HOST:FREE" when another program listens there;
    None when it is free, or when this cannot be told (gRPC then says what it says)."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (ValueError, OSError):
        return None
    if port == 0 or not infos:
        return None
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(where)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None
        else:
            return None
    shown = f"[{host}]" if ":" in host else host
    return (f"{address} is in use by another program; choose another port, e.g. --listen "
            f"{shown}:{_free_port(family, where) or port + 1} (or {shown}:0 for any free one)")


def _free_port(family: socket.AddressFamily, where: tuple[object, ...]) -> int | None:
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((where[0], 0))
        return int(probe.getsockname()[1])
    return None
