"""Shared fixtures. Stevedore's on-disk entry-point cache goes to a private temp dir, set
before anything imports stevedore, so tests never read or leave a stale cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from postgres_server import pgbouncer, postgres_server, postgres_url

# a real PostgreSQL (and PgBouncer) for any test that asks
__all__ = ["pgbouncer", "postgres_server", "postgres_url"]

_CACHE = tempfile.mkdtemp(prefix="flowhost-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
os.environ.pop("FLOWHOST_CONFIG", None)  # a developer's own flowhost.toml stays out of tests

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str], Path]:
    """Write a workflow spec (dedented YAML) into tmp_path and return its path."""

    def write(text: str, name: str = "workflow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


def run_flowhost(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `flowhost` CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
