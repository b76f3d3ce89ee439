"""Who calls the daemon: bearer tokens (``--token-file``) checked in constant time on every
call of ``HostService`` before any handler runs, and the subject of a client certificate
(mutual TLS). The identity is what ``resolved_by`` records, never a name the client sends.

A token file holds one token, or lines ``name:token`` (blank lines and ``#`` comments are
skipped). Health checks and server reflection need no token: they tell nothing of runs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from flowhost.files import MAX_TOKEN_FILE_BYTES, read_bounded_text
from flowhost.problems import UserInputError

SERVICE = "flowhost.v1.HostService"
STREAMS = frozenset({"WatchRun"})
UNNAMED = "token"  # resolved_by for the one token of a file without names
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    digest: bytes  # sha256 of the token: compared in constant time, whatever its length
    # the token itself: masked like a secret in what runs store (a check can read the file)
    value: str = field(default="", repr=False, compare=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _read(path: Path) -> str:
    return read_bounded_text(path, MAX_TOKEN_FILE_BYTES, flag="--token-file",
                             what="a token file")


def load_tokens(path: Path) -> list[Token]:
    """The tokens of a token file; a ``UserInputError`` naming the file and line."""
    text = _read(path)
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise UserInputError(f"--token-file {path}: holds no token (write one token, or "
                             "lines name:token)")
    if len(lines) == 1 and ":" not in lines[0][1]:
        return [Token(UNNAMED, _digest(lines[0][1]), lines[0][1])]
    tokens, names = [], set()
    for number, line in lines:
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not name or not token:
            raise UserInputError(f"{path}:{number}: write name:token (with several tokens "
                                 "each has a name: it is who resolved_by records)")
        if name in names:
            raise UserInputError(f"{path}:{number}: the name '{name}' is given twice")
        names.add(name)
        tokens.append(Token(name, _digest(token), token))
    return tokens


def read_client_token(path: Path) -> str:
    """What a client sends from its ``--token-file``: its one token, or the token of its
    one ``name:token`` line."""
    text = _read(path)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise UserInputError(f"--token-file {path}: a client's token file holds one token "
                             "(or one line name:token)")
    name, sep, token = lines[0].partition(":")
    return token.strip() if sep and name and token.strip() else lines[0]


class Authenticator:
    def __init__(self, tokens: Sequence[Token], *, client_certs: bool) -> None:
        self.tokens = list(tokens)
        self.client_certs = client_certs

    def token_name(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """The name of the token the call carries; None when it carries none that is ours.
        Every token is compared, so the time says nothing of which one was close."""
        given = ""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                given = value
        scheme, _, token = given.partition(" ")
        digest = _digest(token.strip() if scheme.lower() == "bearer" else "\0")
        found: str | None = None
        for known in self.tokens:
            if hmac.compare_digest(digest, known.digest):
                found = known.name
        return found

    def identity(self, context: aio.ServicerContext[Any, Any]) -> str:
        """Who makes this (already authenticated) call."""
        if self.tokens:
            name = self.token_name(tuple(context.invocation_metadata() or ()))
            if name is not None and name != UNNAMED:
                return name
        subject = client_subject(context)
        if subject is not None:
            return subject
        return UNNAMED if self.tokens else ANONYMOUS


def client_subject(context: aio.ServicerContext[Any, Any]) -> str | None:
    """The subject of the verified client certificate (mTLS), e.g. ``CN=builder``."""
    auth = context.auth_context() or {}
    for key in ("x509_subject", "x509_common_name"):
        values = list(auth.get(key) or ())
        if values:
            text = values[0].decode("utf-8", "replace")
            return text if key == "x509_subject" else f"CN={text}"
    return None


if TYPE_CHECKING:
    Continuation = Callable[[grpc.HandlerCallDetails],
                            Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]


class TokenInterceptor(aio.ServerInterceptor):
    """UNAUTHENTICATED for a call of ``HostService`` without one of the tokens, before the
    call's handler (or the reading of its request) begins."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails
                                ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method or ""
        service, _, name = method.strip("/").partition("/")
        if service != SERVICE:
            return await continuation(handler_call_details)
        metadata = tuple(handler_call_details.invocation_metadata or ())
        if self.authenticator.token_name(metadata) is not None:
            return await continuation(handler_call_details)
        return _refusal(name in STREAMS)


def _refusal(stream: bool) -> grpc.RpcMethodHandler[Any, Any]:
    message = ("no valid token: send the metadata 'authorization: Bearer <token>' with a "
               "token of the daemon's --token-file (flowhost clients: --token-file F)")

    async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - abort raises

    if stream:
        return grpc.unary_stream_rpc_method_handler(streaming)
    return grpc.unary_unary_rpc_method_handler(unary)
