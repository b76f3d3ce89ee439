"""flowhost.toml: remote plugins, per-target TLS, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowhost.config import HostConfig, load_config
from flowhost.problems import UserInputError
from flowhost.remote_targets import RemoteTarget, parse_remote_url


def write(folder: Path, text: str, name: str = "flowhost.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config == HostConfig()
    assert config.path is None
    assert config.grpc.connect_timeout == 3.0
    assert config.grpc.max_message_bytes == 16 * 1024 * 1024


def test_the_one_line_form_from_the_contract(tmp_path: Path) -> None:
    write(tmp_path, '[remote]\nredis-cache-plugin = "grpc://10.0.0.5:50070"\n')
    config = load_config(environ={}, cwd=tmp_path)
    assert config.path == tmp_path / "flowhost.toml"
    assert config.remote_plugin("redis-cache-plugin") == (
        RemoteTarget("grpc", "10.0.0.5", 50070), "redis-cache-plugin")
    assert config.remote_plugin("other") is None


def test_flowhost_config_env_wins_over_the_current_folder(tmp_path: Path) -> None:
    write(tmp_path, '[remote]\na = "grpc://h:1"\n')
    other = write(tmp_path, '[remote]\nb = "grpc://h:2/real-b"\n', "elsewhere.toml")
    config = load_config(environ={"FLOWHOST_CONFIG": str(other)}, cwd=tmp_path)
    assert set(config.remote) == {"b"}
    assert config.remote_plugin("b") == (RemoteTarget("grpc", "h", 2), "real-b")


def test_a_missing_file_named_by_the_env_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"missing.toml: the config file \(from "
                                             r"\$FLOWHOST_CONFIG\) does not exist"):
        load_config(environ={"FLOWHOST_CONFIG": str(tmp_path / "missing.toml")}, cwd=tmp_path)


def test_tls_settings_per_target_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        (certs / name).write_text("x")
    write(tmp_path, '''
[remote]
auth = "grpcs://plugins.example.com:50443/jwt-auth-plugin"

[tls."plugins.example.com:50443"]
ca = "certs/ca.pem"
cert = "certs/client.pem"
key = "certs/client.key"
server_name = "plugins.internal"
''')
    config = load_config(environ={}, cwd=tmp_path)
    target, name = config.remote_plugin("auth") or (None, None)
    assert target == RemoteTarget("grpcs", "plugins.example.com", 50443) and target.tls
    assert name == "jwt-auth-plugin"
    tls = config.tls_for(target)
    assert tls is not None
    assert (tls.ca, tls.cert, tls.key) == (certs / "ca.pem", certs / "client.pem",
                                           certs / "client.key")
    assert tls.server_name == "plugins.internal"


@pytest.mark.parametrize(("text", "message"), [
    ("[remote\n", "not valid TOML"),
    ('[remote]\nx = "http://h:1"\n', r"\[remote\] x: 'http://h:1' is not a grpc:// or grpcs://"),
    ('[remote]\nx = "grpc://h"\n', r"\[remote\] x: 'grpc://h' needs a host and a port"),
    ('[remote]\nx = "grpc://h:1/a/b"\n', r"\[remote\] x: .*is not a plugin name"),
    ('[remote]\nx = 5\n', r"\[remote\] x: Input should be a valid string"),
    ('[remotes]\nx = "grpc://h:1"\n', r"remotes: unknown key \(the tables are"),
    ('[grpc]\nconnect_timeout = 0\n', r"\[grpc\] connect_timeout: Input should be greater"),
    ('[grpc]\ntimeout = 1\n', r"\[grpc\] timeout: unknown key"),
    ('[tls."h:1"]\ncert = "c.pem"\n', r'\[tls."h:1"\]: cert and key go together'),
    ('[tls."h:1"]\nca = "none.pem"\n', r'\[tls."h:1"\] ca: no such file'),
    ('[tls."h:1"]\ncolour = "red"\n', r'\[tls."h:1"\] colour: unknown key'),
    ('[tls.h]\n', r'\[tls."h"\]: the key must be the target\'s HOST:PORT'),
    ('[remote]\nx = "grpc://h:1"\n[tls."h:1"]\n',
     r"\[remote\] x: \[tls.\"h:1\"\] sets TLS for this target but the URL says grpc://"),
])
def test_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserInputError, match=message) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path))


@pytest.mark.parametrize(("url", "target", "name"), [
    ("grpc://127.0.0.1:50070/redis-cache-plugin", RemoteTarget("grpc", "127.0.0.1", 50070),
     "redis-cache-plugin"),
    ("grpcs://h.example:443", RemoteTarget("grpcs", "h.example", 443), None),
    ("grpc://[::1]:5/x/", RemoteTarget("grpc", "::1", 5), "x"),
])
def test_remote_urls(url: str, target: RemoteTarget, name: str | None) -> None:
    assert parse_remote_url(url) == (target, name)


def test_an_ipv6_target_is_bracketed() -> None:
    assert RemoteTarget("grpc", "::1", 5).address == "[::1]:5"
    assert RemoteTarget("grpcs", "h", 7).url == "grpcs://h:7"


@pytest.mark.parametrize("url", ["grpc://u:p@h:1/x", "grpc://h:1/x?a=1", "grpc://h:99999/x",
                                 "grpc://:1/x", "tcp://h:1/x"])
def test_bad_remote_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_remote_url(url)
