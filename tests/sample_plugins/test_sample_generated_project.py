"""The projects the sample plugins write pass their own test suites."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from flowhost_sample_jwt.plugin import JWTAuthPlugin
from flowhost_sample_memory_cache.plugin import MemoryCachePlugin
from flowhost_sample_redis_cache.plugin import RedisCachePlugin
from redis_fake import FakeRedisServer

from flowhost_sdk import InvocationContext


def run_project_tests(project: Path) -> tuple[int, str]:
    """Run ``python -m pytest -q`` inside the project; returns the passed count and output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = re.search(r"^(\d+) passed", result.stdout, re.M)
    assert summary is not None, output
    assert "failed" not in result.stdout and "error" not in result.stdout.lower(), output
    return int(summary.group(1)), output


def test_scaffold_jwt_and_memory_cache_make_a_passing_project(
    ctx: InvocationContext, project: Path
) -> None:
    JWTAuthPlugin().invoke(JWTAuthPlugin.Inputs(project_path=str(project)), ctx)
    MemoryCachePlugin().invoke(MemoryCachePlugin.Inputs(project_path=str(project)), ctx)

    passed, output = run_project_tests(project)

    assert 15 <= passed <= 30, output


def test_scaffold_jwt_and_redis_cache_make_a_passing_project_without_redis_running(
    ctx: InvocationContext, project: Path
) -> None:
    server = FakeRedisServer({"PING": b"+PONG\r\n"})
    try:
        RedisCachePlugin().invoke(
            RedisCachePlugin.Inputs(project_path=str(project), redis_url=server.url), ctx
        )
    finally:
        server.close()
    JWTAuthPlugin().invoke(
        JWTAuthPlugin.Inputs(project_path=str(project), user_model="Member"), ctx
    )

    passed, output = run_project_tests(project)

    assert passed >= 15, output
