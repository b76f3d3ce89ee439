"""The generated code is what scripts/gen_protos.py makes from protos/ today, and the SDK's
runtime requirements admit the versions it was generated with."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "plugin_sdk" / "flowhost_sdk" / "_proto"


def gen_protos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_matches_the_protos() -> None:
    script = gen_protos()
    diffs = script.differences(script.generate())
    assert not diffs, ("generated code is out of date: run python scripts/gen_protos.py\n"
                       + "\n".join(diffs))


def test_generated_imports_are_relative_to_the_subpackage() -> None:
    text = (GENERATED / "plugin_pb2_grpc.py").read_text("utf-8")
    assert "from . import plugin_pb2 as" in text
    assert "from flowhost.v1" not in text  # that would collide with the host package


def requirement(name: str) -> Requirement:
    project = tomllib.loads((REPO / "plugin_sdk" / "pyproject.toml").read_text("utf-8"))
    found = [Requirement(r) for r in project["project"]["dependencies"]]
    return next(r for r in found if r.name == name)


def test_sdk_runtime_requirements_admit_the_generator_versions() -> None:
    pb2 = (GENERATED / "plugin_pb2.py").read_text("utf-8")
    protobuf = re.search(r"# Protobuf Python Version: ([\d.]+)", pb2)
    grpc = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'",
                     (GENERATED / "plugin_pb2_grpc.py").read_text("utf-8"))
    assert protobuf is not None and grpc is not None
    generated_protobuf, generated_grpc = Version(protobuf[1]), Version(grpc[1])
    for name, generated in (("protobuf", generated_protobuf), ("grpcio", generated_grpc),
                            ("grpcio-health-checking", generated_grpc)):
        spec = requirement(name).specifier
        assert generated in spec, f"{name}{spec} does not admit {generated}"
        minimum = [Version(s.version) for s in spec if s.operator == ">="]
        assert minimum == [generated], f"{name} must require >= {generated} (the gencode's)"
    assert Version(gen_protos().GRPCIO_TOOLS_VERSION) == generated_grpc


def test_the_proto_keeps_the_contract_field_numbers() -> None:
    from flowhost_sdk._proto import plugin_pb2 as pb

    fields = {
        "PluginDescriptor": {"name": 1, "version": 2, "description": 3, "input_schema_json": 4,
                             "output_schema_json": 5, "idempotent": 6},
        "InvokeRequest": {"plugin": 1, "inputs_json": 2, "run_id": 3, "step_id": 4,
                          "attempt": 5, "plugin_attempt": 6, "masked": 7},
        "InvokeResponse": {"outputs_json": 1},
        "ListPluginsResponse": {"plugins": 1},
        "InvokeUpdate": {"progress": 1, "result": 2},
        "Progress": {"fraction": 1, "message": 2},
    }
    assert pb.DESCRIPTOR.package == "flowhost.v1"
    for message, numbers in fields.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == numbers
    oneof = pb.DESCRIPTOR.message_types_by_name["InvokeUpdate"].oneofs_by_name["update"]
    assert [f.name for f in oneof.fields] == ["progress", "result"]
    service = pb.DESCRIPTOR.services_by_name["PluginService"]
    assert [m.name for m in service.methods] == ["ListPlugins", "Invoke", "InvokeStream"]
    stream = service.methods_by_name["InvokeStream"]
    assert stream.server_streaming and not stream.client_streaming
    assert stream.input_type.name == "InvokeRequest"
    assert stream.output_type.name == "InvokeUpdate"


def test_the_sdk_never_imports_the_host() -> None:
    pattern = re.compile(r"^\s*(?:import\s+flowhost(?![\w])|from\s+flowhost(?:\.|\s))", re.M)
    for path in (REPO / "plugin_sdk" / "flowhost_sdk").rglob("*.py"):
        assert not pattern.search(path.read_text("utf-8")), path


def test_the_host_proto_keeps_the_contract_field_numbers() -> None:
    """host.proto as CONTRACT §8 writes it: what clients in other languages are built on."""
    from flowhost._proto import host_pb2 as pb

    fields = {
        "SubmitRunRequest": {"spec_yaml": 1, "spec_json": 2, "overrides": 3, "request_id": 4,
                             "spec_name": 5},
        "SubmitRunResponse": {"run_id": 1, "created": 2},
        "GetRunRequest": {"run_id": 1},
        "GetRunResponse": {"result_json": 1},
        "WatchRunRequest": {"run_id": 1, "after_seq": 2},
        "RunEvent": {"run_id": 1, "seq": 2, "type": 3, "step_id": 4, "at": 5, "event_json": 6},
        "ListRunsRequest": {"status": 1, "workflow_id": 2, "page_size": 3, "page_token": 4},
        "RunSummary": {"run_id": 1, "workflow_id": 2, "status": 3, "started_at": 4,
                       "finished_at": 5, "steps_total": 6, "steps_done": 7},
        "ListRunsResponse": {"runs": 1, "next_page_token": 2},
        "ResolveInterventionRequest": {"run_id": 1, "step_id": 2, "action": 3,
                                       "outputs_json": 4, "comment": 5},
        "ResolveInterventionResponse": {"resolved_by": 1, "resolved_at": 2},
        "CancelRunRequest": {"run_id": 1, "reason": 2},
        "CancelRunResponse": {"status": 1},
    }
    assert pb.DESCRIPTOR.package == "flowhost.v1"
    for message, numbers in fields.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == numbers, message
    oneof = pb.DESCRIPTOR.message_types_by_name["SubmitRunRequest"].oneofs_by_name["spec"]
    assert [f.name for f in oneof.fields] == ["spec_yaml", "spec_json"]
    service = pb.DESCRIPTOR.services_by_name["HostService"]
    assert [m.name for m in service.methods] == [
        "SubmitRun", "GetRun", "WatchRun", "ListRuns", "ResolveIntervention", "CancelRun"]
    assert service.methods_by_name["WatchRun"].server_streaming


def test_the_host_requires_the_runtime_its_generated_code_needs() -> None:
    pb2 = (REPO / "host" / "flowhost" / "_proto" / "host_pb2.py").read_text("utf-8")
    protobuf = re.search(r"# Protobuf Python Version: ([\d.]+)", pb2)
    assert protobuf is not None
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    found = {Requirement(r).name: Requirement(r) for r in project["project"]["dependencies"]}
    assert Version(protobuf[1]) in found["protobuf"].specifier
