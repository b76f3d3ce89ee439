"""The sample plugins are published like third-party plugins and import nothing of flowhost."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from flowhost_sdk import Plugin, check_plugin_class

SAMPLES = Path(__file__).resolve().parents[2] / "sample_plugins"
# folder -> (import package, entry point name, "module:Class")
PLUGINS = {
    "fastapi-scaffolder": (
        "flowhost_sample_fastapi",
        "fastapi-scaffolder",
        "flowhost_sample_fastapi.plugin:FastAPIScaffolder",
    ),
    "jwt-auth-plugin": (
        "flowhost_sample_jwt",
        "jwt-auth-plugin",
        "flowhost_sample_jwt.plugin:JWTAuthPlugin",
    ),
    "redis-cache-plugin": (
        "flowhost_sample_redis_cache",
        "redis-cache-plugin",
        "flowhost_sample_redis_cache.plugin:RedisCachePlugin",
    ),
    "memory-cache-plugin": (
        "flowhost_sample_memory_cache",
        "memory-cache-plugin",
        "flowhost_sample_memory_cache.plugin:MemoryCachePlugin",
    ),
    "python-venv-plugin": (
        "flowhost_sample_venv",
        "python-venv",
        "flowhost_sample_venv.plugin:PythonVenvPlugin",
    ),
}
# the ones that write parts of the generated project (templates, and the shared helper)
PROJECT_WRITERS = sorted(set(PLUGINS) - {"python-venv-plugin"})
FLOWHOST_IMPORT = re.compile(r"^\s*(?:import\s+flowhost(?![\w])|from\s+flowhost(?:\.|\s))", re.M)


def load(target: str) -> type[Plugin]:
    module_name, _, class_name = target.partition(":")
    plugin: type[Plugin] = getattr(importlib.import_module(module_name), class_name)
    return plugin


def source_files(folder: str) -> list[Path]:
    package = SAMPLES / folder / PLUGINS[folder][0]
    return sorted(p for p in package.rglob("*") if p.suffix in {".py", ".tmpl"} and p.is_file())


def test_every_sample_folder_is_listed() -> None:
    folders = {p.name for p in SAMPLES.iterdir() if (p / "pyproject.toml").is_file()}
    assert folders == set(PLUGINS)


@pytest.mark.parametrize("folder", sorted(PLUGINS))
def test_pyproject_declares_the_entry_point_like_a_third_party(folder: str) -> None:
    package, name, target = PLUGINS[folder]
    pyproject = tomllib.loads((SAMPLES / folder / "pyproject.toml").read_text("utf-8"))
    project = pyproject["project"]

    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["requires-python"] == ">=3.11"
    assert any(dep.startswith("flowhost-sdk") for dep in project["dependencies"])
    assert not any(re.match(r"flowhost(?!-sdk)\b", dep) for dep in project["dependencies"])
    assert project["entry-points"]["flowhost.plugins"] == {name: target}
    package_data = pyproject["tool"]["setuptools"]["package-data"][package]
    assert "py.typed" in package_data
    if folder in PROJECT_WRITERS:
        assert "generated_project/**/*.tmpl" in package_data
    assert (SAMPLES / folder / "README.md").is_file()

    plugin = load(target)
    assert plugin.name == name
    assert check_plugin_class(plugin) == []


@pytest.mark.parametrize("folder", sorted(PLUGINS))
def test_the_installed_distribution_exposes_the_entry_point(folder: str) -> None:
    _, name, target = PLUGINS[folder]
    found = {ep.name: ep.value for ep in entry_points(group="flowhost.plugins")}
    assert found.get(name) == target, f"pip install -e sample_plugins/{folder}"


@pytest.mark.parametrize("folder", sorted(PLUGINS))
def test_never_imports_flowhost(folder: str) -> None:
    offenders = [
        f"{path.relative_to(SAMPLES)}: {match.group(0).strip()}"
        for path in source_files(folder)
        for match in FLOWHOST_IMPORT.finditer(path.read_text("utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize("folder", sorted(PLUGINS))
def test_plugin_code_imports_only_the_sdk_pydantic_and_the_stdlib(folder: str) -> None:
    package = PLUGINS[folder][0]
    allowed = {package, "flowhost_sdk", "pydantic", *sys.stdlib_module_names}
    imported: set[str] = set()
    for path in source_files(folder):
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported - allowed == set()


def test_the_shared_helper_module_is_the_same_in_every_distribution() -> None:
    copies = {
        folder: (SAMPLES / folder / package / "_project.py").read_text("utf-8")
        for folder, (package, _, _) in PLUGINS.items() if folder in PROJECT_WRITERS
    }
    reference = copies["fastapi-scaffolder"]
    assert [folder for folder, text in copies.items() if text != reference] == []


def test_both_cache_backends_share_the_interface_and_the_endpoint() -> None:
    def template(folder: str, relative: str) -> str:
        root = SAMPLES / folder / PLUGINS[folder][0] / "generated_project"
        return (root / relative).read_text("utf-8")

    def cache_protocol(text: str) -> str:
        start = text.index("class Cache(Protocol):")
        return text[start : text.index("\nclass ", start + 1)]

    memory, redis = "memory-cache-plugin", "redis-cache-plugin"
    assert template(memory, "app/routers/items.py.tmpl") == template(
        redis, "app/routers/items.py.tmpl"
    )
    assert cache_protocol(template(memory, "app/cache.py.tmpl")) == cache_protocol(
        template(redis, "app/cache.py.tmpl")
    )
