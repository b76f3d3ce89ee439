"""``HOST:PORT`` as the daemon's ``--listen`` and every ``--metrics-listen`` take it.

Kept free of heavy imports: ``flowhost run`` checks its ``--metrics-listen`` before it
imports anything it does not need yet.
"""

from __future__ import annotations

from flowhost.problems import UserInputError


def split_address(address: str, flag: str) -> tuple[str, int]:
    """``(host, port)`` of ``address``; a ``UserInputError`` naming ``flag`` when it is
    not ``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:9464``)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise UserInputError(f"{flag} {address!r}: not HOST:PORT (e.g. 127.0.0.1:50051, or "
                             "port 0 for any free port)")
    return host, int(port)
