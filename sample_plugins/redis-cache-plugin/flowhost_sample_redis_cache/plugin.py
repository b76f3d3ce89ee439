"""The ``redis-cache-plugin`` plugin: adds a Redis-backed cache to a scaffolded project.

Before writing anything it checks that a Redis answers at ``redis_url``; when none does it
raises a ``TransientError`` whose hint says how to start one, so a workflow can retry or
fall back to ``memory-cache-plugin``. It writes the same ``app/cache.py`` interface as that
plugin (backed by the ``redis`` client), the cached ``GET /items/{item_id}`` endpoint and
tests that use a fake Redis, and adds ``redis`` to requirements.txt.
"""

import json
from importlib.resources import files
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

from flowhost_sample_redis_cache._project import (
    install_templates,
    require_scaffolded_project,
    template_files,
)
from flowhost_sample_redis_cache.ping import check_redis
from flowhost_sdk import InvocationContext, Plugin

_TEMPLATES = files("flowhost_sample_redis_cache") / "generated_project"
BACKEND = "redis"
PING_TIMEOUT = 2.0


def _without_credentials(url: str) -> str:
    """``url`` without user name or password, which must not end up in source code."""
    parts = urlsplit(url.strip())
    if parts.username is None and parts.password is None:
        return url.strip()
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


class RedisCachePlugin(Plugin):
    """Add a Redis-backed cache and a cached GET /items/{item_id} endpoint."""

    name = "redis-cache-plugin"
    version = "1.0.0"

    class Inputs(BaseModel):
        project_path: str = Field(description="A project made by fastapi-scaffolder")
        redis_url: str = Field(
            default="redis://127.0.0.1:6379/0", description="The Redis the app will use"
        )

    class Outputs(BaseModel):
        files_changed: list[str] = Field(
            description="Files this plugin wrote or found up to date, relative to project_path"
        )
        backend: str = Field(description="The cache backend the project now uses")

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        project = require_scaffolded_project(inputs.project_path, ctx.workdir)
        remaining = ctx.time_remaining()
        timeout = PING_TIMEOUT if remaining is None else max(min(PING_TIMEOUT, remaining), 0.1)
        ctx.progress(0.0, "checking that Redis answers")
        where = check_redis(inputs.redis_url, timeout=timeout)
        ctx.progress(0.2, f"Redis at {where} answered PING")

        default_url = _without_credentials(inputs.redis_url)
        if default_url != inputs.redis_url.strip():
            ctx.logger.warning(
                "redis_url carries credentials: they were left out of app/cache.py; "
                "give the app the full URL in its REDIS_URL environment variable"
            )
        values = {"redis_url_literal": json.dumps(default_url)}
        changed = install_templates(
            project, template_files(_TEMPLATES), values, ctx, overwrite=True, progress_from=0.2
        )
        return self.Outputs(files_changed=changed, backend=BACKEND)
