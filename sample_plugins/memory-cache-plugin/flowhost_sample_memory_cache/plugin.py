"""The ``memory-cache-plugin`` plugin: adds an in-process cache to a scaffolded project.

It writes ``app/cache.py`` (the ``Cache`` interface, a TTL dictionary backend and the
``get_cache`` dependency), ``app/routers/items.py`` (a cached ``GET /items/{item_id}``) and
``tests/test_cache.py``. ``redis-cache-plugin`` writes the same interface backed by Redis;
this is its fallback, needing no server.
"""

from importlib.resources import files

from pydantic import BaseModel, Field

from flowhost_sample_memory_cache._project import (
    install_templates,
    require_scaffolded_project,
    template_files,
)
from flowhost_sdk import InvocationContext, Plugin

_TEMPLATES = files("flowhost_sample_memory_cache") / "generated_project"
BACKEND = "memory"


class MemoryCachePlugin(Plugin):
    """Add an in-process TTL cache and a cached GET /items/{item_id} endpoint."""

    name = "memory-cache-plugin"
    version = "1.0.0"

    class Inputs(BaseModel):
        project_path: str = Field(description="A project made by fastapi-scaffolder")

    class Outputs(BaseModel):
        files_changed: list[str] = Field(
            description="Files this plugin wrote or found up to date, relative to project_path"
        )
        backend: str = Field(description="The cache backend the project now uses")

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        project = require_scaffolded_project(inputs.project_path, ctx.workdir)
        ctx.progress(0.0, f"adding an in-memory cache to {project}")
        changed = install_templates(project, template_files(_TEMPLATES), {}, ctx, overwrite=True)
        return self.Outputs(files_changed=changed, backend=BACKEND)
