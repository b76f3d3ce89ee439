#!/usr/bin/env python3
"""Set up a development environment and run things in it, with nothing but python3.

    python3 scripts/dev.py demo     # venv + install, then run examples/rest-api.yaml
    python3 scripts/dev.py test     # venv + install, then ruff, mypy and the whole test suite
                                    # (as root with apt-get, Debian's prometheus,
                                    # prometheus-pushgateway and postgresql too, for the
                                    # tests against real servers)
    python3 scripts/dev.py setup    # just the venv (.venv) with everything installed

The venv is reused; packages are reinstalled only when a pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("FLOWHOST_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
PACKAGES = [
    "plugin_sdk",
    ".[dev,demo,postgres]",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sample_plugins").iterdir()
            if (p / "pyproject.toml").is_file()),
    "tests/fixture_plugins",
]
# What the tests run for real: command -> Debian package (tests/integration/test_prometheus.py;
# tests/postgres_server.py, which also finds initdb and pg_ctl in /usr/lib/postgresql/*/bin).
DEBIAN_TOOLS = {"prometheus": "prometheus", "promtool": "prometheus",
                "prometheus-pushgateway": "prometheus-pushgateway",
                "pg_ctl": "postgresql", "pgbouncer": "pgbouncer"}


def run(*command: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run on an old python3
        sys.exit(f"flowhost needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    stamp = VENV / ".flowhost-installed"
    digest = hashlib.sha256()
    for package in PACKAGES:
        path = ROOT / package.split("[")[0] / "pyproject.toml"
        digest.update(path.read_bytes())
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    editable = [arg for package in PACKAGES for arg in ("-e", package)]
    # setuptools warns, for each editable package whose folder holds its import package,
    # that such folders "may take precedence during imports": here that is the point.
    quiet = {**os.environ, "PYTHONWARNINGS": "ignore:Editable installation"}
    run(PYTHON, "-m", "pip", "install", "--quiet", *editable, env=quiet)
    stamp.write_text(digest.hexdigest())


def venv_env() -> dict[str, str]:
    """The environment of an activated venv: its bin first on PATH."""
    return {**os.environ, "VIRTUAL_ENV": str(VENV),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def demo() -> None:
    setup()
    workdir = ROOT / "demo-output"
    workdir.mkdir(exist_ok=True)
    print(f"\nRunning the demo workflow in {workdir}\n", flush=True)
    run(BIN / "flowhost", "run", ROOT / "examples" / "rest-api.yaml",
        "--json-out", workdir / "result.json", env=venv_env(), cwd=workdir)
    print(f"\nThe generated project is in {workdir / 'my-api'}; "
          f"the result JSON in {workdir / 'result.json'}.")


def _installed(command: str) -> bool:
    """On PATH, in /usr/sbin (pgbouncer; not on every user's PATH), or (PostgreSQL's server
    programs) in Debian's versioned bin dirs."""
    return shutil.which(command) is not None or Path("/usr/sbin", command).exists() or any(
        Path("/usr/lib/postgresql").glob(f"*/bin/{command}"))


def install_servers() -> None:
    """Debian's Prometheus, pushgateway, PostgreSQL and PgBouncer, when they are missing and this is
    root with apt-get (as CI is); elsewhere a note, and the tests that need them skip."""
    missing = sorted({package for command, package in DEBIAN_TOOLS.items()
                      if not _installed(command)})
    if not missing:
        return
    how = f"apt-get install {' '.join(missing)}"
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"note: {', '.join(missing)} not installed and this is not root with apt-get; "
              f"the tests against them skip (install them with: {how})",
              flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> bool:
        print("+ apt-get", " ".join(args), flush=True)
        return subprocess.run(["apt-get", *args], env=env, check=False).returncode == 0

    install = ("install", "-y", "-q", "--no-install-recommends", *missing)
    # A new machine may have no package lists yet: then update them once and try again.
    if apt(*install) or (apt("update", "-q") and apt(*install)):
        return
    print(f"note: `{how}` failed; the tests against them skip", flush=True)


def test() -> None:
    setup()
    install_servers()
    env = venv_env()
    run(BIN / "ruff", "check", "host", "plugin_sdk", "sample_plugins", "tests", "bench", "scripts",
        env=env)
    run(BIN / "mypy", env=env)
    run(PYTHON, "-m", "pytest", "-q", *sys.argv[2:], env=env)


def main() -> None:
    commands = {"setup": setup, "demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]]()


if __name__ == "__main__":
    main()
