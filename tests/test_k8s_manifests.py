"""The Kubernetes manifests in ``deploy/k8s/``, without a cluster: each parses as YAML, the
daemon's and the plugin server's arguments parse with their real command-line parsers,
and the fields that must agree do (probes on the ports and paths the flags serve, grace
periods beyond the drains, the headless Service behind the ``dns:///`` target of the
ConfigMap's flowhost.toml)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowhost.cli import build_parser as flowhost_parser
from flowhost.config import parse_config
from flowhost.remote_targets import RemoteTarget, parse_remote_targets
from flowhost_sdk.cli import build_parser as plugin_parser

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    found: list[Doc] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]
    return found


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"one {kind} named {name}"
    return matches[0]


def container(deployment: Doc) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def named_port(box: Doc, name: str | int) -> int:
    """A container port by its name (or the number itself)."""
    if isinstance(name, int):
        return name
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    return int(ports[name])


def pre_stop_wait(box: Doc) -> float:
    """The seconds preStop sleeps before the process is told to stop."""
    command = " ".join(box["lifecycle"]["preStop"]["exec"]["command"])
    found = re.search(r"sleep (\d+)", command)
    assert found is not None, command
    return float(found[1])


def daemon_args(box: Doc) -> argparse.Namespace:
    args = flowhost_parser().parse_args(box["args"])
    assert args.command == "serve"
    return args


def test_every_manifest_parses_and_kustomize_lists_them(docs: list[Doc]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [("ConfigMap", "flowhost-config"), ("Deployment", "flowhost"),
                     ("Deployment", "render-plugin"), ("Service", "flowhost"),
                     ("Service", "render-plugin")]
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"].get("namespace") == "flowhost", doc["kind"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert (K8S / "Dockerfile").is_file()


def test_the_daemon_probes_the_ports_and_paths_its_flags_serve(docs: list[Doc]) -> None:
    deployment = one(docs, "Deployment", "flowhost")
    box = container(deployment)
    args = daemon_args(box)
    metrics = port_of(args.metrics_listen)
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert named_port(box, box[probe]["httpGet"]["port"]) == metrics, probe
    assert named_port(box, "grpc") == port_of(args.listen)
    # Selector and labels agree, or the Deployment is refused.
    template = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template.items()


def test_the_daemon_drains_before_the_kubelet_kills_it(docs: list[Doc]) -> None:
    deployment = one(docs, "Deployment", "flowhost")
    box = container(deployment)
    args = daemon_args(box)
    command = box["lifecycle"]["preStop"]["exec"]["command"]
    # preStop sends the daemon its own drain signal (PID 1 is the daemon: the image's
    # ENTRYPOINT is flowhost) and waits for it to end.
    assert "kill -TERM 1" in command[-1] and "kill -0 1" in command[-1]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert args.drain_timeout is not None
    assert grace > pre_stop_wait(box) + args.drain_timeout + 10  # + the checkpoint
    dockerfile = (K8S / "Dockerfile").read_text("utf-8")
    assert 'ENTRYPOINT ["flowhost"]' in dockerfile
    assert "command" not in box  # the ENTRYPOINT stays: PID 1 is flowhost


def test_the_daemon_service_and_config(docs: list[Doc], tmp_path: Path) -> None:
    deployment = one(docs, "Deployment", "flowhost")
    box = container(deployment)
    args = daemon_args(box)
    service = one(docs, "Service", "flowhost")
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert named_port(box, ports["grpc"]["targetPort"]) == port_of(args.listen)
    assert named_port(box, ports["metrics"]["targetPort"]) == port_of(args.metrics_listen)

    # $FLOWHOST_CONFIG names the ConfigMap's key where it is mounted.
    env = {e["name"]: e for e in box["env"]}
    config_path = Path(env["FLOWHOST_CONFIG"]["value"])
    mounts = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_volume = next(n for n, v in volumes.items()
                         if v.get("configMap", {}).get("name") == "flowhost-config")
    assert config_path.parent == Path(mounts[config_volume])
    config_map = one(docs, "ConfigMap", "flowhost-config")
    text = config_map["data"][config_path.name]
    config = parse_config(text, tmp_path / "flowhost.toml")  # the real parser: valid
    assert config.serve.token_file is not None
    token_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert str(config.serve.token_file).startswith(mounts[token_volume])
    # The store's password comes from a Secret, not the command line.
    assert "PGPASSWORD" in env and "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]
    assert args.store.startswith("postgresql://") and ":" not in args.store.split("@")[0][13:]
    assert '"/src[postgres]"' in (K8S / "Dockerfile").read_text("utf-8")  # psycopg for it


def test_the_plugin_is_reached_through_a_headless_service_by_dns(docs: list[Doc],
                                                                  tmp_path: Path) -> None:
    deployment = one(docs, "Deployment", "render-plugin")
    box = container(deployment)
    assert box["command"] == ["flowhost-plugin"]
    args = plugin_parser().parse_args(box["args"])
    listen = port_of(args.listen)
    assert args.max_connection_age is not None and args.max_connection_age <= 600
    for probe in ("readinessProbe", "livenessProbe"):
        assert named_port(box, box[probe]["grpc"]["port"]) == listen, probe
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop_wait(box) + args.grace

    service = one(docs, "Service", "render-plugin")
    assert service["spec"]["clusterIP"] == "None"  # headless: DNS gives every pod
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    (port,) = service["spec"]["ports"]
    assert named_port(box, port["targetPort"]) == listen

    config = parse_config(one(docs, "ConfigMap", "flowhost-config")["data"]["flowhost.toml"],
                          tmp_path / "flowhost.toml")
    target, served_as = parse_remote_targets(config.remote["render-plugin"])
    assert isinstance(target, RemoteTarget) and target.resolver == ""  # dns:///
    namespace = service["metadata"]["namespace"]
    assert target.host in (service["metadata"]["name"], f"{service['metadata']['name']}."
                           f"{namespace}", f"{service['metadata']['name']}.{namespace}.svc",
                           f"{service['metadata']['name']}.{namespace}.svc.cluster.local")
    assert target.port == port["port"]
    # The plugin name the daemon asks for is one the pods serve.
    assert (served_as or "render-plugin") in args.targets
