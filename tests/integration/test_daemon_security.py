"""Who may call the daemon: tokens on every RPC, TLS and mTLS with certificates made here,
a non-loopback listen refused without them; health and reflection for tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from certs import Certs
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from plugin_servers import flowhost as run_flowhost
from test_daemon_support import (
    StartDaemon,
    code_of,
    start_daemons,
    submit,
    wait_for,
)

from flowhost._proto import host_pb2 as pb
from flowhost.daemon.server import ServeConfig


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


ASKS = ("workflow_id: asks\nsteps:\n  - id: a\n    plugin: fail\n    inputs: {kind: "
        "intervention}\n")


def all_rpcs(stub: object, metadata: tuple[tuple[str, str], ...] | None) -> list[object]:
    def streamed(**kw: object) -> object:
        return list(stub.WatchRun(pb.WatchRunRequest(run_id="r"), **kw))  # type: ignore[attr-defined]

    return [
        lambda: stub.SubmitRun(pb.SubmitRunRequest(spec_yaml="x"), metadata=metadata,  # type: ignore[attr-defined]
                               timeout=10),
        lambda: stub.GetRun(pb.GetRunRequest(run_id="r"), metadata=metadata, timeout=10),  # type: ignore[attr-defined]
        lambda: streamed(metadata=metadata, timeout=10),
        lambda: stub.ListRuns(pb.ListRunsRequest(), metadata=metadata, timeout=10),  # type: ignore[attr-defined]
        lambda: stub.ResolveIntervention(pb.ResolveInterventionRequest(  # type: ignore[attr-defined]
            run_id="r", step_id="a", action="skip"), metadata=metadata, timeout=10),
        lambda: stub.CancelRun(pb.CancelRunRequest(run_id="r"), metadata=metadata,  # type: ignore[attr-defined]
                               timeout=10),
    ]


def test_every_rpc_needs_a_valid_token(daemon: StartDaemon, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# who may call\nops:tok-ops\nci:tok-ci\n")
    served = daemon("--token-file", str(tokens))
    stub = served.stub()
    for metadata in (None, (("authorization", "Bearer wrong"),),
                     (("authorization", "tok-ops"),), (("authorization", "Bearer ops"),)):
        for call in all_rpcs(stub, metadata):
            code, _ = code_of(call)  # type: ignore[arg-type]
            assert code == grpc.StatusCode.UNAUTHENTICATED, metadata
    good = (("authorization", "Bearer tok-ci"),)
    calls = all_rpcs(stub, good)
    del calls[3]  # ListRuns: answered below
    for call in calls:  # past the check: the handlers answer
        assert code_of(call)[0] in (grpc.StatusCode.NOT_FOUND,  # type: ignore[arg-type]
                                    grpc.StatusCode.INVALID_ARGUMENT)
    assert stub.ListRuns(pb.ListRunsRequest(), metadata=good, timeout=10).runs == []
    # health and reflection need no token
    channel = grpc.insecure_channel(served.address)
    served.channels.append(channel)
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="flowhost.v1.HostService"),
                          timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"flowhost.v1.HostService", "grpc.health.v1.Health"} <= names


def test_tls_and_mutual_tls_with_the_client_certificates_subject_as_identity(
        daemon: StartDaemon, certs: Certs) -> None:
    served = daemon("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                    "--tls-client-ca", str(certs.ca))
    ca = certs.ca.read_bytes()
    client = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=certs.client_key.read_bytes(),
        certificate_chain=certs.client_cert.read_bytes())
    stub = served.stub(credentials=client)
    run_id = submit(stub, ASKS)
    wait_for(stub, run_id, ["waiting"])
    answer = stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="a", action="abort"), timeout=30)
    assert "flowhost host" in answer.resolved_by and answer.resolved_by.startswith("CN=")
    assert wait_for(stub, run_id)["status"] == "aborted"
    for credentials in (grpc.ssl_channel_credentials(root_certificates=ca),  # no client cert
                        grpc.ssl_channel_credentials(
                            root_certificates=ca, private_key=certs.rogue_key.read_bytes(),
                            certificate_chain=certs.rogue_cert.read_bytes())):
        intruder = served.stub(credentials=credentials)
        assert code_of(lambda s=intruder: s.ListRuns(pb.ListRunsRequest(), timeout=10))[0] == \
            grpc.StatusCode.UNAVAILABLE
    plain = served.stub()
    assert code_of(lambda: plain.ListRuns(pb.ListRunsRequest(), timeout=10))[0] == \
        grpc.StatusCode.UNAVAILABLE


def test_the_cli_speaks_tls_with_a_token(daemon: StartDaemon, certs: Certs,
                                         tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("only-token\n")
    served = daemon("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                    "--token-file", str(tokens))
    spec = tmp_path / "wf.yaml"
    spec.write_text("workflow_id: t\nsteps:\n  - {plugin: noop}\n")
    flags = ["--server", served.address, "--tls-ca", str(certs.ca), "--token-file",
             str(tokens)]
    done = run_flowhost("submit", str(spec), "--wait", "--no-progress", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    no_ca = run_flowhost("runs", "list", "--server", served.address, "--token-file",
                         str(tokens), cwd=tmp_path)
    assert no_ca.returncode == 1 and "Traceback" not in no_ca.stderr


def test_a_non_loopback_listen_is_refused_without_tls_or_a_token(
        tmp_path: Path, certs: Certs) -> None:
    done = run_flowhost("serve", "--listen", "0.0.0.0:0", "--state-dir",
                        str(tmp_path / "s"), cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert "0.0.0.0:0" in done.stderr and "--insecure" in done.stderr
    assert "Traceback" not in done.stderr
    # With TLS, or a token, it may serve (checked without binding anything but loopback).
    tokens = tmp_path / "tokens"
    tokens.write_text("ops:s3cret-token\n", encoding="utf-8")
    for extra in ({"tls_cert": certs.server_cert, "tls_key": certs.server_key},
                  {"token_file": tokens}):
        ServeConfig(state_dir=tmp_path / "s", listen="0.0.0.0:0", **extra).checked()
    bad = run_flowhost("serve", "--listen", "nowhere", cwd=tmp_path, timeout=30)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    bad = run_flowhost("serve", "--metrics-listen", "x", cwd=tmp_path, timeout=30)
    assert bad.returncode == 2 and "--metrics-listen" in bad.stderr
    bad = run_flowhost("serve", "--max-runs", "0", cwd=tmp_path, timeout=30)
    assert bad.returncode == 2
