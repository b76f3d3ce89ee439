"""How several servers of one remote plugin are written (CONTRACT §12) and what channel they
get, without servers: ``[remote]`` lists and ``dns:///`` names, the errors that name the
file and key, and ``flowhost-plugin serve --max-connection-age``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowhost.config import load_config
from flowhost.invokers.grpc.endpoint import BALANCED_SERVICE_CONFIG, Endpoint
from flowhost.problems import UserInputError
from flowhost.remote_targets import RemoteTarget, TargetList, parse_remote_targets, parse_remote_url
from flowhost_sdk.cli import build_parser, load_plugin
from flowhost_sdk.server import DEFAULT_MAX_CONNECTION_AGE, PluginServer, ServeError


def config_of(tmp_path: Path, text: str) -> Path:
    (tmp_path / "flowhost.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_a_list_of_targets_and_a_dns_name_as_the_contract_writes_them(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=config_of(tmp_path, '''
[remote]
name = ["grpc://a:50070", "grpc://b:50070"]
other = "grpc://dns:///plugins.internal:50070"
renamed = ["grpc://10.0.0.1:1/real", "grpc://10.0.0.2:1/real"]
'''))
    targets, served_as = config.remote_plugin("name") or (None, None)
    assert targets == TargetList((RemoteTarget("grpc", "a", 50070),
                                  RemoteTarget("grpc", "b", 50070)))
    assert served_as == "name" and targets.url == "grpc://a:50070,b:50070"
    dns, _ = config.remote_plugin("other") or (None, None)
    assert dns == RemoteTarget("grpc", "plugins.internal", 50070, resolver="")
    assert dns.url == "grpc://dns:///plugins.internal:50070" and dns.balanced
    assert Endpoint(dns).channel_target() == "dns:///plugins.internal:50070"
    assert (config.remote_plugin("renamed") or (None, None))[1] == "real"


@pytest.mark.parametrize(("url", "target", "name"), [
    ("grpc://dns:///p.internal:50070/x", RemoteTarget("grpc", "p.internal", 50070, ""), "x"),
    ("grpcs://dns://10.0.0.2:53/p.internal:443",
     RemoteTarget("grpcs", "p.internal", 443, "10.0.0.2:53"), None),
])
def test_dns_urls(url: str, target: RemoteTarget, name: str | None) -> None:
    assert parse_remote_url(url) == (target, name)
    assert target.url == url.removesuffix("/x")


@pytest.mark.parametrize(("value", "message"), [
    ([], "an empty list"),
    (["grpc://a:1/x", "grpc://b:1/y"], "name different plugins"),
    (["grpc://a:1", "grpcs://b:1"], "mixes grpc:// and grpcs://"),
    (["grpc://dns:///a:1", "grpc://b:1"], "give it alone"),
    (["grpc://a:1", "http://b:1"], "not a grpc:// or grpcs:// URL"),
    ("grpc://dns:///nameonly", "needs a host and a port"),
])
def test_bad_lists(value: str | list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_remote_targets(value)


def test_the_same_target_twice_is_one_server() -> None:
    assert parse_remote_targets(["grpc://a:1", "grpc://a:1"]) == (
        RemoteTarget("grpc", "a", 1), None)


@pytest.mark.parametrize(("text", "message"), [
    ('[remote]\nx = ["grpc://a:1", 5]\n', r"\[remote\] x: Input should be a valid string"),
    ('[remote]\nx = ["grpc://a:1", "grpc://b:1/y", "grpc://c:1/z"]\n',
     r"\[remote\] x: the URLs of one list name different plugins"),
    ('[remote]\nx = ["grpcs://a:1", "grpcs://b:1"]\n',
     r"\[remote\] x: grpcs:// targets on different hosts need .* server_name"),
    ('[remote]\nx = ["grpcs://a:1", "grpcs://a:2"]\n[tls."a:1"]\nserver_name = "n"\n',
     r"\[remote\] x: the targets of one list need the same \[tls\] settings"),
])
def test_bad_remote_lists_name_the_file_and_the_key(tmp_path: Path, text: str,
                                                     message: str) -> None:
    with pytest.raises(UserInputError, match=message) as caught:
        load_config(environ={}, cwd=config_of(tmp_path, text))
    assert str(tmp_path / "flowhost.toml") in str(caught.value)


def test_tls_lists_check_one_name(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=config_of(tmp_path, '''
[remote]
same-host = ["grpcs://plugins.example:1", "grpcs://plugins.example:2"]
named = ["grpcs://10.0.0.1:1", "grpcs://10.0.0.2:1"]
[tls."10.0.0.1:1"]
server_name = "plugins.example"
[tls."10.0.0.2:1"]
server_name = "plugins.example"
'''))
    for name in ("same-host", "named"):
        target, _ = config.remote_plugin(name) or (None, None)
        assert target is not None
        assert Endpoint.create(target, config).server_name == "plugins.example"


def test_a_list_is_one_channel_over_its_addresses_with_round_robin_and_health_checks() -> None:
    listed, _ = parse_remote_targets(["grpc://127.0.0.1:1", "grpc://localhost:2",
                                      "grpc://127.0.0.1:1/"])
    endpoint = Endpoint(listed)
    # localhost is looked up when the channel opens (its IPv4 address, as the others').
    assert endpoint.channel_target() == "ipv4:127.0.0.1:1,127.0.0.1:2"
    options = dict(endpoint.options())
    config = json.loads(options["grpc.service_config"])
    assert config == json.loads(BALANCED_SERVICE_CONFIG)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": ""}
    v6, _ = parse_remote_targets(["grpc://[::1]:1", "grpc://[::1]:2"])
    assert Endpoint(v6).channel_target() == "ipv6:[::1]:1,[::1]:2"
    # One server stays as it was: pick_first, no health checks of its own.
    single = Endpoint(RemoteTarget("grpc", "127.0.0.1", 1))
    assert single.channel_target() == "127.0.0.1:1"
    assert "grpc.service_config" not in dict(single.options())


def test_serve_takes_a_maximum_connection_age() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "x:Y"]).max_connection_age == DEFAULT_MAX_CONNECTION_AGE
    args = parser.parse_args(["serve", "x:Y", "--max-connection-age", "0"])
    assert args.max_connection_age is None and args.max_connection_age_grace is None
    args = parser.parse_args(["serve", "x:Y", "--max-connection-age", "30",
                              "--max-connection-age-grace", "60"])
    assert (args.max_connection_age, args.max_connection_age_grace) == (30, 60)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "x:Y", "--max-connection-age", "-1"])


def test_a_plugin_server_refuses_a_bad_connection_age() -> None:
    whoami = load_plugin("whoami")  # the installed test plugin, as serve finds it
    with pytest.raises(ServeError, match="max_connection_age must be a positive number"):
        PluginServer([whoami], "127.0.0.1:0", max_connection_age=0)
    assert PluginServer([whoami], "127.0.0.1:0").max_connection_age == 300
