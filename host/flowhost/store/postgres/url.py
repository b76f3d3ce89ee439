"""A ``postgresql://`` store URL, checked before anything connects (``--store``,
``$FLOWHOST_STORE``): libpq's own parser reads it, so every form libpq takes works
(``?host=/run/postgresql``, ``sslmode=…``), and what it cannot parse, or a port that is not
a number, is an exit-2 message naming the URL, with any password hidden.

One query parameter is flowhost's, not libpq's, and is taken out before libpq sees the URL:
``pooler=transaction`` says that the URL reaches PostgreSQL through a pooler in transaction
mode (PgBouncer's ``pool_mode = transaction``, and others alike), where a session's state
does not last past its transaction: no session locks, no ``LISTEN``, no session settings, no
prepared statements (``flowhost.store.postgres.lease``). ``pooler=session`` (or no
parameter) is a direct connection or a pooler in session mode."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, field_validator

from flowhost.problems import UserInputError

SCHEMES = ("postgresql://", "postgres://")
POOLER = "pooler"  # flowhost's own query parameter (the module's docstring)
POOLER_MODES = ("session", "transaction")
_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")


def hide_password(url: str) -> str:
    """``url`` with its password (in the authority, or ``password=`` in the query) as ***."""
    url = _PASSWORD.sub(r"\1***@", url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


class PostgresUrl(BaseModel):
    model_config = ConfigDict(frozen=True)
    url: str

    @field_validator("url")
    @classmethod
    def _parse(cls, url: str) -> str:
        if not url.startswith(SCHEMES):
            raise ValueError("a PostgreSQL store URL starts with postgresql://")
        libpq, modes = _split_pooler(url)
        if len(modes) > 1:
            raise ValueError(f"{POOLER}= is given {len(modes)} times")
        if modes and modes[0] not in POOLER_MODES:
            raise ValueError(f"{POOLER}={modes[0]} is not a pooler mode: write "
                             f"{POOLER}=transaction (PgBouncer's pool_mode = transaction) or "
                             f"{POOLER}=session")
        params = _conninfo(libpq)
        port = params.get("port")
        if port is not None and not all(p.isdigit() and 0 < int(p) < 65536
                                        for p in str(port).split(",")):
            raise ValueError(f"port {port!r} is not a port number (1-65535)")
        return url

    @property
    def libpq(self) -> str:
        """The URL as libpq takes it (without flowhost's ``pooler`` parameter)."""
        return _split_pooler(self.url)[0]

    @property
    def transaction_pooler(self) -> bool:
        """Whether a pooler in transaction mode stands between flowhost and the server."""
        return _split_pooler(self.url)[1] == ["transaction"]

    @property
    def params(self) -> dict[str, Any]:
        return _conninfo(self.libpq)

    @property
    def where(self) -> str:
        """How messages name the store: ``postgresql:HOST:PORT/DB``, never a password (one
        slash: it also stands as the ``Path`` that ``StateStore.path`` is)."""
        params = self.params
        host = params.get("host") or "localhost"
        port = params.get("port") or "5432"
        database = params.get("dbname") or params.get("user") or ""
        return f"postgresql:{host}:{port}/{database}"


def _split_pooler(url: str) -> tuple[str, list[str]]:
    """``url`` without its ``pooler=`` parameters, and their values."""
    base, mark, query = url.partition("?")
    if not mark:
        return url, []
    kept, modes = [], []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == POOLER:
            modes.append(value)
        elif pair:
            kept.append(pair)
    return base + ("?" + "&".join(kept) if kept else ""), modes


def _conninfo(url: str) -> dict[str, Any]:
    from psycopg import conninfo

    try:
        return conninfo.conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: libpq could not parse it
        raise ValueError(str(exc).replace(url, hide_password(url))) from None


def with_environment(url: str, environ: Mapping[str, str]) -> str:
    """``url`` with the libpq settings of ``environ`` that it does not set itself
    (``$PGPASSWORD``, ``$PGSSLMODE``, ``$PGHOST``…) written into it: what the daemon sends its
    workers over their channel, so that no worker's environment holds them (a check
    command can read its worker's ``/proc/PID/environ``)."""
    from psycopg import conninfo, pq

    libpq, modes = _split_pooler(url)
    params = conninfo.conninfo_to_dict(libpq)
    for option in pq.Conninfo.get_defaults():
        if option.envvar is None:
            continue
        keyword, name = option.keyword.decode(), option.envvar.decode()
        if keyword not in params and environ.get(name):
            params[keyword] = environ[name]
    return "postgresql://?" + urlencode([*params.items(), *((POOLER, m) for m in modes)])


def parse(url: str) -> PostgresUrl:
    """The checked URL, or a ``UserInputError`` that says what is wrong with it."""
    try:
        import psycopg  # noqa: F401 - only to say that it is missing
    except ImportError:
        raise UserInputError(
            f"--store {hide_password(url)}: PostgreSQL needs the psycopg package, which is "
            "not installed. Install it with: pip install 'flowhost[postgres]'") from None
    try:
        return PostgresUrl(url=url)
    except ValueError as exc:  # pydantic.ValidationError is one
        errors = getattr(exc, "errors", None)
        why = errors()[0]["msg"].removeprefix("Value error, ") if callable(errors) else str(exc)
        how = "" if why.startswith(f"{POOLER}=") else (  # (its own message says how)
            ". Write it as postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        raise UserInputError(f"--store {hide_password(url)}: {why}{how}") from None
