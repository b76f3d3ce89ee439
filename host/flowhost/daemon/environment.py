"""What a run submitted over the API may read of the daemon's environment: only the
variables ``[serve] env_allow`` names. Its check commands (and plugins' subprocesses through
them) still get a minimal base environment, so that programs are found and speak UTF-8.

The helper processes (workers, the checker) are started with no more than that and what
flowhost and Python read there (``helper_env``): a check command can read its worker's
``/proc/PID/environ``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from flowhost.problems import Problem, SpecError

# Given to check commands of daemon runs; never readable as ${env.X} unless allowed.
BASE = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")
# What a helper reads of its environment besides BASE and the allowed names: flowhost's
# settings, Python's (PYTHON*), the venv, the plugin cache, where TLS finds its roots.
HELPER = ("FLOWHOST_CONFIG", "FLOWHOST_DEBUG", "FLOWHOST_LOCK_TIMEOUT", "VIRTUAL_ENV",
          "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
_UNSET = re.compile(r"environment variable (?P<name>\S+) is not set")


def allowed(environ: Mapping[str, str], allow: Iterable[str]) -> dict[str, str]:
    """The variables a submitted spec may read (``${env.X}``, ``${secret.X}``)."""
    return {name: environ[name] for name in allow if name in environ}


def run_env(environ: Mapping[str, str], allow: Iterable[str]) -> dict[str, str]:
    """The environment of a daemon run: the base, and the allowed variables."""
    base = {name: environ[name] for name in BASE if name in environ}
    return {**base, **allowed(environ, allow)}


def helper_env(environ: Mapping[str, str], allow: Iterable[str]) -> dict[str, str]:
    """The environment a worker or the checker is started with."""
    own = {name: value for name, value in environ.items()
           if name in HELPER or name.startswith("PYTHON")}
    return {**own, **run_env(environ, allow)}


def explain(error: SpecError, allow: Iterable[str]) -> SpecError:
    """``error`` with each "is not set" of a variable the allow-list does not name said as
    what it is: the daemon does not let submitted specs read it."""
    names = sorted(set(allow))
    problems: list[Problem] = []
    changed = False
    for problem in error.problems:
        found = _UNSET.search(problem.message)
        if found is None or found["name"] in names:
            problems.append(problem)
            continue
        changed = True
        listed = ", ".join(names) if names else "none"
        problems.append(dataclasses.replace(
            problem,
            message=_UNSET.sub(f"environment variable {found['name']} is not one a spec "
                               "submitted to the daemon may read", problem.message),
            fix=f"the daemon's flowhost.toml lists those in [serve] env_allow (now: {listed})"))
    return SpecError(problems) if changed else error
