"""A plugin server's target and everything needed to open a channel to it.

The config names a target by URL (one server, a list, a ``dns:///`` name) and its TLS
files by address; a channel needs the files' bytes, the message limit, the name
certificates are checked against and, for a target that may be several servers, gRPC's
``round_robin`` with client-side health checking. ``Endpoint`` gathers them in one
hashable value, so the channel pool and the catalog key on it, and opens channels on it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from flowhost.config import HostConfig
from flowhost.invokers.grpc.failures import RemoteUnavailable
from flowhost.remote_targets import TargetList, Targets
from flowhost_sdk import protocol

# Several servers: gRPC's round_robin over those whose health (the whole server, service "")
# is SERVING; an SDK server says NOT_SERVING while its worker threads are all busy and once
# it is stopping, so it is left out then too.
BALANCED_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A target and everything needed to open a channel to it (hashable: the pool's key)."""

    target: Targets
    max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def create(cls, target: Targets, config: HostConfig) -> Endpoint:
        """Read the target's TLS files from the config; raises RemoteUnavailable."""
        settings = config.tls_for(target)
        files: dict[str, bytes | None] = {"ca": None, "cert": None, "key": None}
        if settings is not None:
            for field in files:
                path = getattr(settings, field)
                if path is not None:
                    try:
                        files[field] = path.read_bytes()
                    except OSError as exc:
                        raise RemoteUnavailable(
                            f"[tls.\"{target.members[0].address}\"] {field} in {config.path}: "
                            f"cannot read "
                            f"{path}: {exc.strerror or exc}") from None
        server_name = settings.server_name if settings is not None else None
        hosts = {member.host for member in target.members}
        if server_name is None and isinstance(target, TargetList) and len(hosts) == 1:
            # A list is one channel to addresses: the name certificates are checked against
            # is the host the entries share, as it would be for each alone.
            server_name = next(iter(hosts))
        return cls(target, config.grpc.max_message_bytes, files["ca"], files["cert"],
                   files["key"], server_name)

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # A restarted server is found again quickly, not after minutes of backoff.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.target.balanced:
            options.append(("grpc.service_config", BALANCED_SERVICE_CONFIG))
        return options

    def channel_target(self) -> str:
        """What the channel is opened on: ``HOST:PORT``, ``dns:///HOST:PORT``, or for a list
        the ``ipv4:`` (``ipv6:``) target of all its addresses, gRPC's form for several
        servers behind one channel. A list's host names are looked up here, when the
        channel opens; a name whose addresses change belongs in a ``dns:///`` target."""
        if not isinstance(self.target, TargetList):
            return self.target.channel_target
        found: dict[int, list[str]] = {4: [], 6: []}
        for member in self.target.members:
            for version, address in _addresses(member.host, member.port):
                if address not in found[version]:
                    found[version].append(address)
        # One target holds one address family; IPv4 when there are both (the usual case of
        # a name that has both; a list of v6 literals gets ipv6:).
        if found[4]:
            return "ipv4:" + ",".join(found[4])
        if found[6]:
            return "ipv6:" + ",".join(found[6])
        return self.target.members[0].address  # nothing resolves: gRPC says so on each call

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)

    def sync_channel(self) -> grpc.Channel:
        if self.target.tls:
            return grpc.secure_channel(self.channel_target(), self.credentials(),
                                       self.options())
        return grpc.insecure_channel(self.channel_target(), self.options())

    def aio_channel(self, target: str | None = None) -> aio.Channel:
        """A channel on ``target`` (default: ``channel_target()``)."""
        target = target or self.channel_target()
        if self.target.tls:
            return aio.secure_channel(target, self.credentials(), self.options())
        return aio.insecure_channel(target, self.options())

    def looks_up_names(self) -> bool:
        """Whether ``channel_target()`` resolves host names (a list with some)."""
        return isinstance(self.target, TargetList) and any(
            not _is_ip(member.host) for member in self.target.members)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _addresses(host: str, port: int) -> list[tuple[int, str]]:
    """(IP version, ``ADDRESS:PORT``) of a host: itself when it is an IP address, else what
    it resolves to (nothing when it does not)."""
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return []
        ips = [ipaddress.ip_address(info[4][0]) for info in infos]
    return [(ip.version, f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}")
            for ip in ips]
