"""Each sample plugin passes the SDK's conformance kit: the same class in-process and served
over gRPC on loopback gives the same outputs and fails in the same way."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from flowhost_sample_fastapi.plugin import FastAPIScaffolder
from flowhost_sample_jwt.plugin import JWTAuthPlugin
from flowhost_sample_memory_cache.plugin import MemoryCachePlugin
from flowhost_sample_redis_cache.plugin import RedisCachePlugin
from redis_fake import FakeRedisServer

from flowhost_sdk import InvocationContext, PermanentError, TransientError
from flowhost_sdk.testing import ErrorCase, assert_conforms

START_REDIS = "Start Redis: redis-server --daemonize yes"
RUN_FIRST = "Run fastapi-scaffolder first and pass its project_path output"


def fresh_folders(tmp_path: Path) -> Callable[[], Path]:
    """Each call, a new empty folder: every run of a plugin gets its own."""
    counter = itertools.count()

    def make() -> Path:
        folder = tmp_path / f"run-{next(counter)}"
        folder.mkdir()
        return folder

    return make


def fresh_projects(tmp_path: Path) -> Callable[[], str]:
    """Each call, a newly scaffolded project (the input the extension plugins need)."""
    folders = fresh_folders(tmp_path)

    def make() -> str:
        outputs = FastAPIScaffolder().invoke(
            FastAPIScaffolder.Inputs(app_name="shop", directory=str(folders())),
            InvocationContext(run_id="t", step_id="scaffold"),
        )
        return outputs.project_path

    return make


def test_fastapi_scaffolder_conforms(tmp_path: Path) -> None:
    folders = fresh_folders(tmp_path)
    report = assert_conforms(
        FastAPIScaffolder,
        lambda: {"app_name": "shop", "directory": str(folders())},
        ignore_fields=["project_path"],  # a fresh folder per run
        error_cases=[
            ErrorCase({"app_name": "shop", "template": "nope", "directory": str(tmp_path)},
                      PermanentError, hint="Use one of the known templates: minimal"),
            ErrorCase({"app_name": "9 lives", "directory": str(tmp_path)}, PermanentError),
        ],
    )
    local, remote = report.local_outputs[0], report.remote_outputs[0]
    assert local["files_created"] == remote["files_created"]
    assert "app/main.py" in remote["files_created"]
    assert Path(remote["project_path"], "app/main.py").is_file()


def test_jwt_auth_plugin_conforms(tmp_path: Path) -> None:
    projects = fresh_projects(tmp_path)
    report = assert_conforms(
        JWTAuthPlugin,
        [lambda: {"project_path": projects()},
         lambda: {"project_path": projects(), "user_model": "Account"}],
        error_cases=[
            ErrorCase({"project_path": str(tmp_path)}, PermanentError, hint=RUN_FIRST),
            ErrorCase(lambda: {"project_path": projects(), "user_model": "lower"},
                      PermanentError),
        ],
    )
    assert report.remote_outputs[0]["endpoints"] == ["POST /register", "POST /login", "GET /me"]


def test_memory_cache_plugin_conforms(tmp_path: Path) -> None:
    projects = fresh_projects(tmp_path)
    report = assert_conforms(
        MemoryCachePlugin,
        lambda: {"project_path": projects()},
        error_cases=[ErrorCase({"project_path": str(tmp_path / "nowhere")}, PermanentError,
                               hint=RUN_FIRST)],
    )
    assert report.remote_outputs[0]["backend"] == "memory"


def test_redis_cache_plugin_conforms(
    tmp_path: Path, fake_redis: Callable[..., FakeRedisServer], closed_port: int
) -> None:
    projects = fresh_projects(tmp_path)
    redis = fake_redis()
    report = assert_conforms(
        RedisCachePlugin,
        lambda: {"project_path": projects(), "redis_url": redis.url},
        error_cases=[
            # No Redis: transient with the hint, in-process and remotely alike.
            ErrorCase(lambda: {"project_path": projects(),
                               "redis_url": f"redis://127.0.0.1:{closed_port}/0"},
                      TransientError, hint=START_REDIS),
            ErrorCase(lambda: {"project_path": projects(), "redis_url": "http://x"},
                      PermanentError),
        ],
    )
    assert report.remote_outputs[0]["backend"] == "redis"


def test_python_venv_conforms(tmp_path: Path) -> None:
    """With ``use_host`` (no network, no environment to build) and its refusals."""
    from flowhost_sample_venv.plugin import PythonVenvPlugin

    (tmp_path / "project").mkdir()
    assert_conforms(PythonVenvPlugin, {"project_path": str(tmp_path / "project"),
                                       "use_host": True},
                    error_cases=[
                        ErrorCase({"project_path": str(tmp_path / "nowhere")}, PermanentError),
                        ErrorCase({"project_path": str(tmp_path / "project")},
                                  PermanentError),  # no requirements.txt in it
                    ])
