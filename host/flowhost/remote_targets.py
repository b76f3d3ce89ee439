"""Where remote plugins are served: the ``grpc://`` and ``grpcs://`` URLs of ``[remote]`` in
``flowhost.toml`` and of a step's ``plugin:``, read into targets: one server, the servers a
DNS name resolves to, or a list of servers for one plugin (round-robin). Kept apart from
the config file's models so that naming a target costs no pydantic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """A plugin server: ``grpc://HOST:PORT`` (plaintext) or ``grpcs://HOST:PORT`` (TLS); or
    the servers a DNS name resolves to, ``grpc://dns:///HOST:PORT`` (``resolver`` is then
    the DNS server gRPC asks, ``""`` for the system's), spread round-robin by gRPC."""

    scheme: Literal["grpc", "grpcs"]
    host: str
    port: int
    resolver: str | None = None

    @property
    def address(self) -> str:
        """``HOST:PORT`` as gRPC and the ``[tls]`` table spell it (``[::1]:50070`` for v6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.channel_target}"

    @property
    def channel_target(self) -> str:
        """The target string a gRPC channel is opened with."""
        if self.resolver is None:
            return self.address
        return f"dns://{self.resolver}/{self.address}"

    @property
    def tls(self) -> bool:
        return self.scheme == "grpcs"

    @property
    def balanced(self) -> bool:
        """Whether the target may be several servers (calls go round-robin over them)."""
        return self.resolver is not None

    @property
    def members(self) -> tuple[RemoteTarget, ...]:
        return (self,)


@dataclass(frozen=True, slots=True)
class TargetList:
    """Several plugin servers for one plugin, ``[remote] name = ["grpc://a:1", ...]``: one
    gRPC channel over all of them, round-robin over the healthy ones. Its entries share a
    scheme and their ``[tls]`` settings (checked when the file is loaded)."""

    members: tuple[RemoteTarget, ...]

    @property
    def scheme(self) -> Literal["grpc", "grpcs"]:
        return self.members[0].scheme

    @property
    def tls(self) -> bool:
        return self.members[0].tls

    @property
    def balanced(self) -> bool:
        return True

    @property
    def address(self) -> str:
        return ",".join(member.address for member in self.members)

    @property
    def url(self) -> str:
        """``grpc://a:1,b:2``: how messages name it, and the key its schemas are kept by."""
        return f"{self.scheme}://" + ",".join(m.channel_target for m in self.members)


Targets = RemoteTarget | TargetList
_DNS = re.compile(r"dns://(?P<resolver>[^/]*)/(?P<rest>.*)")


def parse_remote_url(url: str) -> tuple[RemoteTarget, str | None]:
    """``grpc[s]://HOST:PORT[/NAME]`` or ``grpc[s]://dns://[DNS-SERVER]/HOST:PORT[/NAME]``
    -> (target, NAME or None); raises ValueError."""
    text = url.strip()
    scheme_part, sep, rest = text.partition("://")
    dns = _DNS.fullmatch(rest) if sep else None
    if dns is not None:  # parsed as HOST:PORT[/NAME] below, then given the resolver
        text = f"{scheme_part}://{dns['rest']}"
    parts = urlsplit(text)
    if parts.scheme not in ("grpc", "grpcs"):
        raise ValueError(f"'{url}' is not a grpc:// or grpcs:// URL")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"'{url}': a plugin URL has no user, query or fragment "
                         "(grpc://HOST:PORT/NAME)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"'{url}' has a bad port") from None
    if not parts.hostname or port is None:
        raise ValueError(f"'{url}' needs a host and a port: grpc://HOST:PORT/NAME")
    name = parts.path.strip("/") or None
    if name is not None and not PLUGIN_NAME.fullmatch(name):
        raise ValueError(f"'{url}': '{name}' is not a plugin name (one path part: "
                         "grpc://HOST:PORT/NAME)")
    if dns is not None and "/" in dns["resolver"]:
        raise ValueError(f"'{url}': write a DNS name as grpc://dns:///HOST:PORT")
    scheme: Literal["grpc", "grpcs"] = "grpcs" if parts.scheme == "grpcs" else "grpc"
    resolver = dns["resolver"] if dns is not None else None
    return RemoteTarget(scheme, parts.hostname, port, resolver), name


def parse_remote_targets(value: str | list[str]) -> tuple[Targets, str | None]:
    """A ``[remote]`` value, one URL or a list of them -> (targets, NAME or None); raises
    ValueError. The URLs of a list name the same plugin, or none."""
    if isinstance(value, str):
        return parse_remote_url(value)
    if not value:
        raise ValueError("an empty list of targets")
    parsed = [parse_remote_url(url) for url in value]
    names = {name for _, name in parsed}
    if len(names) > 1:
        raise ValueError("the URLs of one list name different plugins ("
                         + ", ".join(sorted(str(n) for n in names)) + "): one plugin, "
                         "several servers of it")
    members = tuple(dict.fromkeys(target for target, _ in parsed))  # the same one twice: once
    if len({target.scheme for target in members}) > 1:
        raise ValueError("mixes grpc:// and grpcs://: the servers of one plugin are reached "
                         "the same way")
    if any(target.resolver is not None for target in members) and len(members) > 1:
        raise ValueError("a dns:/// name already stands for all its addresses: give it "
                         "alone, not in a list")
    if len(members) == 1:
        return members[0], parsed[0][1]
    return TargetList(members), parsed[0][1]


def is_remote_url(name: str) -> bool:
    return name.startswith(("grpc://", "grpcs://"))
