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
                          "attempt": 5},
        "InvokeResponse": {"outputs_json": 1},
        "ListPluginsResponse": {"plugins": 1},
    }
    assert pb.DESCRIPTOR.package == "flowhost.v1"
    for message, numbers in fields.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == numbers
    service = pb.DESCRIPTOR.services_by_name["PluginService"]
    assert [m.name for m in service.methods] == ["ListPlugins", "Invoke"]


def test_the_sdk_never_imports_the_host() -> None:
    pattern = re.compile(r"^\s*(?:import\s+flowhost(?![\w])|from\s+flowhost(?:\.|\s))", re.M)
    for path in (REPO / "plugin_sdk" / "flowhost_sdk").rglob("*.py"):
        assert not pattern.search(path.read_text("utf-8")), path
