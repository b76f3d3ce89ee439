"""Check that a Redis answers, with nothing but the standard library.

One short connection sends ``AUTH`` (when the URL has credentials) and ``PING`` in the
Redis protocol (RESP) and expects ``+PONG``. Failures become the SDK's errors: transient
when Redis is down or busy, permanent when the URL or the credentials are wrong.
"""

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from flowhost_sdk import PermanentError, TransientError

START_REDIS_HINT = "Start Redis: redis-server --daemonize yes"
URL_HINT = "Use a URL like redis://127.0.0.1:6379/0 (rediss:// for TLS, unix:///path for a socket)"
DEFAULT_PORT = 6379
_MAX_REPLY = 4096


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where a Redis URL points, and the credentials it carries."""

    scheme: str
    host: str
    port: int
    path: str
    username: str | None
    password: str | None

    @property
    def where(self) -> str:
        """The address for messages: never with credentials."""
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_redis_url(url: str) -> RedisAddress:
    """The address in ``url``; a PermanentError when it is not a Redis URL."""
    parts: SplitResult = urlsplit(url.strip())
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise PermanentError(f"redis_url scheme {parts.scheme!r} is not redis://", hint=URL_HINT)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise PermanentError(f"redis_url has a bad port: {exc}", hint=URL_HINT) from exc
    if parts.scheme == "unix" and not parts.path:
        raise PermanentError("redis_url names no socket path", hint=URL_HINT)
    return RedisAddress(
        scheme=parts.scheme,
        host=parts.hostname or "127.0.0.1",
        port=port,
        path=parts.path,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _command(*args: str) -> bytes:
    """One command in RESP: an array of bulk strings."""
    encoded = [arg.encode() for arg in args]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode()] + [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded]
    )


def _connect(address: RedisAddress, timeout: float) -> socket.socket:
    if address.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    if address.scheme == "rediss":
        context = ssl.create_default_context()
        try:
            return context.wrap_socket(sock, server_hostname=address.host)
        except BaseException:
            sock.close()
            raise
    return sock


def _read_line(stream: socket.socket, buffer: bytearray) -> str:
    """The next reply line (simple string or error), read from ``stream``."""
    while b"\r\n" not in buffer:
        chunk = stream.recv(_MAX_REPLY)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        buffer.extend(chunk)
        if len(buffer) > _MAX_REPLY:
            raise ValueError("reply too long")
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line.decode(errors="replace")


def _exchange(address: RedisAddress, timeout: float) -> tuple[str | None, str]:
    """Send AUTH (if any) and PING; returns the AUTH reply (or None) and the PING reply."""
    with _connect(address, timeout) as stream:
        auth: list[str] = []
        if address.password is not None:
            auth = ["AUTH", *([address.username] if address.username else []), address.password]
            stream.sendall(_command(*auth))
        stream.sendall(_command("PING"))
        buffer = bytearray()
        auth_reply = _read_line(stream, buffer) if auth else None
        return auth_reply, _read_line(stream, buffer)


def check_redis(url: str, *, timeout: float = 2.0) -> str:
    """Return the (credential-free) address of the Redis at ``url`` once it answers PING.

    Raises ``TransientError`` (with ``START_REDIS_HINT``) when nothing answers there, and
    ``PermanentError`` for a bad URL, refused credentials or a server that is not Redis.
    """
    address = parse_redis_url(url)
    where = address.where
    try:
        auth_reply, ping_reply = _exchange(address, timeout)
    except ConnectionRefusedError as exc:
        raise TransientError(
            f"no Redis at {where}: connection refused", hint=START_REDIS_HINT
        ) from exc
    except FileNotFoundError as exc:
        raise TransientError(f"no Redis at {where}: no such socket", hint=START_REDIS_HINT) from exc
    except TimeoutError as exc:
        raise TransientError(
            f"no Redis at {where}: no answer within {timeout:g}s", hint=START_REDIS_HINT
        ) from exc
    except socket.gaierror as exc:
        raise PermanentError(
            f"cannot resolve the Redis host in {where}: {exc.strerror}",
            hint="Check the host name in redis_url",
        ) from exc
    except ssl.SSLError as exc:
        raise PermanentError(
            f"TLS with {where} failed: {exc.reason or exc}",
            hint="Use redis:// for a server without TLS, or fix its certificate",
        ) from exc
    except ValueError as exc:
        raise PermanentError(
            f"{where} did not answer like Redis: {exc}",
            hint="Check that redis_url points at a Redis server",
        ) from exc
    except OSError as exc:
        raise TransientError(
            f"no Redis at {where}: {exc.strerror or exc}", hint=START_REDIS_HINT
        ) from exc

    for reply in (auth_reply, ping_reply):
        if reply is None or reply.startswith("+"):
            continue
        if reply.startswith(("-NOAUTH", "-WRONGPASS", "-ERR invalid password", "-ERR AUTH")):
            raise PermanentError(
                f"Redis at {where} refused the credentials: {reply[1:]}",
                hint="Put the right password in redis_url: redis://:PASSWORD@HOST:6379/0",
            )
        if reply.startswith(("-LOADING", "-BUSY", "-MASTERDOWN", "-TRYAGAIN")):
            raise TransientError(
                f"Redis at {where} is not ready: {reply[1:]}",
                hint="Wait for Redis to finish starting, then retry",
                retry_after=1.0,
            )
    if ping_reply != "+PONG":
        raise PermanentError(
            f"{where} answered PING with {ping_reply!r} instead of +PONG",
            hint="Check that redis_url points at a Redis server",
        )
    return where
