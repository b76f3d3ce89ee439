"""The host's configuration file, ``flowhost.toml``: remote plugins and how to reach them.

Read from ``$FLOWHOST_CONFIG`` when set, else from ``flowhost.toml`` in the run's working
directory when there is one::

    [remote]                                  # plugin name -> where it is served
    redis-cache-plugin = "grpc://10.0.0.5:50070"             # same name on the server
    auth = "grpcs://plugins.example.com:50443/jwt-auth-plugin"  # another name there
    render = ["grpc://10.0.0.7:50070", "grpc://10.0.0.8:50070"]  # replicas: round-robin
    scan = "grpc://dns:///scan.plugins.svc:50070"           # every address the name has

    [tls."plugins.example.com:50443"]         # per target HOST:PORT, for grpcs:// URLs
    ca = "certs/ca.pem"                       # CA to trust (default: the system's roots)
    cert = "certs/client.pem"                 # client certificate + key: mutual TLS
    key = "certs/client.key"
    server_name = "plugins.example.com"       # name to verify, when it differs from HOST

    [grpc]                                    # every remote call
    connect_timeout = 3.0                     # s, to reach a server when checking a spec
    default_timeout = 3600.0                  # s, deadline of calls whose step has no timeout
    max_message_bytes = 16777216              # largest request or response

    [serve]                                   # the daemon (flowhost serve flags win)
    listen = "127.0.0.1:50051"
    state_dir = "/var/lib/flowhost"
    max_runs = 4
    env_allow = ["JWT_SECRET"]                # what specs submitted over the API may read

Relative paths are relative to the file's folder. A problem names the file and the key and
is a ``UserInputError`` (exit code 2).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowhost.problems import UserInputError
from flowhost.remote_targets import PLUGIN_NAME, TargetList, Targets, parse_remote_targets

CONFIG_ENV = "FLOWHOST_CONFIG"
CONFIG_NAME = "flowhost.toml"
MAX_CONFIG_CHARS = 1024 * 1024  # $FLOWHOST_CONFIG=/dev/zero must not fill memory


class _Strict(BaseModel):
    # Validators are built when a file is first read: most processes have no flowhost.toml
    # (their config is ``empty_config()``), and building these costs ~10 ms of each start.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class TLSSettings(_Strict):
    """How to reach one TLS target: the CA to trust, and a client certificate for mTLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _pairs(self) -> TLSSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together (the client certificate for mutual "
                             "TLS and its private key)")
        return self


class GrpcSettings(_Strict):
    connect_timeout: float = Field(3.0, gt=0)
    default_timeout: float = Field(3600.0, gt=0)
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)


class ServeSettings(_Strict):
    """``[serve]``: the daemon's settings (``flowhost serve`` flags win over them); paths
    are relative to the file's folder."""

    listen: str | None = None
    metrics_listen: str | None = None
    state_dir: Path | None = None
    store: str | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_runs: int | None = Field(None, ge=1, le=10_000)
    drain_timeout: float | None = Field(None, ge=0, le=86_400, allow_inf_nan=False)
    insecure: bool = False
    # The environment variables a spec submitted over the API may read (${env.X}).
    env_allow: list[str] = Field(default_factory=list)


def _remote_value(value: Any) -> str | list[str]:
    """A ``[remote]`` value: a URL, or a list of URLs (one error, not one per form)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise PydanticCustomError("string_type", "Input should be a valid string (a grpc:// URL), "
                              "or a list of them for several servers")


RemoteValue = Annotated[str | list[str], PlainValidator(_remote_value)]


class HostConfig(_Strict):
    """The parsed ``flowhost.toml`` (empty when there is none)."""

    remote: dict[str, RemoteValue] = Field(default_factory=dict)
    tls: dict[str, TLSSettings] = Field(default_factory=dict)
    grpc: GrpcSettings = Field(default_factory=GrpcSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The file it was read from (None: no file)."""
        return self._path

    def remote_plugin(self, name: str) -> tuple[Targets, str] | None:
        """(target or targets, name on the server) for a name mapped in ``[remote]``, else
        None."""
        url = self.remote.get(name)
        if url is None:
            return None
        target, served_as = parse_remote_targets(url)  # checked when the file was loaded
        return target, served_as or name

    def tls_for(self, target: Targets) -> TLSSettings | None:
        """The ``[tls]`` settings of a target (of a list: of its first entry, the same for
        every entry)."""
        first = target.members[0]
        return self.tls.get(first.address) or self.tls.get(f"{first.host}:{first.port}")


def empty_config() -> HostConfig:
    """The config of no file: ``HostConfig()`` with its defaults, constructed without
    validation (nothing is there to check), so no validator is built for it. (The
    ``default_factory`` values are given: pydantic would inspect each factory's signature.)"""
    serve = ServeSettings.model_construct(_fields_set=set(), env_allow=[])
    return HostConfig.model_construct(_fields_set=set(), remote={}, tls={},
                                      grpc=GrpcSettings.model_construct(), serve=serve)


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> HostConfig:
    """Read ``path``, else ``$FLOWHOST_CONFIG`` of ``environ``, else ``flowhost.toml`` in
    ``cwd``; empty when none (the caller says which environment and folder: a run's own)."""
    env = environ or {}
    explicit = path is not None or bool(env.get(CONFIG_ENV))
    if path is None and not explicit and cwd is None:
        return empty_config()
    where = Path(path if path is not None else env.get(CONFIG_ENV) or
                 Path(cwd or ".") / CONFIG_NAME)
    try:
        with where.open(encoding="utf-8") as stream:
            text = stream.read(MAX_CONFIG_CHARS + 1)
    except FileNotFoundError:
        if explicit:
            source = f" (from ${CONFIG_ENV})" if path is None else ""
            raise UserInputError(f"{where}: the config file{source} does not exist") from None
        return empty_config()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{where}: cannot read the config file: {exc}") from None
    if len(text) > MAX_CONFIG_CHARS:
        raise UserInputError(f"{where}: larger than {MAX_CONFIG_CHARS:,} characters: not a "
                             "config file flowhost reads")
    return parse_config(text, where)


def parse_config(text: str, where: Path) -> HostConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{where}: not valid TOML: {exc}") from None
    try:
        config = HostConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(_describe(where, exc)) from None
    problems = [f"{where}: [remote] {name}: {problem}"
                for name, problem in _remote_problems(config)]
    problems += _tls_problems(config, where)
    if problems:
        raise UserInputError("\n".join(problems))
    config = _resolve_paths(config, where.parent)
    config._path = where
    return config


def _remote_problems(config: HostConfig) -> list[tuple[str, str]]:
    problems = []
    for name, url in config.remote.items():
        if not PLUGIN_NAME.fullmatch(name):
            problems.append((name, "is not a plugin name"))
            continue
        try:
            targets, _ = parse_remote_targets(url)
        except ValueError as exc:
            problems.append((name, f"{exc} — write it like \"grpc://10.0.0.5:50070\", "
                             "[\"grpc://10.0.0.5:50070\", \"grpc://10.0.0.6:50070\"] or "
                             "\"grpc://dns:///plugins.internal:50070\""))
            continue
        for target in targets.members:
            if not target.tls and config.tls_for(target) is not None:
                problems.append((name, f"[tls.\"{target.address}\"] sets TLS for this target "
                                 "but the URL says grpc:// (plaintext); use grpcs://"))
        problem = _list_tls_problem(config, targets)
        if problem is not None:
            problems.append((name, problem))
    return problems


def _list_tls_problem(config: HostConfig, targets: Targets) -> str | None:
    """Why the TLS settings of a list of grpcs:// targets cannot serve them all (one channel
    has one set of credentials and checks one server name), or None."""
    if not isinstance(targets, TargetList) or not targets.tls:
        return None
    settings = {m.address: config.tls_for(m) for m in targets.members}
    if len({s.model_dump_json() if s is not None else "" for s in settings.values()}) > 1:
        return ("the targets of one list need the same [tls] settings (one channel, one "
                "set of credentials): give them all the same [tls.\"HOST:PORT\"] tables")
    first = next(iter(settings.values()))
    hosts = {m.host for m in targets.members}
    if len(hosts) > 1 and (first is None or first.server_name is None):
        return ("grpcs:// targets on different hosts need the one name their certificates "
                "carry: server_name in their [tls.\"HOST:PORT\"] tables")
    return None


def _tls_problems(config: HostConfig, where: Path) -> list[str]:
    problems = []
    for address, settings in config.tls.items():
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            problems.append(f"{where}: [tls.\"{address}\"]: the key must be the target's "
                            "HOST:PORT, as in its grpcs:// URL")
        for field in ("ca", "cert", "key"):
            value: Path | None = getattr(settings, field)
            if value is not None and not (where.parent / value).expanduser().is_file():
                problems.append(f"{where}: [tls.\"{address}\"] {field}: no such file: "
                                f"{where.parent / value}")
    return problems


def _resolve_paths(config: HostConfig, folder: Path) -> HostConfig:
    tls = {
        address: settings.model_copy(update={
            field: (folder / value).expanduser()
            for field in ("ca", "cert", "key")
            if (value := getattr(settings, field)) is not None
        })
        for address, settings in config.tls.items()
    }
    serve = config.serve.model_copy(update={
        field: (folder / value).expanduser()
        for field in ("state_dir", "token_file", "tls_cert", "tls_key", "tls_client_ca")
        if (value := getattr(config.serve, field)) is not None
    })
    return config.model_copy(update={"tls": tls, "serve": serve})


def _describe(where: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        location = _key(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + (" (the tables are [remote], [tls.\"HOST:PORT\"], "
                                       "[grpc] and [serve])" if len(error["loc"]) == 1 else "")
        lines.append(f"{where}: {location}: {message}" if location else f"{where}: {message}")
    return "\n".join(lines)


def _key(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the TOML key a user wrote: ``[tls."h:1"] cert``."""
    parts = [str(p) for p in loc]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0] if parts[0] not in ("remote", "tls", "grpc", "serve") \
            else f"[{parts[0]}]"
    table = parts[0] if parts[0] != "tls" else f'tls."{parts[1]}"'
    rest = parts[1:] if parts[0] != "tls" else parts[2:]
    return f"[{table}] {'.'.join(rest)}".rstrip()
